"""ELU (exponential linear unit), elementwise on any shape (elu_param.alpha, default 1).

    y = x                      if x > 0
        alpha * (exp(x) - 1)   otherwise
    dx = dy                    if x > 0
         dy * (y + alpha)      otherwise   (= dy * alpha * exp(x))

Runs in place: backward uses the mask and output cached at forward.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("ELU")
class ELU(NeuronLayer):
    def setup(self, bottom, top):
        self.alpha = self.param.elu_param.alpha

    def forward(self, bottom, top):
        x = bottom[0].data
        positive = x > 0
        # expm1 of min(x, 0): exact near 0 and no overflow for large positive x.
        y = np.where(positive, x, np.expm1(np.minimum(x, 0)) * self.alpha)
        self.cache["positive"], self.cache["y"] = positive, y
        top[0].data = y

    def backward(self, top, propagate_down, bottom):
        positive, y = self.cache.pop("positive"), self.cache.pop("y")
        if propagate_down[0]:
            dy = top[0].diff
            bottom[0].diff = np.where(positive, dy, dy * (y + self.alpha))
