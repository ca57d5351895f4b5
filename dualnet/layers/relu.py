"""ReLU (leaky with negative_slope):

    y = max(x, 0) + negative_slope * min(x, 0)
    dx = dy * (1 if x > 0 else negative_slope)

In place it overwrites the bottom's array only when the Net says no other
blob shares it (`overwrite_bottom`, after a layer that owns its tops such as
Convolution); after a Split, whose tops share one array, it writes a new one.
The backward mask is read from y (y > 0 exactly where x > 0 for a slope >= 0),
so no copy of x is kept; a negative slope keeps the mask x > 0.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("ReLU")
class ReLU(NeuronLayer):
    owns_tops = True

    def setup(self, bottom, top):
        self.negative_slope = self.param.relu_param.negative_slope

    def forward(self, bottom, top):
        x = bottom[0].data
        y = x if self.overwrite_bottom else top[0].output_data(x)
        if self.negative_slope >= 0:
            # sign(y) = sign(x): backward reads the mask from y, with no copy of x kept
            self.cache["y"] = y
        else:
            self.cache["positive"] = x > 0
        if self.negative_slope == 0:
            np.maximum(x, 0, out=y)
        else:
            np.multiply(x, np.where(x > 0, 1, x.dtype.type(self.negative_slope)), out=y)

    def backward(self, top, propagate_down, bottom):
        y, positive = self.cache.pop("y", None), self.cache.pop("positive", None)
        if not propagate_down[0]:
            return
        if positive is None:
            positive = y > 0
        dy = top[0].diff
        dx = dy if self.overwrite_bottom else bottom[0].output_diff(dy)
        if self.negative_slope == 0:
            np.multiply(dy, positive, out=dx)
        else:
            np.multiply(dy, np.where(positive, 1, dy.dtype.type(self.negative_slope)), out=dx)
