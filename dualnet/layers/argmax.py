"""ArgMax: the indices (and optionally values) of the top_k largest scores.

Without argmax_param.axis, per sample over all C*H*W values of x (N, ...):
    top (N, 1, top_k[, 1...]) indices, or with out_max_val (N, 2, top_k[, 1...])
    holding the indices in [:, 0] and the values in [:, 1]; the top has
    max(3, x.ndim) axes, padded with 1s.
With axis: along that axis, top = x's shape with size top_k there, holding the
indices, or the values instead when out_max_val.
Order: largest first; equal scores list the higher index first (Caffe's
descending sort of (value, index) pairs). No gradient.
"""
import numpy as np

from ..errors import LayerError
from ..layer import Layer, canonical_axis, register


@register("ArgMax")
class ArgMax(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.argmax_param
        self.top_k, self.out_max_val = p.top_k, p.out_max_val
        if self.top_k < 1:
            raise LayerError("argmax_param.top_k must be at least 1")
        self.axis = canonical_axis(p.axis, bottom[0].num_axes, "argmax_param.axis") if p.HasField("axis") else None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if self.axis is not None:
            if self.top_k > shape[self.axis]:
                raise LayerError(
                    f"top_k ({self.top_k}) must be less than or equal to the size of axis {self.axis} of bottom {shape}"
                )
            top[0].reshape(shape[: self.axis] + (self.top_k,) + shape[self.axis + 1:])
            return
        per_sample = int(np.prod(shape[1:]))
        if self.top_k > per_sample:
            raise LayerError(
                f"top_k ({self.top_k}) must be less than or equal to the {per_sample} values per sample "
                f"of bottom {shape}"
            )
        top_shape = [1] * max(3, len(shape))
        top_shape[0], top_shape[1], top_shape[2] = shape[0], 2 if self.out_max_val else 1, self.top_k
        top[0].reshape(top_shape)

    def forward(self, bottom, top):
        x = bottom[0].data
        axis = 1 if self.axis is None else self.axis
        scores = x.reshape(x.shape[0], -1) if self.axis is None else x
        # Stable descending sort of the reversed axis puts the higher index first among ties.
        reversed_scores = np.flip(scores, axis=axis)
        order = np.argsort(-reversed_scores, axis=axis, kind="stable")
        order = np.take(order, np.arange(self.top_k), axis=axis)
        values = np.take_along_axis(reversed_scores, order, axis=axis)
        indices = (scores.shape[axis] - 1 - order).astype(x.dtype)
        if self.axis is not None:
            top[0].data = values if self.out_max_val else indices
        elif self.out_max_val:
            top[0].data = np.stack([indices, values], axis=1).reshape(top[0].shape)
        else:
            top[0].data = indices.reshape(top[0].shape)

    def allow_force_backward(self, bottom_index):
        return False
