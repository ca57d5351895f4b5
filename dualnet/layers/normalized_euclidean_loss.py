"""NormalizedEuclideanLoss (dualnet): a Euclidean loss scaled per sample by the target's norm.

    y: predictions (N, ...),  t: targets (N, ...), same count per sample
    loss = 1/(2N) * sum_n ||y_n - t_n||^2 / max(||t_n||, eps)
    dy_n = w/N * (y_n - t_n) / max(||t_n||, eps)         t is a constant (no gradient)

The dual-net study's normalised consistency loss (its eq. 9.4): dividing by
the target's norm keeps net1 from lowering the loss by shrinking its outputs.
eps = 1e-12 guards a zero target.
"""
import numpy as np

from ..errors import LayerError
from ..layer import LossLayer, register

EPS = 1e-12


@register("NormalizedEuclideanLoss")
class NormalizedEuclideanLoss(LossLayer):
    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise LayerError(f"predictions {bottom[0].shape} and targets {bottom[1].shape} differ in size")

    def forward(self, bottom, top):
        y = bottom[0].data.reshape(bottom[0].shape[0], -1)
        t = bottom[1].data.reshape(y.shape)
        d = y - t
        norm = np.maximum(np.sqrt((t * t).sum(axis=1, keepdims=True)), EPS)
        self.cache.update(d=d, norm=norm)
        top[0].data = np.asarray(((d * d) / norm).sum() / (2 * y.shape[0]), dtype=y.dtype)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError("NormalizedEuclideanLoss treats its second bottom as a constant target")
        if propagate_down[0]:
            d, norm = self.cache.pop("d"), self.cache.pop("norm")
            scale = float(top[0].diff.reshape(())) / d.shape[0]
            bottom[0].diff = (d * (scale / norm)).reshape(bottom[0].shape)
