"""Scale: multiply by a scale broadcast over some axes of bottom 0, optionally add a bias.

    x: bottom 0;  s: bottom 1 if given, else a learned blob of shape
       x.shape[axis : axis + num_axes]    (scale_param axis 1, num_axes 1;
       num_axes -1 means every axis from `axis` on, 0 a single scalar)
    b: with bias_term, a learned blob shaped like s
    viewing x as (outer, D, inner) with D = s.size:
    y[o, d, i] = x[o, d, i] * s[d] (+ b[d])
    dx = dy * s,   ds = sum over o and i of dy * x,   db = sum over o and i of dy
    (ds and db accumulate into learned blobs; bottom 1's diff is overwritten)

Blobs: [scale, bias] with one bottom, [bias] with two (bias_term only).
The scale is filled by scale_param.filler (constant 1 when none is given),
the bias by bias_filler (constant 0). Runs in place: the input is cached.
"""
import numpy as np

from ..fillers import filler
from ..layer import Layer, register
from .bias import broadcast_dims, param_shape


@register("Scale")
class Scale(Layer):
    min_bottom = 1
    max_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.scale_param
        self.blobs = []
        x_shape = bottom[0].shape
        if len(bottom) == 1:
            shape = param_shape(x_shape, p.axis, p.num_axes, "scale")
            self.blobs.append(self.new_param_blob(shape, p.filler, filler("constant", value=1.0)))
        if p.bias_term:
            # As Caffe: with a scale bottom, the bias spans as many axes as it has.
            num_axes = bottom[1].num_axes if len(bottom) == 2 else p.num_axes
            shape = param_shape(x_shape, p.axis, num_axes, "bias")
            self.blobs.append(self.new_param_blob(shape, p.bias_filler, filler("constant")))

    def _scale(self, bottom):
        return bottom[1] if len(bottom) == 2 else self.blobs[0]

    def reshape(self, bottom, top):
        axis = self.param.scale_param.axis
        self.dims = broadcast_dims(bottom[0].shape, self._scale(bottom).shape, axis, "scale")
        if self.param.scale_param.bias_term:
            self.bias_dims = broadcast_dims(bottom[0].shape, self.blobs[-1].shape, axis, "bias")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        x = bottom[0].data
        s = self._scale(bottom).data
        self.cache["x"], self.cache["s"] = x, s
        y = x.reshape(self.dims) * s.reshape(self.dims[1], 1)
        if self.param.scale_param.bias_term:
            y = y.reshape(self.bias_dims)
            y += self.blobs[-1].data.reshape(self.bias_dims[1], 1)
        top[0].data = y.reshape(x.shape)

    def backward(self, top, propagate_down, bottom):
        x, s = self.cache.pop("x"), self.cache.pop("s")
        dy = top[0].diff
        learned_scale = len(bottom) == 1
        if self.param.scale_param.bias_term and self.param_propagate_down[-1]:
            self.blobs[-1].diff += dy.reshape(self.bias_dims).sum(axis=(0, 2)).reshape(self.blobs[-1].shape)
        if (self.param_propagate_down[0] if learned_scale else propagate_down[1]):
            ds = np.einsum("odi,odi->d", dy.reshape(self.dims), x.reshape(self.dims)).reshape(s.shape)
            if learned_scale:
                self.blobs[0].diff += ds
            else:
                bottom[1].diff = ds
        if propagate_down[0]:
            bottom[0].diff = (dy.reshape(self.dims) * s.reshape(self.dims[1], 1)).reshape(x.shape)
