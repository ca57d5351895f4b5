"""Reduction: reduce every axis from reduction_param.axis on to one number.

    x viewed as (M, D), M = prod(shape[:axis]), D = prod(shape[axis:]); top shape = shape[:axis]
    SUM:   y = c * sum_d x            dx = c * dy
    ASUM:  y = c * sum_d |x|          dx = c * dy * sign(x)
    SUMSQ: y = c * sum_d x^2          dx = 2 c * dy * x
    MEAN:  y = c/D * sum_d x          dx = c/D * dy
c = coeff (default 1); axis 0 (default) reduces the whole blob to a scalar.
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..layer import Layer, canonical_axis, register

Op = pb.ReductionParameter


@register("Reduction")
class Reduction(Layer):
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        self.op = self.param.reduction_param.operation

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = canonical_axis(self.param.reduction_param.axis, len(shape), "reduction_param.axis")
        self.M = int(np.prod(shape[: self.axis]))
        self.D = int(np.prod(shape[self.axis:]))
        self.coeff = self.param.reduction_param.coeff
        if self.op == Op.MEAN:
            self.coeff /= self.D
        top[0].reshape(shape[: self.axis])

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(self.M, self.D)
        if self.op == Op.SUM or self.op == Op.MEAN:
            reduced = x.sum(axis=1)
        elif self.op == Op.ASUM:
            reduced = np.abs(x).sum(axis=1)
        else:
            reduced = np.einsum("md,md->m", x, x)
        top[0].data = (reduced * x.dtype.type(self.coeff)).reshape(top[0].shape)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = bottom[0].data.reshape(self.M, self.D)
        scale = top[0].diff.reshape(self.M, 1) * x.dtype.type(self.coeff)
        if self.op == Op.SUM or self.op == Op.MEAN:
            dx = np.broadcast_to(scale, x.shape).copy()
        elif self.op == Op.ASUM:
            dx = scale * np.sign(x)
        else:
            dx = (2 * scale) * x
        bottom[0].diff = dx.reshape(bottom[0].shape)
