"""Reshape: give the bottom a new shape without changing its data.

reshape_param.shape lists the new dims: 0 copies the bottom's dim at the same
position, one -1 is inferred so that the count is unchanged. `axis` and
`num_axes` choose the run of bottom axes the shape replaces (Caffe's rules):
axis >= 0 starts before bottom axis `axis`, axis < 0 counts from the end
(-1 is after the last axis); num_axes -1 means every axis from `axis` on.

    (2, 3, 4, 5) with shape {0, -1}                   -> (2, 60)
    (2, 8) with axis 1 num_axes 0 shape {1, 1}         -> (2, 1, 1, 8)
    y = x viewed in the new shape;  dx = dy viewed in the bottom's shape
Not in place, as in Caffe.
"""
import numpy as np

from ..errors import LayerError
from ..layer import Layer, register


@register("Reshape")
class Reshape(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        dims = list(self.param.reshape_param.shape.dim)
        self.copy_axes = [i for i, d in enumerate(dims) if d == 0]
        inferred = [i for i, d in enumerate(dims) if d == -1]
        if len(inferred) > 1:
            raise LayerError(f"new shape {dims} contains several -1 dims; at most one may be inferred")
        if any(d < -1 for d in dims):
            raise LayerError(f"new shape {dims} has a negative dim; use positive sizes, 0 (copy) or -1 (infer)")
        self.inferred_axis = inferred[0] if inferred else None
        self.dims = dims

    def reshape(self, bottom, top):
        if top[0] is bottom[0]:
            raise LayerError("Reshape does not run in place; give its top a new name")
        p = self.param.reshape_param
        shape = bottom[0].shape
        start = p.axis if p.axis >= 0 else len(shape) + p.axis + 1
        if not 0 <= start <= len(shape):
            raise LayerError(f"axis {p.axis} is out of range for a {len(shape)}-D bottom {shape}")
        if p.num_axes < -1:
            raise LayerError(f"num_axes must be >= 0, or -1 for all, got {p.num_axes}")
        end = len(shape) if p.num_axes == -1 else start + p.num_axes
        if end > len(shape):
            raise LayerError(
                f"end_axis = axis + num_axes = {end} is out of range for a {len(shape)}-D bottom {shape}"
            )
        new = list(self.dims)
        for c in self.copy_axes:
            if start + c >= len(shape):
                raise LayerError(
                    f"new shape {self.dims} contains a 0 at position {c}, but bottom {shape} has no axis "
                    f"{start + c} to copy"
                )
            new[c] = shape[start + c]
        count = bottom[0].count
        if self.inferred_axis is not None:
            explicit = int(np.prod(shape[:start])) * int(np.prod(shape[end:]))
            explicit *= int(np.prod([d for i, d in enumerate(new) if i != self.inferred_axis]))
            if explicit == 0 or count % explicit:
                raise LayerError(
                    f"bottom count ({count}, shape {shape}) must be divisible by the product of the "
                    f"specified dimensions ({explicit}) to infer the -1 in {self.dims}"
                )
            new[self.inferred_axis] = count // explicit
        top_shape = shape[:start] + tuple(new) + shape[end:]
        if int(np.prod(top_shape)) != count:
            raise LayerError(
                f"output count must match input count: bottom {shape} has {count}, "
                f"shape {self.dims} gives {top_shape} with {int(np.prod(top_shape))}"
            )
        top[0].reshape(top_shape)

    def forward(self, bottom, top):
        top[0].data = bottom[0].data.reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff = top[0].diff.reshape(bottom[0].shape)
