"""HBNN weights on disk: sign bits and per-segment scales in a PackedSigns message.

A weight blob of shape (R, ...) is read as R rows of K = prod(shape[1:]) weights, Caffe's
layout (InnerProduct (N, K), Convolution (C_out, C_in, kh, kw)); a 1-D blob is one row.
The message holds
    shape          the blob's shape
    segment_size   0 (one scale per row), 8, 16, 32 or 64
    bits           the rows packed as kernel.pack_rows does: R * ceil(K/64) uint64 words,
                   little endian; bit k % 64 of word k // 64 is 1 for w >= 0
    scale          alpha = mean |w| per segment, R * n_segments floats, row-major
and unpacks to exactly W~ = alpha (.) sign(W) in float32: the weights the HBNN forward uses
(packing W~ again gives the same message). The latent float weights that training updates
are not kept, so a packed blob is for deployment, not for resuming training.

Size of the BlobProto of a 500 x 800 InnerProduct weight (float32 data: 1,600,012 bytes):
    segment_size 0: 54,028 bytes (29.6x smaller)    64: 78,029 (20.5x)    32: 102,029 (15.7x)
                16: 152,029 (10.5x)                  8: 252,029 (6.3x)
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import KernelError, WeightsError
from . import kernel


def _rows_and_length(shape):
    """(R, K): rows along the first axis, the other axes flattened."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, int(shape[0])
    return int(shape[0]), int(np.prod(shape[1:], dtype=np.int64))


def pack_blob(array, segment_size):
    """The PackedSigns message of a float weight blob (binarised with `segment_size`)."""
    try:
        segment_size = kernel._check_segment_size(segment_size)
    except KernelError as exc:
        raise WeightsError(f"cannot pack an HBNN blob: {exc}") from None
    values = np.ascontiguousarray(array, dtype=np.float32)
    rows, K = _rows_and_length(values.shape)
    message = pb.PackedSigns()
    message.shape.extend(int(d) for d in values.shape)
    message.segment_size = segment_size
    if rows == 0 or K == 0:
        return message
    bits, scales = kernel.pack_with_scales(values.reshape(rows, K), segment_size)
    message.bits = bits.astype("<u8", copy=False).tobytes()
    message.scale.extend(scales.ravel().tolist())
    return message


def unpack_blob(packed):
    """W~ = alpha (.) sign(W), float32 in the blob's shape, from a PackedSigns message."""
    shape = tuple(int(d) for d in packed.shape)
    if any(d < 0 for d in shape):
        raise WeightsError(f"packed HBNN blob has a negative dimension in its shape {shape}")
    segment_size = int(packed.segment_size)
    if segment_size not in kernel.SEGMENT_SIZES:
        raise WeightsError(f"packed HBNN blob has segment_size {segment_size}; "
                           f"expected one of {kernel.SEGMENT_SIZES}")
    rows, K = _rows_and_length(shape)
    if rows == 0 or K == 0:
        return np.zeros(shape, dtype=np.float32)
    words, segments = kernel.n_words(K), kernel.n_segments(K, segment_size)
    if len(packed.bits) != rows * words * 8:
        raise WeightsError(f"packed HBNN blob of shape {shape} holds {len(packed.bits)} bytes of sign bits; "
                           f"{rows} rows of {K} weights need {rows * words * 8}")
    if len(packed.scale) != rows * segments:
        raise WeightsError(f"packed HBNN blob of shape {shape} holds {len(packed.scale)} scales; "
                           f"{rows} rows of {segments} segments (segment_size {segment_size}) need {rows * segments}")
    bits = np.frombuffer(packed.bits, dtype="<u8").astype(np.uint64).reshape(rows, words)
    if K % 64 and (bits[:, -1] >> np.uint64(K % 64)).any():
        raise WeightsError(f"packed HBNN blob of shape {shape} has sign bits set past its {K} weights per row; "
                           "the file is corrupt")
    signs = kernel.unpack_rows(bits, K)
    alpha = np.asarray(packed.scale, dtype=np.float32).reshape(rows, segments)
    weights = signs * np.repeat(alpha, kernel.segment_lengths(K, segment_size), axis=1)
    return weights.reshape(shape)
