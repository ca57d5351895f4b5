"""Concat: join bottoms along concat_param.axis (default 1; `concat_dim` is the
deprecated non-negative spelling).

    bottoms: shapes equal except along the axis, e.g. (N, C_i, H, W) for axis 1
    y = [x_1, x_2, ...] along the axis           top: (N, sum_i C_i, H, W)
    dx_i = the slice of dy that x_i filled
"""
import numpy as np

from ..errors import LayerError
from ..layer import Layer, canonical_axis, register


@register("Concat")
class Concat(Layer):
    min_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.concat_param
        if p.HasField("axis") and p.HasField("concat_dim"):
            raise LayerError("give either concat_param.axis or concat_dim, not both")

    def reshape(self, bottom, top):
        p = self.param.concat_param
        first = bottom[0].shape
        if p.HasField("concat_dim"):
            if p.concat_dim >= len(first):
                raise LayerError(f"concat_dim {p.concat_dim} is out of range for a blob with {len(first)} axes")
            self.axis = p.concat_dim
        else:
            self.axis = canonical_axis(p.axis, len(first), "concat_param.axis")
        for i, blob in enumerate(bottom[1:], 1):
            shape = blob.shape
            if len(shape) != len(first):
                raise LayerError(
                    f"all inputs must have the same number of axes: bottom 0 is {first}, bottom {i} is {shape}"
                )
            if shape[: self.axis] + shape[self.axis + 1:] != first[: self.axis] + first[self.axis + 1:]:
                raise LayerError(
                    f"all inputs must have the same shape except along the concat axis {self.axis}: "
                    f"bottom 0 is {first}, bottom {i} is {shape}"
                )
        self.sizes = [blob.shape[self.axis] for blob in bottom]
        top[0].reshape(first[: self.axis] + (sum(self.sizes),) + first[self.axis + 1:])

    def forward(self, bottom, top):
        top[0].data = np.concatenate([blob.data for blob in bottom], axis=self.axis)

    def backward(self, top, propagate_down, bottom):
        pieces = np.split(top[0].diff, np.cumsum(self.sizes)[:-1], axis=self.axis)
        for blob, piece, down in zip(bottom, pieces, propagate_down):
            if down:
                blob.diff = piece.copy()
