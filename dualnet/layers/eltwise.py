"""Eltwise: combine bottoms of one shape element by element.

    PROD:  y = x_1 * x_2 * ...          dx_i = dy * prod_{j != i} x_j
           (stable_prod_grad, default; with stable_prod_grad false dx_i = dy * y / x_i)
    SUM:   y = sum_i c_i x_i            dx_i = c_i dy      (coeff c_i, one per bottom, default 1)
    MAX:   y = max_i x_i                dx_i = dy where bottom i gave the max, else 0
MAX ties go as in Caffe: between the first two bottoms the second wins, after
that the earlier bottom keeps the max.
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from ..layer import Layer, register

Op = pb.EltwiseParameter


@register("Eltwise")
class Eltwise(Layer):
    min_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.eltwise_param
        self.op = p.operation
        if p.coeff and len(p.coeff) != len(bottom):
            raise LayerError(
                f"Eltwise takes one coefficient per bottom blob: {len(p.coeff)} coeff for {len(bottom)} bottoms"
            )
        if p.coeff and self.op != Op.SUM:
            raise LayerError("Eltwise only takes coefficients for summation (operation: SUM)")
        self.coeff = list(p.coeff) if p.coeff else [1.0] * len(bottom)
        self.stable_prod_grad = p.stable_prod_grad

    def reshape(self, bottom, top):
        for i, blob in enumerate(bottom[1:], 1):
            if blob.shape != bottom[0].shape:
                raise LayerError(
                    f"all bottoms must have the same shape: bottom 0 is {bottom[0].shape}, bottom {i} is {blob.shape}"
                )
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        xs = [blob.data for blob in bottom]
        if self.op == Op.PROD:
            y = xs[0] * xs[1]
            for x in xs[2:]:
                y *= x
            self.cache.update(xs=xs, y=y)
        elif self.op == Op.SUM:
            y = np.zeros_like(xs[0])
            for c, x in zip(self.coeff, xs):
                y += x if c == 1 else x * x.dtype.type(c)
        else:
            # The first pair: strictly greater keeps bottom 0, so a tie picks bottom 1.
            first_wins = xs[0] > xs[1]
            winner = np.where(first_wins, 0, 1)
            y = np.where(first_wins, xs[0], xs[1])
            for i, x in enumerate(xs[2:], 2):
                better = x > y
                winner[better] = i
                y = np.where(better, x, y)
            self.cache["winner"] = winner
        top[0].data = y

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff
        cache, self.cache = self.cache, {}
        for i, blob in enumerate(bottom):
            if not propagate_down[i]:
                continue
            if self.op == Op.PROD:
                xs = cache["xs"]
                if self.stable_prod_grad:
                    others = [x for j, x in enumerate(xs) if j != i]
                    grad = others[0].copy()
                    for x in others[1:]:
                        grad *= x
                else:
                    grad = cache["y"] / xs[i]
                blob.diff = grad * dy
            elif self.op == Op.SUM:
                blob.diff = dy.copy() if self.coeff[i] == 1 else dy * dy.dtype.type(self.coeff[i])
            else:
                blob.diff = np.where(cache["winner"] == i, dy, 0)
