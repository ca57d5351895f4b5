"""HingeLoss: one-vs-all hinge on scores x (N, K, ...) with integer labels (N,).

    m_nk = max(0, 1 + delta_nk x_nk),   delta_nk = -1 if k == label_n else +1
    L1:  loss = sum m / N              dx = w/N * delta * sign(m)   (0 where m == 0)
    L2:  loss = sum m^2 / N            dx = w/N * 2 * delta * m
w = top diff (the loss weight), N = x.shape[0], K = count / N.
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from ..layer import LossLayer, register


@register("HingeLoss")
class HingeLoss(LossLayer):
    def setup(self, bottom, top):
        self.norm = self.param.hinge_loss_param.norm

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[1].count != bottom[1].shape[0]:
            raise LayerError(f"HingeLoss takes one label per sample, got a label blob of shape {bottom[1].shape}")

    def forward(self, bottom, top):
        x = bottom[0].data
        N = x.shape[0]
        scores = x.reshape(N, -1)
        labels = bottom[1].data.reshape(N).astype(np.int64)
        K = scores.shape[1]
        bad = (labels < 0) | (labels >= K)
        if bad.any():
            raise LayerError(f"label {labels[bad][0]} is outside 0..{K - 1} for {K} classes")
        delta = np.ones_like(scores)
        delta[np.arange(N), labels] = -1
        margin = np.maximum(0, 1 + delta * scores)
        total = margin.sum() if self.norm == pb.HingeLossParameter.L1 else np.dot(margin.ravel(), margin.ravel())
        top[0].data = np.asarray(total / N, dtype=x.dtype)
        self.cache.update(delta=delta, margin=margin)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError("HingeLoss cannot backpropagate to the label input")
        delta, margin = self.cache.pop("delta"), self.cache.pop("margin")
        if not propagate_down[0]:
            return
        scale = float(top[0].diff.reshape(())) / margin.shape[0]
        if self.norm == pb.HingeLossParameter.L1:
            grad = delta * np.sign(margin)
        else:
            grad = delta * (2 * margin)
        bottom[0].diff = (grad * scale).reshape(bottom[0].shape)
