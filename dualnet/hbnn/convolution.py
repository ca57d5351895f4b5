"""HBNNConvolution: a Convolution whose weights (and optionally inputs) are binarised.

    x: (N, C, H, W) -> y: (N, O, OH, OW);  W: (O, C/G, KH, KW) latent float weights;  b: (O,)
    geometry, groups, dilation, several bottoms: as Convolution (floor rule for OH, OW)
Per group g the convolution is one GEMM over the batch, with cols = im2col(x_g) in Caffe's
column order (c, kh, kw): (N*OH*OW, K), K = C/G * KH * KW, the length of a weight row:
    W~ = alpha (.) sign(W) on the rows W.reshape(O, K), alpha per segment of
         hbnn_param.segment_size consecutive weights in (c, kh, kw) order (0: the whole row)
    cols~ = beta (.) sign(cols), beta: mean |.| over each im2col patch (a row of cols;
         padding zeros count in the mean and binarise to +beta, sign(0) = +1), with
         hbnn_param.binarize_input; else cols~ = cols
    y_g = cols~_g W~_g^T + b_g
With binarize_input and float32 data the GEMM is the kernel's XOR/popcount on packed signs;
otherwise a float GEMM with W~ (float64 gradient checks always).
Backward (the rule for a~ = scale (.) sign(a) is in dualnet.hbnn.binarization):
    dC/dW~_g = dy_g^T cols~_g,   dW += straight-through + alpha terms of dC/dW~ (rows of W)
    dC/dcols~_g = dy_g W~_g,     dx_g = col2im(dC/dcols~_g) (conv_transpose without building
                                 it), or with binarize_input col2im of its straight-through +
                                 beta terms (one segment: the patch)
    db += sum_{n,i,j} dy
"""
import numpy as np

from ..im2col import col2im, conv_transpose, im2col
from ..layer import register
from ..layers.convolution import Convolution
from . import kernel
from .binarization import binarize_rows, binarized_gradient, packed_weight_blob, read_hbnn_param


@register("HBNNConvolution")
class HBNNConvolution(Convolution):
    def setup(self, bottom, top):
        self.segment_size, self.binarize_input, self.clip = read_hbnn_param(self.param)
        super().setup(bottom, top)

    def columns(self, x_group):
        """im2col of one group's channels in Caffe's (c, kh, kw) order: (N*P, K)."""
        return im2col(x_group, self.kernel, self.pad, self.stride, self.dilation, channels_last=False)

    def forward(self, bottom, top):
        O = self.num_output
        W_rows = self.blobs[0].data.reshape(O, -1)
        packed = self.binarize_input and W_rows.dtype == np.float32
        if packed:
            wbits, alpha = kernel.pack_with_scales(np.ascontiguousarray(W_rows), self.segment_size)
        else:
            W_binary, _ = kernel.binarize(W_rows, self.segment_size)
        for i, (b, t) in enumerate(zip(bottom, top)):
            x = b.data.reshape(self.batch_shape(b.shape, self.channels))
            y_rows = np.empty((x.shape[0] * int(np.prod(t.shape[self.axis + 1:])), O), dtype=x.dtype)
            cols, betas = [], []
            for gi, go in zip(self.groups(self.channels), self.groups(O)):
                c, beta = self.columns(x[:, gi]), None
                if packed:
                    c = np.ascontiguousarray(c)
                    xbits, beta = kernel.pack_with_scales(c, 0)
                    y_rows[:, go] = kernel.binary_gemm(xbits, beta, wbits[go], alpha[go], c.shape[1],
                                                       self.segment_size)
                elif self.binarize_input:
                    c_binary, beta = kernel.binarize(c, 0)
                    y_rows[:, go] = c_binary @ W_binary[go].T
                else:
                    y_rows[:, go] = c @ W_binary[go].T
                cols.append(c)
                betas.append(beta)
            if self.bias_term:
                y_rows += self.blobs[1].data
            y = y_rows.reshape(x.shape[0], -1, O).transpose(0, 2, 1)
            t.data = np.ascontiguousarray(y).reshape(t.shape)
            self.cache[i] = cols, betas

    def backward(self, top, propagate_down, bottom):
        W = self.blobs[0]
        O = self.num_output
        W_rows = W.data.reshape(O, -1)
        W_binary, alpha = kernel.binarize(W_rows, self.segment_size)
        d_W_binary = np.zeros_like(W_rows)
        for i, (t, b) in enumerate(zip(top, bottom)):
            cols, betas = self.cache.pop(i)
            if not (propagate_down[i] or any(self.param_propagate_down)):
                continue
            dy = t.diff.reshape(cols[0].shape[0] // int(np.prod(t.shape[self.axis + 1:])), O, -1)
            dy_rows = np.ascontiguousarray(dy.transpose(0, 2, 1)).reshape(-1, O)  # (N*P, O)
            x_shape = self.group_shape(self.batch_shape(b.shape, self.channels))
            parts = []
            for go, c, beta in zip(self.groups(O), cols, betas):
                if self.param_propagate_down[0]:
                    c_binary = binarize_rows(c, beta) if self.binarize_input else c
                    d_W_binary[go] += dy_rows[:, go].T @ c_binary
                if not propagate_down[i]:
                    continue
                if self.binarize_input:
                    d_cols = binarized_gradient(c, beta, dy_rows[:, go] @ W_binary[go], 0, self.clip)
                    parts.append(col2im(d_cols, x_shape, self.kernel, self.pad, self.stride, self.dilation,
                                        channels_last=False))
                else:
                    parts.append(conv_transpose(dy_rows[:, go], W_binary.reshape(W.shape)[go], x_shape,
                                                self.pad, self.stride, self.dilation))
            if self.bias_term and self.param_propagate_down[1]:
                self.blobs[1].diff += dy_rows.sum(axis=0)
            if propagate_down[i]:
                dx = parts[0] if self.group == 1 else np.concatenate(parts, axis=1)
                b.diff = dx.reshape(b.shape)
        if self.param_propagate_down[0]:
            W.diff += binarized_gradient(W_rows, alpha, d_W_binary, self.segment_size,
                                         self.clip).reshape(W.shape)

    def packed_blob(self, j):
        """Weights as sign bits + alpha for `net.save(packed_hbnn=True)`; other blobs stay float."""
        return packed_weight_blob(self.blobs[0].data, self.segment_size) if j == 0 else None
