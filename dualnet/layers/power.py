"""Power, elementwise on any shape (power_param: power 1, scale 1, shift 0).

    y = (shift + scale * x) ^ power
    dx = dy * power * scale * (shift + scale * x) ^ (power - 1)

Caffe's special cases:
  - power * scale == 0: y does not depend on x; y = 1 when power == 0
    (even for shift 0), else shift ^ power; dx = 0;
  - power == 1: dx = dy * scale;
  - power == 2: dx = dy * 2 * scale * (shift + scale * x).
Elsewhere Caffe writes the gradient as power * scale * y / (shift + scale * x),
which is 0/0 where shift + scale * x = 0; the power above gives the limit
there and the same values everywhere else. A negative base with a
non-integer power gives NaN, as C's pow.

Runs in place: backward uses the base cached at forward.
"""
import numpy as np

from ..layer import NeuronLayer, register


@register("Power")
class Power(NeuronLayer):
    def setup(self, bottom, top):
        p = self.param.power_param
        self.power, self.scale, self.shift = p.power, p.scale, p.shift
        self.diff_scale = self.power * self.scale

    def forward(self, bottom, top):
        x = bottom[0].data
        if self.diff_scale == 0:
            value = 1.0 if self.power == 0 else np.power(np.float64(self.shift), self.power)
            top[0].data = np.full(x.shape, value, dtype=x.dtype)
            return
        base = x * self.scale if self.scale != 1 else x
        if self.shift != 0:
            base = base + self.shift
        self.cache["base"] = base
        top[0].data = base if self.power == 1 else np.power(base, self.power)

    def backward(self, top, propagate_down, bottom):
        base = self.cache.pop("base", None)
        if not propagate_down[0]:
            return
        dy = top[0].diff
        if self.diff_scale == 0:
            bottom[0].diff = np.zeros_like(dy)
        elif self.power == 1:
            bottom[0].diff = dy * self.scale
        elif self.power == 2:
            bottom[0].diff = dy * base * (2 * self.scale)
        else:
            bottom[0].diff = dy * np.power(base, self.power - 1) * self.diff_scale
