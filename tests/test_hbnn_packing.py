"""HBNN weights packed into PackedSigns: exact round trips, the wire layout, and bad messages."""
import numpy as np
import pytest

from dualnet import dualnet_pb2 as pb
from dualnet.errors import WeightsError
from dualnet.hbnn import kernel, packing
from dualnet.io.blobproto import proto_array

SEGMENT_SIZES = (0, 8, 16, 32, 64)


def weights(shape, seed=0):
    W = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    W.flat[::17] = 0.0  # sign(0) = +1 must survive the trip
    return W


@pytest.mark.parametrize("s", SEGMENT_SIZES)
@pytest.mark.parametrize("shape", [(13, 77), (8, 3, 5, 5), (1, 1), (40,), (5, 64)])
def test_unpack_gives_exactly_alpha_times_sign(shape, s):
    W = weights(shape, seed=len(shape) + s)
    unpacked = packing.unpack_blob(packing.pack_blob(W, s))
    assert unpacked.dtype == np.float32 and unpacked.shape == W.shape
    rows = W.reshape(W.shape[0] if W.ndim > 1 else 1, -1).astype(np.float64)
    K = rows.shape[1]
    step = K if s == 0 else s
    expected = np.empty_like(rows)
    for b in range(0, K, step):
        segment = rows[:, b:b + step]
        alpha = np.abs(segment).mean(axis=1, keepdims=True).astype(np.float32)
        expected[:, b:b + step] = np.where(segment >= 0, alpha, -alpha)
    assert np.array_equal(unpacked.reshape(rows.shape), expected.astype(np.float32))


@pytest.mark.parametrize("s", SEGMENT_SIZES)
def test_unpack_equals_binarize(s):
    W = weights((21, 130), seed=s)
    assert np.array_equal(packing.unpack_blob(packing.pack_blob(W, s)), kernel.binarize(W, s)[0])


@pytest.mark.parametrize("s", SEGMENT_SIZES)
def test_packing_the_unpacked_weights_gives_the_same_message(s):
    first = packing.pack_blob(weights((9, 100), seed=s), s)
    second = packing.pack_blob(packing.unpack_blob(first), s)
    assert second.SerializeToString() == first.SerializeToString()


def test_message_layout_is_little_endian_words_with_bit_k_for_weight_k():
    W = -np.ones((2, 70), dtype=np.float32)
    W[0, [0, 65]] = 2.0
    W[1, 69] = 0.0
    message = packing.pack_blob(W, 64)
    assert list(message.shape) == [2, 70] and message.segment_size == 64
    assert len(message.bits) == 2 * 2 * 8
    words = [int.from_bytes(message.bits[i:i + 8], "little") for i in range(0, 32, 8)]
    assert words == [1, 1 << 1, 0, 1 << 5]
    # alpha of row 0: segment 0 is 63 ones and a 2, segment 1 is 5 ones and a 2
    assert np.allclose(message.scale, [65 / 64, 7 / 6, 1.0, 5 / 6], rtol=1e-7)


def test_a_blob_proto_with_packed_signs_reads_back_through_blobproto():
    W = weights((6, 2, 3, 3))
    blob = pb.BlobProto()
    blob.shape.dim.extend(W.shape)
    blob.packed.CopyFrom(packing.pack_blob(W, 16))
    assert np.array_equal(proto_array(blob), kernel.binarize(W, 16)[0])


def test_a_500_by_800_weight_is_20_times_smaller_packed_with_segments_of_64():
    W = weights((500, 800))
    full = pb.BlobProto()
    full.shape.dim.extend(W.shape)
    full.data.extend(W.ravel().tolist())
    packed = pb.BlobProto()
    packed.shape.dim.extend(W.shape)
    packed.packed.CopyFrom(packing.pack_blob(W, 64))
    # 500 rows x 13 words x 8 bytes of signs + 500 x 13 float scales
    assert 500 * 13 * 12 <= packed.ByteSize() < 500 * 13 * 12 + 64
    assert full.ByteSize() / packed.ByteSize() > 20


def test_an_empty_blob_round_trips():
    message = packing.pack_blob(np.zeros((0, 5), np.float32), 8)
    assert packing.unpack_blob(message).shape == (0, 5)


def corrupt(change):
    message = packing.pack_blob(weights((3, 70)), 32)
    change(message)
    return message


@pytest.mark.parametrize("change, words", [
    (lambda m: setattr(m, "bits", m.bits[:-8]), "bytes of sign bits"),
    (lambda m: m.scale.append(1.0), "scales"),
    (lambda m: setattr(m, "segment_size", 12), "segment_size 12"),
    (lambda m: setattr(m, "bits", m.bits[:-1] + b"\x80"), "past its 70 weights"),
    (lambda m: m.shape.__setitem__(0, -3), "negative"),
])
def test_a_malformed_message_raises_weights_error(change, words):
    with pytest.raises(WeightsError, match=words):
        packing.unpack_blob(corrupt(change))


def test_packing_with_a_bad_segment_size_raises_weights_error():
    with pytest.raises(WeightsError, match="segment_size"):
        packing.pack_blob(weights((2, 8)), 24)
