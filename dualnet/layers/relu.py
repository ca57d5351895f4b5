"""ReLU (leaky with negative_slope):

    y = max(x, 0) + negative_slope * min(x, 0)
    dx = dy * (1 if x > 0 else negative_slope)

Runs in place; it never writes into the bottom's array, since a Split may
share that array with another layer.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("ReLU")
class ReLU(NeuronLayer):
    def setup(self, bottom, top):
        self.negative_slope = self.param.relu_param.negative_slope

    def forward(self, bottom, top):
        x = bottom[0].data
        self.cache["positive"] = positive = x > 0
        if self.negative_slope == 0:
            top[0].data = np.maximum(x, 0)
        else:
            top[0].data = np.where(positive, x, x * x.dtype.type(self.negative_slope))

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        positive, dy = self.cache.pop("positive"), top[0].diff
        if self.negative_slope == 0:
            bottom[0].diff = dy * positive
        else:
            bottom[0].diff = np.where(positive, dy, dy * dy.dtype.type(self.negative_slope))
