"""Slice: cut the bottom along slice_param.axis (default 1; `slice_dim` is the
deprecated non-negative spelling) into one piece per top.

    slice_point p_1 < ... < p_{T-1}:  top t gets indices [p_t, p_{t+1}) with p_0 = 0, p_T = size
    no slice_point:  T equal pieces (the axis size must be divisible by T)
    dx = the top diffs put back in their places along the axis
"""
import numpy as np

from ..errors import LayerError
from ..layer import Layer, canonical_axis, register


@register("Slice")
class Slice(Layer):
    exact_num_bottom = 1
    min_top = 1

    def setup(self, bottom, top):
        p = self.param.slice_param
        if p.HasField("axis") and p.HasField("slice_dim"):
            raise LayerError("give either slice_param.axis or slice_dim, not both")
        if p.slice_point and len(p.slice_point) != len(top) - 1:
            raise LayerError(
                f"{len(p.slice_point)} slice_point values need {len(p.slice_point) + 1} tops, got {len(top)}"
            )

    def reshape(self, bottom, top):
        p = self.param.slice_param
        shape = bottom[0].shape
        if p.HasField("slice_dim"):
            if p.slice_dim >= len(shape):
                raise LayerError(f"slice_dim {p.slice_dim} is out of range for a blob with {len(shape)} axes")
            self.axis = p.slice_dim
        else:
            self.axis = canonical_axis(p.axis, len(shape), "slice_param.axis")
        size = shape[self.axis]
        if p.slice_point:
            points = [0, *p.slice_point, size]
            if any(b <= a for a, b in zip(points, points[1:])):
                raise LayerError(
                    f"slice_point values {list(p.slice_point)} must increase strictly and stay inside "
                    f"(0, {size}), the size of axis {self.axis} of bottom {shape}"
                )
            self.sizes = [b - a for a, b in zip(points, points[1:])]
        else:
            if size % len(top):
                raise LayerError(
                    f"number of top blobs ({len(top)}) should evenly divide input slice axis ({size}) "
                    f"of bottom {shape}; give slice_point values for uneven pieces"
                )
            self.sizes = [size // len(top)] * len(top)
        for blob, piece in zip(top, self.sizes):
            blob.reshape(shape[: self.axis] + (piece,) + shape[self.axis + 1:])

    def forward(self, bottom, top):
        pieces = np.split(bottom[0].data, np.cumsum(self.sizes)[:-1], axis=self.axis)
        for blob, piece in zip(top, pieces):
            blob.data = piece.copy()

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff = np.concatenate([blob.diff for blob in top], axis=self.axis)
