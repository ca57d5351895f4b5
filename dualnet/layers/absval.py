"""AbsVal: the absolute value, elementwise on any shape.

    y = |x|
    dx = dy * sign(x)          (sign(0) = 0, as Caffe)

Caffe refuses to run AbsVal in place because its backward reads the bottom
blob; here the input is cached at forward, so in place works too.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("AbsVal")
class AbsVal(NeuronLayer):
    def forward(self, bottom, top):
        x = bottom[0].data
        self.cache["x"] = x
        top[0].data = np.abs(x)

    def backward(self, top, propagate_down, bottom):
        x = self.cache.pop("x")
        if propagate_down[0]:
            bottom[0].diff = top[0].diff * np.sign(x)
