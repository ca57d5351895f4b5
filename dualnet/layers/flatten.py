"""Flatten: merge axes flatten_param.axis .. end_axis (defaults 1 and -1) into one.

    (N, C, H, W) with axis 1, end_axis -1  ->  (N, C*H*W)
    y = x viewed in the new shape;  dx = dy viewed in the bottom's shape

Not in place (the top is a view of the bottom), as in Caffe.
"""
import numpy as np

from ..errors import LayerError
from ..layer import Layer, canonical_axis, register


@register("Flatten")
class Flatten(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError("Flatten does not run in place; give its top a new name")
        p = self.param.flatten_param
        shape = bottom[0].shape
        start = canonical_axis(p.axis, len(shape), "flatten_param.axis")
        end = canonical_axis(p.end_axis, len(shape), "flatten_param.end_axis")
        if end + 1 < start:
            raise LayerError(f"flatten_param end_axis {p.end_axis} comes before axis {p.axis} for bottom {shape}")
        top[0].reshape(shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:])

    def forward(self, bottom, top):
        top[0].data = bottom[0].data.reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff = top[0].diff.reshape(bottom[0].shape)
