"""LRN: Caffe's local response normalization over (N, C, H, W), output the same shape.

With n = local_size (odd), r = (n - 1) / 2 and sums over zero-padded windows:
  ACROSS_CHANNELS (default): a window of n channels centred on c
      scale = k + alpha / n * sum_{c'=c-r..c+r} x[c']^2
  WITHIN_CHANNEL: an n x n spatial window centred on (h, w)
      scale = 1 + alpha / n^2 * sum_{h', w'} x[h', w']^2
      (Caffe composes it from an AVE pooling with pad r, whose divisor is
      always n^2 here, and a Power layer with shift 1: `k` is not used)
  y = x * scale^-beta
Since the windows are symmetric, with m = alpha / n (across) or alpha / n^2 (within):
  dx = dy * scale^-beta - 2 m beta * x * windowsum(dy * y / scale)
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from ..layer import NeuronLayer, register


def window_sum(a, radius, axes):
    """Sum of `a` over a centred window of 2 radius + 1 along each of `axes`, zeros outside."""
    for axis in axes:
        shape = list(a.shape)
        shape[axis] += 2 * radius
        padded = np.zeros(shape, dtype=a.dtype)
        index = [slice(None)] * a.ndim
        index[axis] = slice(radius, radius + a.shape[axis])
        padded[tuple(index)] = a
        index[axis] = slice(0, a.shape[axis])
        total = padded[tuple(index)].copy()
        for offset in range(1, 2 * radius + 1):
            index[axis] = slice(offset, offset + a.shape[axis])
            total += padded[tuple(index)]
        a = total
    return a


@register("LRN")
class LRN(NeuronLayer):
    def setup(self, bottom, top):
        p = self.param.lrn_param
        if p.local_size % 2 == 0:
            raise LayerError(f"local_size must be odd, got {p.local_size}")
        self.size, self.alpha, self.beta = p.local_size, p.alpha, p.beta
        if p.norm_region == pb.LRNParameter.ACROSS_CHANNELS:
            self.axes, self.k, self.m = (1,), p.k, p.alpha / p.local_size
        else:
            self.axes, self.k, self.m = (2, 3), 1.0, p.alpha / p.local_size ** 2

    def reshape(self, bottom, top):
        if bottom[0].num_axes != 4:
            raise LayerError(f"LRN needs a 4-axis bottom (N, C, H, W), got shape {bottom[0].shape}")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x = bottom[0].data
        t = x.dtype.type
        scale = window_sum(x * x, self.size // 2, self.axes)
        scale *= t(self.m)
        scale += t(self.k)
        scale_pow = scale ** t(-self.beta)
        y = x * scale_pow
        self.cache.update(x=x, y=y, scale=scale, scale_pow=scale_pow)
        top[0].data = y

    def backward(self, top, propagate_down, bottom):
        c = self.cache
        x, y, scale, scale_pow = c.pop("x"), c.pop("y"), c.pop("scale"), c.pop("scale_pow")
        if not propagate_down[0]:
            return
        dy = top[0].diff
        t = dy.dtype.type
        spread = window_sum(dy * y / scale, self.size // 2, self.axes)
        bottom[0].diff = dy * scale_pow - t(2 * self.m * self.beta) * x * spread
