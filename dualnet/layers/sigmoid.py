"""Sigmoid: the logistic function, elementwise on any shape.

    y = 1 / (1 + exp(-x)),   computed as 0.5 * tanh(x / 2) + 0.5 (no overflow)
    dx = dy * y * (1 - y)

Runs in place: backward uses the output cached at forward, not the blob.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("Sigmoid")
class Sigmoid(NeuronLayer):
    def forward(self, bottom, top):
        y = np.tanh(bottom[0].data * 0.5)
        y *= 0.5
        y += 0.5
        self.cache["y"] = top[0].data = y

    def backward(self, top, propagate_down, bottom):
        y = self.cache.pop("y")
        if propagate_down[0]:
            bottom[0].diff = top[0].diff * y * (1 - y)
