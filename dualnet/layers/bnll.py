"""BNLL (binomial normal log likelihood): the softplus, elementwise on any shape.

    y = log(1 + exp(x))        computed as max(x, 0) + log(1 + exp(-|x|)),
                               i.e. x + log(1 + exp(-x)) for x > 0 as Caffe,
                               so that exp never overflows
    dx = dy * sigmoid(x)       (sigmoid as 0.5 * tanh(x / 2) + 0.5)

Runs in place: the input is cached at forward.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("BNLL")
class BNLL(NeuronLayer):
    def forward(self, bottom, top):
        x = bottom[0].data
        self.cache["x"] = x
        top[0].data = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

    def backward(self, top, propagate_down, bottom):
        x = self.cache.pop("x")
        if propagate_down[0]:
            sigmoid = np.tanh(x * 0.5)
            sigmoid *= 0.5
            sigmoid += 0.5
            bottom[0].diff = top[0].diff * sigmoid
