"""What the two HBNN layers share: hbnn_param, alpha (.) sign(a) and its gradient.

A row a of length K (a weight row: the K inputs of one output; or an input row of the
GEMM: one sample, one im2col patch) is split into segments of `segment_size` consecutive
entries (the whole row when 0; the last segment is shorter when segment_size does not
divide K, and uses its true length s). Within a segment
    a~_k = alpha sign(a_k),    alpha = (1/s) sum_{l in seg} |a_l|,    sign(0) = +1.
Gradient: sign gets the straight-through estimator, d sign(a)/da := 1{|a| <= clip}, and
alpha its exact derivative d alpha / d a_k = sign(a_k) / s, so
    dC/da_k =  alpha 1{|a_k| <= clip} dC/da~_k            (straight-through term)
            +  sign(a_k)/s  sum_{l in seg} dC/da~_l sign(a_l)   (alpha term).
Weights use the layer's segment_size; binarised inputs (x~ = beta (.) sign(x)) use one
segment per GEMM input row, beta = mean |x| over the row: one beta per sample in
HBNNInnerProduct, one per im2col patch (sample, output position, group) in HBNNConvolution.
hbnn_param.clip applies to both.

segment_size is one the kernel packs (0, 8, 16, 32, 64: sub-words of its 64-bit words), so
that every HBNN layer can run the XOR/popcount GEMM and be saved packed.
"""
import math

import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from . import kernel
from .packing import pack_blob


def read_hbnn_param(param):
    """(segment_size, binarize_input, clip) from a LayerParameter, checked."""
    p = param.hbnn_param
    if p.segment_size not in kernel.SEGMENT_SIZES:
        raise LayerError(
            f"hbnn_param.segment_size must be 0 (one alpha per row) or 8, 16, 32, 64 (weights per "
            f"alpha, a sub-word of the kernel's 64-bit words), got {p.segment_size}")
    if math.isnan(p.clip) or p.clip < 0:
        raise LayerError(f"hbnn_param.clip must be >= 0 (the straight-through estimator passes the "
                         f"gradient where |w| <= clip), got {p.clip:g}")
    return int(p.segment_size), bool(p.binarize_input), float(p.clip)


def binarize_rows(X, scale):
    """scale (.) sign(X) for a per-row scale (R, 1): a binarised input in float math."""
    return np.where(X >= 0, scale, -scale).astype(X.dtype, copy=False)


def _expand(values, K, segment_size):
    """(R, n_segments) per-segment values, broadcastable against (R, K)."""
    if segment_size == 0:
        return values
    return np.repeat(values, kernel.segment_lengths(K, segment_size), axis=1)


def binarized_gradient(a, scale, d_binary, segment_size, clip):
    """dC/da (R, K) from dC/da~ (R, K), for a~ = scale (.) sign(a) with scale (R, n_segments)."""
    K = a.shape[1]
    one = a.dtype.type(1)
    sign = np.where(a >= 0, one, -one)
    projected = d_binary * sign
    if segment_size == 0:
        sums = projected.sum(axis=1, keepdims=True)
    else:
        sums = np.add.reduceat(projected, np.arange(0, K, segment_size), axis=1)
    lengths = kernel.segment_lengths(K, segment_size).astype(a.dtype)
    through = np.where(np.abs(a) <= clip, _expand(scale.astype(a.dtype), K, segment_size) * d_binary, 0)
    return through + sign * _expand(sums / lengths, K, segment_size)


def packed_weight_blob(weights, segment_size):
    """A BlobProto holding `weights` as sign bits + per-segment alpha (PackedSigns)."""
    proto = pb.BlobProto()
    proto.shape.dim.extend(int(d) for d in weights.shape)
    proto.packed.CopyFrom(pack_blob(weights, segment_size))
    return proto
