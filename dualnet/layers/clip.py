"""Clip, elementwise on any shape (clip_param min and max, both required).

    y = min(max(x, min), max)
    dx = dy   where min <= x <= max (bounds included, as Caffe)
         0    elsewhere

Runs in place: backward uses the mask computed at forward.
"""
import numpy as np

from ..errors import LayerError
from ..layer import NeuronLayer, register


@register("Clip")
class Clip(NeuronLayer):
    def setup(self, bottom, top):
        p = self.param.clip_param
        missing = [name for name in ("min", "max") if not p.HasField(name)]
        if missing:
            raise LayerError(f"Clip needs clip_param {{ min: ... max: ... }}; {' and '.join(missing)} not given")
        if p.min > p.max:
            raise LayerError(f"clip_param.min ({p.min:g}) is greater than clip_param.max ({p.max:g})")
        self.min, self.max = p.min, p.max

    def forward(self, bottom, top):
        x = bottom[0].data
        lo, hi = x.dtype.type(self.min), x.dtype.type(self.max)
        self.cache["inside"] = (x >= lo) & (x <= hi)
        top[0].data = np.minimum(np.maximum(x, lo), hi)

    def backward(self, top, propagate_down, bottom):
        inside = self.cache.pop("inside")
        if propagate_down[0]:
            bottom[0].diff = top[0].diff * inside
