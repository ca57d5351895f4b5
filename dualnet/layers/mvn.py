"""MVN: mean (and variance) normalisation of each sample, or of each channel of each sample.

    x: (N, C, ...) viewed as rows of M values: one row per (n, c), or one per n
       with mvn_param.across_channels
    mean = sum(x) / M  per row,   xc = x - mean
    without normalize_variance:   y = xc,               dx = dy - mean(dy)
    with normalize_variance (default):
        s = sqrt(sum(xc^2) / M)   (biased),   d = s + eps   (eps outside the root, as Caffe)
        y = xc / d
        dx = (dy - mean(dy) - mean(dy * y) * y) / d          (Caffe's MVNLayer::Backward_cpu)

That is the exact gradient of y = xc / s; of the forward above (d = s + eps)
it is exact only for eps = 0: the exact one has mean(dy * y) * y * d / s. We
give Caffe's numbers; with the default eps = 1e-9 the two agree to float
precision unless a row is nearly constant (s within a few orders of eps).
Where s = 0 the row is constant, y = 0 and that term vanishes. Runs in place:
what backward needs is cached.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("MVN")
class MVN(NeuronLayer):
    def setup(self, bottom, top):
        p = self.param.mvn_param
        self.normalize_variance, self.across_channels, self.eps = p.normalize_variance, p.across_channels, p.eps

    def _rows(self, shape):
        n = shape[0] if len(shape) > 0 else 1
        c = shape[1] if len(shape) > 1 and not self.across_channels else 1
        return n * c

    def forward(self, bottom, top):
        x = bottom[0].data
        rows = x.reshape(self._rows(x.shape), -1)
        xc = rows - rows.mean(axis=1, keepdims=True)
        if not self.normalize_variance:
            top[0].data = xc.reshape(x.shape)
            return
        d = np.sqrt(np.mean(xc * xc, axis=1, keepdims=True)) + self.eps
        y = xc / d
        self.cache["y"], self.cache["d"] = y, d
        top[0].data = y.reshape(x.shape)

    def backward(self, top, propagate_down, bottom):
        y, d = self.cache.pop("y", None), self.cache.pop("d", None)
        if not propagate_down[0]:
            return
        dy = top[0].diff
        g = dy.reshape(self._rows(dy.shape), -1)
        dx = g - g.mean(axis=1, keepdims=True)
        if self.normalize_variance:
            dx -= y * np.mean(g * y, axis=1, keepdims=True)
            dx /= d
        bottom[0].diff = dx.reshape(dy.shape)
