"""Deconvolution: Caffe's DeconvolutionLayer, the transposed (adjoint) convolution.

    x: (N, C, H, W) -> y: (N, O, OH, OW);  W: (C, O/G, KH, KW);  b: (O,)
    OH = stride_h (H - 1) + dilation_h (KH - 1) + 1 - 2 pad_h     (same for W)

Each input pixel scatters its weighted kernel into the output: y is what a
Convolution with the same weights (O -> C channels, same kernel, pad,
stride, dilation) sends back as its input gradient, so
<conv(z), x> = <z, deconv(x)> for every z. Per group g, with x_rows the
input as (N*H*W, C/G) rows and Wm the group's weights as a (C/G, KH*KW*O/G)
matrix (dualnet.im2col),
    y_g = col2im(x_rows Wm) + b  (conv_transpose),   dx_rows = im2col(dy_g) Wm^T,
    dWm += x_rows^T im2col(dy_g),  db += sum_{n,i,j} dy
Parameters as for Convolution (the same convolution_param); with the
'bilinear' weight filler and stride f, kernel 2f - f % 2, pad ceil((f-1)/2)
it is the usual f-times bilinear upsampling.
"""
import numpy as np

from ..errors import LayerError
from ..im2col import conv_transpose, im2col, kernel_from_matrix, kernel_matrix
from ..layer import register
from .convolution import ConvolutionBase


@register("Deconvolution")
class Deconvolution(ConvolutionBase):
    reverse = True

    def output_spatial(self, spatial):
        out = tuple(
            st * (s - 1) + d * (k - 1) + 1 - 2 * p
            for s, k, p, st, d in zip(spatial, self.kernel, self.pad, self.stride, self.dilation)
        )
        if any(o < 1 for o in out):
            raise LayerError(f"the padding {self.pad} leaves no output for input {tuple(spatial)} "
                             f"(output {out}); use less padding")
        return out

    def forward(self, bottom, top):
        W = self.blobs[0].data
        for i, (b, t) in enumerate(zip(bottom, top)):
            x = b.data.reshape(self.batch_shape(b.shape, self.channels))
            x_rows = np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(-1, self.channels)  # (N*H*W, C)
            y_shape = self.batch_shape(t.shape, self.num_output)
            parts = [conv_transpose(x_rows[:, gi], W[gi], self.group_shape(y_shape), self.pad, self.stride,
                                    self.dilation)
                     for gi in self.groups(self.channels)]
            y = parts[0] if self.group == 1 else np.concatenate(parts, axis=1)
            if self.bias_term:
                y += self.blobs[1].data.reshape((-1,) + (1,) * self.num_spatial)
            t.data = y.reshape(t.shape)
            self.cache[i] = x_rows

    def backward(self, top, propagate_down, bottom):
        W = self.blobs[0]
        for i, (t, b) in enumerate(zip(top, bottom)):
            x_rows = self.cache.pop(i)
            dy = t.diff.reshape(self.batch_shape(t.shape, self.num_output))
            if self.bias_term and self.param_propagate_down[1]:
                self.blobs[1].diff += dy.sum(axis=(0,) + tuple(range(2, dy.ndim)))
            if not (propagate_down[i] or self.param_propagate_down[0]):
                continue
            dx_t = np.empty((self.channels, x_rows.shape[0]), dtype=dy.dtype)  # (C, N*H*W)
            for gi, go in zip(self.groups(self.channels), self.groups(self.num_output)):
                cols = im2col(dy[:, go], self.kernel, self.pad, self.stride, self.dilation)  # (N*H*W, K*O/G)
                if self.param_propagate_down[0]:
                    W.diff[gi] += kernel_from_matrix(x_rows[:, gi].T @ cols, W.diff[gi].shape)
                if propagate_down[i]:
                    np.matmul(kernel_matrix(W.data[gi]), cols.T, out=dx_t[gi])
            if propagate_down[i]:
                dx = dx_t.reshape(self.channels, dy.shape[0], -1).transpose(1, 0, 2)
                b.diff = np.ascontiguousarray(dx).reshape(b.shape)
