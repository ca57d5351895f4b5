"""Bias: add a bias broadcast over some axes of bottom 0.

    x: bottom 0;  b: bottom 1 if given, else a learned blob of shape
       x.shape[axis : axis + num_axes]    (bias_param axis 1, num_axes 1;
       num_axes -1 means every axis from `axis` on, 0 a single scalar)
    viewing x as (outer, D, inner) with D = b.size:
    y[o, d, i] = x[o, d, i] + b[d]
    dx = dy,   db = sum over o and i of dy  (+= for the learned blob)

The learned bias is filled by bias_param.filler (constant 0 when none is
given). The broadcasting helpers here are also used by the Scale layer.
"""
import numpy as np

from ..errors import LayerError
from ..fillers import filler
from ..layer import Layer, canonical_axis, register


def param_shape(x_shape, axis, num_axes, what):
    """Shape of a learned broadcast parameter: x_shape[axis : axis + num_axes]."""
    axis = canonical_axis(axis, len(x_shape))
    if num_axes < -1:
        raise LayerError(
            f"{what} num_axes must be non-negative, or -1 to extend to the end of bottom 0; got {num_axes}"
        )
    if num_axes >= 0 and axis + num_axes > len(x_shape):
        raise LayerError(
            f"the {what} blob's shape extends past bottom 0's shape {x_shape} "
            f"when applied from axis {axis} over {num_axes} axes"
        )
    return x_shape[axis:] if num_axes == -1 else x_shape[axis: axis + num_axes]


def broadcast_dims(x_shape, p_shape, axis, what):
    """(outer, D, inner) for applying a parameter of shape p_shape to x from `axis`.

    A scalar parameter applies from axis 0 whatever `axis` says, as in Caffe.
    """
    axis = 0 if len(p_shape) == 0 else canonical_axis(axis, len(x_shape))
    if axis + len(p_shape) > len(x_shape):
        raise LayerError(
            f"the {what} blob's shape {p_shape} extends past bottom 0's shape {x_shape} when applied from axis {axis}"
        )
    if tuple(x_shape[axis: axis + len(p_shape)]) != tuple(p_shape):
        raise LayerError(
            f"dimension mismatch: bottom 0 has shape {x_shape}, the {what} has shape {p_shape}, "
            f"which must equal bottom 0's axes {axis}..{axis + len(p_shape) - 1}"
        )
    outer = int(np.prod(x_shape[:axis]))
    inner = int(np.prod(x_shape[axis + len(p_shape):]))
    return outer, int(np.prod(p_shape)), inner


@register("Bias")
class Bias(Layer):
    min_bottom = 1
    max_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.bias_param
        if len(bottom) == 1:
            shape = param_shape(bottom[0].shape, p.axis, p.num_axes, "bias")
            self.blobs = [self.new_param_blob(shape, p.filler, filler("constant"))]

    def _bias(self, bottom):
        return bottom[1] if len(bottom) == 2 else self.blobs[0]

    def reshape(self, bottom, top):
        self.dims = broadcast_dims(bottom[0].shape, self._bias(bottom).shape, self.param.bias_param.axis, "bias")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x = bottom[0].data
        b = self._bias(bottom).data.reshape(self.dims[1], 1)
        top[0].data = (x.reshape(self.dims) + b).reshape(x.shape)

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff
        learned = len(bottom) == 1
        if (self.param_propagate_down[0] if learned else propagate_down[1]):
            db = dy.reshape(self.dims).sum(axis=(0, 2)).reshape(self._bias(bottom).shape)
            if learned:
                self.blobs[0].diff += db
            else:
                bottom[1].diff = db
        if propagate_down[0] and bottom[0] is not top[0]:
            bottom[0].diff = dy.copy()
