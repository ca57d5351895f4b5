"""TanH: the hyperbolic tangent, elementwise on any shape.

    y = tanh(x)
    dx = dy * (1 - y^2)

Runs in place: backward uses the output cached at forward, not the blob.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("TanH")
class TanH(NeuronLayer):
    def forward(self, bottom, top):
        self.cache["y"] = top[0].data = np.tanh(bottom[0].data)

    def backward(self, top, propagate_down, bottom):
        y = self.cache.pop("y")
        if propagate_down[0]:
            bottom[0].diff = top[0].diff * (1 - y * y)
