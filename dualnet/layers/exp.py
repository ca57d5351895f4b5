"""Exp, elementwise on any shape (exp_param: base -1 meaning e, scale 1, shift 0).

    y = base ^ (shift + scale * x) = outer * exp(inner * x)
        inner = ln(base) * scale,   outer = base ^ shift
    dx = dy * y * inner

base must be positive, or -1 for e. Runs in place: backward uses the output
cached at forward.
"""
import math

import numpy as np

from ..errors import LayerError
from ..layer import NeuronLayer, register


@register("Exp")
class Exp(NeuronLayer):
    def setup(self, bottom, top):
        p = self.param.exp_param
        if p.base != -1 and not p.base > 0:
            raise LayerError(f"exp_param.base must be positive, or -1 for e; got {p.base:g}")
        log_base = 1.0 if p.base == -1 else math.log(p.base)
        self.inner_scale = log_base * p.scale
        self.outer_scale = 1.0 if p.shift == 0 else float(np.exp(np.float64(log_base * p.shift)))

    def forward(self, bottom, top):
        y = np.exp(bottom[0].data * self.inner_scale)
        if self.outer_scale != 1:
            y *= self.outer_scale
        self.cache["y"] = top[0].data = y

    def backward(self, top, propagate_down, bottom):
        y = self.cache.pop("y")
        if propagate_down[0]:
            bottom[0].diff = top[0].diff * y * self.inner_scale
