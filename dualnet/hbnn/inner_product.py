"""HBNNInnerProduct: an InnerProduct whose weights (and optionally inputs) are binarised.

    x: bottom reshaped to (M, K), M = prod(shape[:axis]), K = prod(shape[axis:])
    W: (N, K) latent float weights (what the solver updates);  b: (N,) full precision
    W~ = alpha (.) sign(W),  alpha (N, n_segments): mean |W| over each segment of
         hbnn_param.segment_size consecutive weights of a row (0: the whole row)
    x~ = beta (.) sign(x),   beta (M, 1): mean |x| over each row's K inputs (one beta per
                             sample with the default axis: 1)
         (with hbnn_param.binarize_input; else x~ = x)
    y = x~ W~^T + b                                 top shape: shape[:axis] + (N,)
With binarize_input and float32 data, y comes from the kernel's XOR/popcount GEMM on the
packed signs; otherwise from a float GEMM with W~ (float64 gradient checks always).
Backward (dualnet.hbnn.binarization states the rule for a~ = scale (.) sign(a)):
    dC/dW~ = dy^T x~,   dW += straight-through + alpha terms of dC/dW~   (segments of W)
    dC/dx~ = dy W~,     dx = dC/dx~, or with binarize_input its straight-through + beta
                        terms (one segment: the sample's row)
    db += sum_m dy
`transpose: true` is refused: the binarised rows must be the (N, K) rows that are packed.
"""
import numpy as np

from ..errors import LayerError
from ..layer import register
from ..layers.inner_product import InnerProduct
from . import kernel
from .binarization import binarize_rows, binarized_gradient, packed_weight_blob, read_hbnn_param


@register("HBNNInnerProduct")
class HBNNInnerProduct(InnerProduct):
    def setup(self, bottom, top):
        self.segment_size, self.binarize_input, self.clip = read_hbnn_param(self.param)
        if self.param.inner_product_param.transpose:
            raise LayerError("HBNNInnerProduct binarises the rows of an (N, K) weight; "
                             "remove transpose: true")
        super().setup(bottom, top)

    def forward(self, bottom, top):
        x = bottom[0].data.reshape(-1, self.K)
        W = self.blobs[0].data
        beta = None
        if self.binarize_input and x.dtype == np.float32:
            xbits, beta = kernel.pack_with_scales(np.ascontiguousarray(x), 0)
            wbits, alpha = kernel.pack_with_scales(np.ascontiguousarray(W), self.segment_size)
            y = kernel.binary_gemm(xbits, beta, wbits, alpha, self.K, self.segment_size)
        else:
            W_binary, _ = kernel.binarize(W, self.segment_size)
            if self.binarize_input:
                x, beta = kernel.binarize(x, 0)
            y = x @ W_binary.T
        if self.bias_term:
            y += self.blobs[1].data
        top[0].data = y.reshape(top[0].shape)
        self.cache["beta"] = beta

    def backward(self, top, propagate_down, bottom):
        beta = self.cache.pop("beta")
        dy = top[0].diff.reshape(-1, self.num_output)
        x = bottom[0].data.reshape(-1, self.K)
        W = self.blobs[0]
        W_binary, alpha = kernel.binarize(W.data, self.segment_size)
        x_binary = binarize_rows(x, beta) if self.binarize_input else x
        if self.param_propagate_down[0]:
            W.diff += binarized_gradient(W.data, alpha, dy.T @ x_binary, self.segment_size, self.clip)
        if self.bias_term and self.param_propagate_down[1]:
            self.blobs[1].diff += dy.sum(axis=0)
        if propagate_down[0]:
            dx = dy @ W_binary
            if self.binarize_input:
                dx = binarized_gradient(x, beta, dx, 0, self.clip)
            bottom[0].diff = dx.reshape(bottom[0].shape)

    def packed_blob(self, j):
        """Weights as sign bits + alpha for `net.save(packed_hbnn=True)`; other blobs stay float."""
        return packed_weight_blob(self.blobs[0].data, self.segment_size) if j == 0 else None
