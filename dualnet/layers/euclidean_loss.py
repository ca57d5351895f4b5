"""EuclideanLoss: half the mean squared distance between two blobs.

    a, b: (N, ...) with the same count per sample;  d = a - b
    loss = 1/(2N) * sum d^2                          N = a.shape[0] (the batch size)
    da = +w/N * d,   db = -w/N * d                   w = top diff (the loss weight)

Unlike the other losses both bottoms may take a gradient (the second is not a
label), so force_backward reaches both.
"""
import numpy as np

from ..errors import LayerError
from ..layer import LossLayer, register


@register("EuclideanLoss")
class EuclideanLoss(LossLayer):
    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        per_sample = [int(np.prod(b.shape[1:])) for b in bottom]
        if per_sample[0] != per_sample[1]:
            raise LayerError(
                f"inputs must have the same dimension: bottom shapes {bottom[0].shape} and "
                f"{bottom[1].shape} give {per_sample[0]} and {per_sample[1]} values per sample"
            )

    def forward(self, bottom, top):
        a = bottom[0].data
        d2 = squared_distance(a, bottom[1].data.reshape(a.shape))
        top[0].data = np.asarray(d2 / (2 * a.shape[0]), dtype=a.dtype)

    def backward(self, top, propagate_down, bottom):
        a = bottom[0].data
        b = bottom[1].data.reshape(a.shape)
        scale = float(top[0].diff.reshape(())) / a.shape[0]
        for i, sign in ((0, 1), (1, -1)):
            if propagate_down[i]:
                grad = bottom[i].output_diff(a, b).reshape(a.shape)
                np.subtract(a, b, out=grad)
                grad *= sign * scale

    def allow_force_backward(self, bottom_index):
        return True


BLOCK = 1 << 18         # values per block of squared_distance


def squared_distance(a, b):
    """sum (a - b)^2 over same-shaped arrays, a block of values at a time: no array of a's size
    is kept from forward to backward or made at all (backward computes d into the bottom diffs)."""
    a, b = a.reshape(-1), b.reshape(-1)
    total = 0.0
    for s in range(0, a.size, BLOCK):
        d = a[s:s + BLOCK] - b[s:s + BLOCK]
        total += float(np.dot(d, d))
    return total
