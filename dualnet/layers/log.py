"""Log, elementwise on any shape (log_param: base -1 meaning e, scale 1, shift 0).

    y = log_base(shift + scale * x) = ln(shift + scale * x) / ln(base)
    dx = dy * scale / (ln(base) * (shift + scale * x))

base must be positive and not 1, or -1 for e. Inputs with
shift + scale * x <= 0 give -inf or NaN, as in Caffe. Runs in place: backward
uses the argument cached at forward.
"""
import math

import numpy as np

from ..errors import LayerError
from ..layer import NeuronLayer, register


@register("Log")
class Log(NeuronLayer):
    def setup(self, bottom, top):
        p = self.param.log_param
        if p.base != -1 and not p.base > 0:
            raise LayerError(f"log_param.base must be positive, or -1 for e; got {p.base:g}")
        if p.base == 1:
            raise LayerError("log_param.base 1 has no logarithm (ln 1 = 0); use another positive base, or -1 for e")
        self.log_base = 1.0 if p.base == -1 else math.log(p.base)
        self.scale, self.shift = p.scale, p.shift

    def forward(self, bottom, top):
        argument = bottom[0].data
        if self.scale != 1:
            argument = argument * self.scale
        if self.shift != 0:
            argument = argument + self.shift
        self.cache["argument"] = argument
        y = np.log(argument)
        if self.log_base != 1:
            y *= 1.0 / self.log_base
        top[0].data = y

    def backward(self, top, propagate_down, bottom):
        argument = self.cache.pop("argument")
        if propagate_down[0]:
            bottom[0].diff = top[0].diff * (self.scale / self.log_base) / argument
