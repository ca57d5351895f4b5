"""PReLU: a leaky ReLU with a learned slope per channel (axis 1) or one shared slope.

    x: (N, C, ...)      a: (C,), or () with prelu_param.channel_shared
    y = max(x, 0) + a_c * min(x, 0)
    dx = dy * (1 if x > 0 else a_c)
    da_c += sum over n and the axes after 1 (and c when shared) of dy * x * [x <= 0]

The slopes are filled by prelu_param.filler, constant 0.25 when none is given.
Runs in place: the input is cached at forward.
"""
import numpy as np

from ..errors import LayerError
from ..fillers import filler
from ..layer import NeuronLayer, register


@register("PReLU")
class PReLU(NeuronLayer):
    def setup(self, bottom, top):
        p = self.param.prelu_param
        self._check_axes(bottom[0])
        self.channel_shared = p.channel_shared
        self.channels = bottom[0].shape[1]
        shape = () if self.channel_shared else (self.channels,)
        self.blobs = [self.new_param_blob(shape, p.filler, filler("constant", value=0.25))]

    def _check_axes(self, blob):
        if blob.num_axes < 2:
            raise LayerError(f"PReLU needs a bottom with at least 2 axes (N, C, ...), got shape {blob.shape}")

    def reshape(self, bottom, top):
        self._check_axes(bottom[0])
        expected = 1 if self.channel_shared else bottom[0].shape[1]
        if self.blobs[0].count != expected:
            raise LayerError(
                f"PReLU has {self.blobs[0].count} slopes but needs {expected} "
                f"({'channel_shared' if self.channel_shared else 'one per channel'}, bottom {bottom[0].shape})"
            )
        top[0].reshape(bottom[0].shape)

    def _slope(self, ndim):
        # The slopes shaped to broadcast along axis 1.
        a = self.blobs[0].data
        return a if self.channel_shared else a.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, bottom, top):
        x = bottom[0].data
        self.cache["x"] = x
        top[0].data = np.where(x > 0, x, x * self._slope(x.ndim))

    def backward(self, top, propagate_down, bottom):
        x = self.cache.pop("x")
        dy = top[0].diff
        if self.param_propagate_down[0]:
            product = np.where(x > 0, 0, dy * x)
            if self.channel_shared:
                self.blobs[0].diff += product.sum()
            else:
                self.blobs[0].diff += product.sum(axis=(0,) + tuple(range(2, x.ndim)))
        if propagate_down[0]:
            bottom[0].diff = np.where(x > 0, dy, dy * self._slope(x.ndim))
