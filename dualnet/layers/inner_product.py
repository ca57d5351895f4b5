"""InnerProduct: a fully connected layer.

    x: bottom reshaped to (M, K), M = prod(shape[:axis]), K = prod(shape[axis:])
    W: (N, K), or (K, N) with `transpose: true`;  b: (N,)
    y = x W^T + b                                  top shape: shape[:axis] + (N,)
    dx = dy W,   dW += dy^T x  (x^T dy when transposed),   db += sum_m dy
"""
import numpy as np

from ..errors import LayerError
from ..fillers import filler
from ..layer import Layer, canonical_axis, register


@register("InnerProduct")
class InnerProduct(Layer):
    owns_tops = True
    exact_num_bottom = 1
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.inner_product_param
        if not p.HasField("num_output"):
            raise LayerError("inner_product_param needs num_output")
        self.num_output = p.num_output
        self.bias_term = p.bias_term
        self.transpose = p.transpose
        self.axis = canonical_axis(p.axis, bottom[0].num_axes, "inner_product_param.axis")
        self.K = int(np.prod(bottom[0].shape[self.axis:]))
        shape = (self.K, self.num_output) if self.transpose else (self.num_output, self.K)
        self.blobs = [self.new_param_blob(shape, p.weight_filler, filler("constant"))]
        if self.bias_term:
            self.blobs.append(self.new_param_blob((self.num_output,), p.bias_filler, filler("constant")))

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) <= self.axis:
            raise LayerError(f"bottom shape {shape} has no axis {self.axis}")
        K = int(np.prod(shape[self.axis:]))
        if K != self.K:
            raise LayerError(
                f"input size incompatible with inner product parameters: bottom {shape} gives "
                f"{K} inputs per sample after axis {self.axis}, the weights expect {self.K}"
            )
        top[0].reshape(shape[: self.axis] + (self.num_output,))

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(-1, self.K)
        W = self.blobs[0].data
        y = top[0].output_data(x, W).reshape(-1, self.num_output)
        np.matmul(x, W if self.transpose else W.T, out=y)
        if self.bias_term:
            y += self.blobs[1].data

    def backward(self, top, propagate_down, bottom):
        dy = top[0].diff.reshape(-1, self.num_output)
        x = bottom[0].data.reshape(-1, self.K)
        W = self.blobs[0]
        if self.param_propagate_down[0]:
            W.diff += x.T @ dy if self.transpose else dy.T @ x
        if self.bias_term and self.param_propagate_down[1]:
            self.blobs[1].diff += dy.sum(axis=0)
        if propagate_down[0]:
            dx = dy @ W.data.T if self.transpose else dy @ W.data
            bottom[0].diff = dx.reshape(bottom[0].shape)
