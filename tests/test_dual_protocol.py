"""The wire protocol without sockets: cut encodings, the receiver's checks in
order, HELLO comparison. Bad messages are forged here with the documented
signature scheme (written out independently below), so each check is reached
with a valid signature."""
import hashlib
import hmac
import struct

import numpy as np
import pytest

from dualnet import dualnet_pb2 as pb
from dualnet.dual import protocol as P
from dualnet.errors import ProtocolError

KEY = bytes(range(32))
POOL1 = (64, 20, 12, 12)      # LeNet's pool1 at batch 64


def hmac_frames(key, header, payload):
    """HMAC-SHA256 over the frame count and each frame's little-endian u64 length and bytes."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(struct.pack("<Q", 1 + len(payload)))
    for part in [header] + list(payload):
        mac.update(struct.pack("<Q", len(part)))
        mac.update(bytes(part))
    return mac.digest()


def small_hello(**fields):
    values = dict(split_at="pool1", cut_shape=[4, 3, 2, 2], batch_size=4, label_shape=[4],
                  test_cut_shape=[2, 3, 2, 2], test_label_shape=[2], encoding=P.FLOAT32, resume_iter=0)
    values.update(fields)
    return P.make_hello("net1", **values)


def sessions(hello=None):
    """A keyed net1 sender and net2 receiver that agree on `hello`."""
    expectations = P.Expectations.from_hello(hello or small_hello())
    return P.Session("net1", KEY, expectations), P.Session("net2", KEY, expectations)


def forward_arrays(n=4, cut=(4, 3, 2, 2), seed=0):
    rng = np.random.default_rng(seed)
    return {"ids": np.arange(n, dtype=np.int64), "label": np.arange(n, dtype=np.float32),
            "cut": rng.standard_normal(cut).astype(np.float32)}


def forged(header_edit=None, payload=None, arrays=None, sender=None):
    """FORWARD frames re-signed after `header_edit(header)` / with `payload` replaced."""
    sender = sender or sessions()[0]
    frames = sender.serialize(P.FORWARD, 3, arrays or forward_arrays())
    header = pb.WireHeader.FromString(frames[0])
    if header_edit:
        header_edit(header)
    header_bytes = header.SerializeToString()
    body = [bytes(f) for f in frames[2:]] if payload is None else payload
    return [header_bytes, hmac_frames(KEY, header_bytes, body)] + body


def expect_rejected(frames, *words, receiver=None, allowed=(P.FORWARD,), **options):
    receiver = receiver or sessions()[1]
    with pytest.raises(ProtocolError) as caught:
        receiver.deserialize(frames, set(allowed), **options)
    for word in words:
        assert word in str(caught.value)
    return str(caught.value)


# ---------------------------------------------------------------------------- encodings


def test_float32_encoding_round_trips_exactly():
    a = np.random.default_rng(1).standard_normal(POOL1).astype(np.float32)
    (name, sent), = P.encode_cut(a, "FLOAT32")
    assert name == "cut" and sent.dtype == np.float32
    np.testing.assert_array_equal(P.decode_cut({name: sent}, P.FLOAT32, POOL1), a)


def test_float16_encoding_round_trips_to_half_precision():
    a = np.random.default_rng(2).standard_normal(POOL1).astype(np.float32)
    arrays = P.encode_cut(a, P.FLOAT16)
    assert arrays[0][1].dtype == np.float16
    decoded = P.decode_cut(arrays, P.FLOAT16, POOL1)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, a.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(decoded, a, rtol=2 ** -11, atol=2 ** -24)


def reference_sign_words(rows):
    """Element k of a row -> bit k % 64 of word k // 64, bit = 1 where x >= 0 (loops, by the spec)."""
    n, k = rows.shape
    words = np.zeros((n, (k + 63) // 64), dtype=np.uint64)
    for i in range(n):
        for j in range(k):
            if rows[i, j] >= 0:
                words[i, j // 64] |= np.uint64(1) << np.uint64(j % 64)
    return words


def test_sign_bits_layout_matches_the_spec_with_padding():
    a = np.random.default_rng(3).standard_normal((3, 7, 10)).astype(np.float32)   # K = 70: two words
    a[0, 0, 0], a[1, 0, 1] = 0.0, -0.0                                                 # x >= 0 -> bit 1
    arrays = dict(P.encode_cut(a, P.SIGN_BITS))
    assert set(arrays) == {"cut_bits", "cut_scale"}
    assert arrays["cut_bits"].dtype == np.dtype("<u8") and arrays["cut_bits"].shape == (3, 2)
    np.testing.assert_array_equal(arrays["cut_bits"], reference_sign_words(a.reshape(3, 70)))
    assert arrays["cut_bits"][0, 0] & 1 == 1 and (arrays["cut_bits"][1, 0] >> np.uint64(1)) & 1 == 1
    assert np.all(arrays["cut_bits"][:, 1] >> np.uint64(6) == 0), "padding bits must be 0"


def test_sign_bits_decode_to_scale_times_sign():
    a = np.random.default_rng(4).standard_normal(POOL1).astype(np.float32)
    arrays = dict(P.encode_cut(a, P.SIGN_BITS))
    expected_scale = np.abs(a.astype(np.float64)).reshape(64, -1).mean(axis=1)
    np.testing.assert_allclose(arrays["cut_scale"], expected_scale, rtol=1e-6)
    decoded = P.decode_cut(arrays, P.SIGN_BITS, POOL1)
    signs = np.where(a >= 0, 1.0, -1.0).astype(np.float32)
    np.testing.assert_array_equal(decoded, arrays["cut_scale"].reshape(64, 1, 1, 1) * signs)


def test_bytes_on_the_wire_for_lenet_pool1():
    # 184320 floats: 4 bytes, 2 bytes, or 45 words of 64 signs + one float scale per sample
    assert P.cut_nbytes(POOL1, P.FLOAT32) == 737280
    assert P.cut_nbytes(POOL1, P.FLOAT16) == 368640
    assert P.cut_nbytes(POOL1, P.SIGN_BITS) == 64 * 45 * 8 + 64 * 4 == 23296


HBNN_NET2 = """
layer {{ name: "in" type: "Input" top: "cut" input_param {{ shape {{ dim: 6 dim: 5 dim: 3 dim: 3 }} }} }}
layer {{ name: "hb" type: "HBNNInnerProduct" bottom: "cut" top: "hb"
        inner_product_param {{ num_output: 7 axis: {axis} weight_filler {{ type: "gaussian" std: 0.3 }} }}
        hbnn_param {{ binarize_input: true segment_size: 0 }} }}
"""


@pytest.mark.parametrize("axis,exact", [(1, True), (-3, True), (2, False), (-2, False)])
def test_sign_bits_are_declared_exact_only_when_the_binarising_layer_has_one_scale_per_sample(axis, exact):
    # HBNNInnerProduct binarises rows of prod(shape[axis:]) inputs, beta = mean |x| per row: one row per
    # sample only for axis 1 (-3 of 4 axes); the wire carries one scale per sample.
    import dualnet
    from dualnet.dual.launch import sign_bits_exact
    from dualnet.dual.split import Split
    from dualnet.io import parse_net_text

    param, origin = parse_net_text(HBNN_NET2.format(axis=axis), "net2.prototxt")
    shapes = {pb.TRAIN: (6, 5, 3, 3), pb.TEST: (6, 5, 3, 3)}
    assert sign_bits_exact(Split(pb.NetParameter(), param, "cut", 0, [], shapes, {}, ["hb"], "cut")) == exact
    a = np.abs(np.random.default_rng(5).standard_normal((6, 5, 3, 3))).astype(np.float32) * np.arange(1, 6).reshape(
        1, 5, 1, 1)                                              # each channel its own mean |a|
    received = P.decode_cut(dict(P.encode_cut(a, P.SIGN_BITS)), P.SIGN_BITS, a.shape)
    dualnet.set_random_seed(4)
    net = dualnet.Net(param, dualnet.TEST, origin=origin)
    sent, seen = net.forward(cut=a)["hb"].copy(), net.forward(cut=received)["hb"].copy()
    assert np.array_equal(sent, seen) == exact


# ---------------------------------------------------------------------------- round trip


def test_a_message_round_trips_without_copying_the_arrays():
    sender, receiver = sessions()
    arrays = forward_arrays()
    frames = sender.serialize(P.FORWARD, 3, arrays, values={"loss": 0.25}, phase=pb.TRAIN)
    assert len(frames) == 5 and len(frames[1]) == 32
    assert np.shares_memory(np.frombuffer(frames[4], np.float32), arrays["cut"]), "sent zero-copy"
    message = receiver.deserialize(frames, {P.FORWARD}, iterations=3)
    assert (message.type, message.iter, message.values) == (P.FORWARD, 3, {"loss": 0.25})
    for name, array in arrays.items():
        np.testing.assert_array_equal(message.arrays[name], array)
    assert np.shares_memory(message.arrays["cut"], np.frombuffer(frames[4], np.uint8)), "read zero-copy"
    assert message.nbytes == sum(memoryview(f).nbytes for f in frames)


def test_sender_refuses_arrays_that_differ_from_the_agreement():
    sender, _ = sessions()
    arrays = forward_arrays(cut=(4, 3, 2, 1))
    with pytest.raises(ProtocolError, match=r"array 'cut' has shape \(4, 3, 2, 1\), agreed \(4, 3, 2, 2\)"):
        sender.serialize(P.FORWARD, 0, arrays)


def test_sender_widens_int32_ids_safely_but_refuses_float64_labels():
    sender, receiver = sessions()
    arrays = forward_arrays()
    arrays["ids"] = arrays["ids"].astype(np.int32)
    message = receiver.deserialize(sender.serialize(P.FORWARD, 0, arrays), {P.FORWARD})
    assert message.arrays["ids"].dtype == np.int64
    arrays["label"] = arrays["label"].astype(np.float64)
    with pytest.raises(ProtocolError, match="'label' is float64, agreed float32"):
        sender.serialize(P.FORWARD, 0, arrays)


# ---------------------------------------------------------------------------- the checks, in order


def test_too_few_frames_are_rejected():
    expect_rejected([b"only a header"], "1 frame(s)")


def test_too_many_frames_are_rejected():
    expect_rejected([b"h", b""] + [b"x"] * (P.MAX_ARRAYS + 1), "frames, at most")


def test_a_bad_signature_is_rejected_even_when_only_the_payload_changed():
    frames = [bytes(f) for f in sessions()[0].serialize(P.FORWARD, 3, forward_arrays())]
    cut = bytearray(frames[4])
    cut[0] ^= 1
    expect_rejected(frames[:4] + [bytes(cut)], "bad signature")


def test_moving_bytes_between_frames_breaks_the_signature():
    frames = [bytes(f) for f in sessions()[0].serialize(P.FORWARD, 3, forward_arrays())]
    shifted = frames[:2] + [frames[2] + frames[3][:4], frames[3][4:], frames[4]]
    expect_rejected(shifted, "bad signature")


def test_an_unsigned_message_after_the_handshake_is_rejected():
    frames = [bytes(f) for f in sessions()[0].serialize(P.FORWARD, 3, forward_arrays())]
    expect_rejected([frames[0], b""] + frames[2:], "no signature")


def test_a_header_that_does_not_parse_is_rejected():
    garbage = b"\xff\xff\xff\xff not protobuf"
    expect_rejected([garbage, hmac_frames(KEY, garbage, [])], "is not a WireHeader")


def test_a_wrong_protocol_version_is_rejected():
    frames = forged(lambda h: setattr(h, "protocol_version", 99))
    expect_rejected(frames, "wire protocol version 99", "speaks 1")


def test_an_unknown_message_type_is_rejected():
    def unknown_type(header):
        header.ClearField("type")
        header.MergeFromString(b"\x08\x63")        # field 1 (type) = 99, not in the enum
    expect_rejected(forged(unknown_type), "unknown message type")


def test_a_message_not_expected_now_is_rejected():
    frames = sessions()[0].serialize(P.SNAPSHOT, 3)
    expect_rejected(frames, "SNAPSHOT", "unexpected now", "expecting BYE, ERROR, FORWARD")


def test_a_message_from_the_wrong_role_is_rejected():
    net2 = P.Session("net2", KEY, P.Expectations.from_hello(small_hello()))
    frames = net2.serialize(P.TARGET, 3, {"delta": np.zeros((4, 3, 2, 2), np.float32)})
    expect_rejected(frames, "only net2 sends TARGET", allowed={P.TARGET})


def test_an_iteration_outside_the_window_is_rejected():
    expect_rejected(forged(), "iteration 3, expected iteration 5..6", iterations=(5, 6))


def test_the_iteration_is_checked_before_the_message_type():
    # DESIGN.md's order: frame count, signature, iteration, type, dtypes, byte counts. A SNAPSHOT (not
    # expected) of iteration 3 (outside 5..6) is refused for its iteration.
    frames = sessions()[0].serialize(P.SNAPSHOT, 3)
    text = expect_rejected(frames, "iteration 3, expected iteration 5..6", iterations=(5, 6))
    assert "unexpected now" not in text


def test_bye_and_heartbeat_pass_outside_the_iteration_window():
    sender, receiver = sessions()
    for msg_type in (P.HEARTBEAT, P.BYE):
        frames = sender.serialize(msg_type, 100)
        assert receiver.deserialize(frames, {P.FORWARD, P.HEARTBEAT}, iterations=(5, 6)).iter == 100


def test_a_hello_of_another_protocol_version_reaches_the_field_comparison():
    def version_2(header):
        header.protocol_version = header.hello.protocol_version = 2
    frames = P.Session("net1").serialize(P.HELLO, 0, hello=small_hello())
    header = pb.WireHeader.FromString(frames[0])
    version_2(header)
    message = P.Session("net2").deserialize([header.SerializeToString(), b""], {P.HELLO})
    assert ("wire protocol version", "2", "1") in P.compare_hellos(message.hello, small_hello())


def test_a_replayed_message_is_rejected():
    sender, receiver = sessions()
    frames = [bytes(f) for f in sender.serialize(P.FORWARD, 3, forward_arrays())]
    receiver.deserialize(frames, {P.FORWARD})
    expect_rejected(frames, "replayed", receiver=receiver)


def test_a_wrong_dtype_is_rejected():
    arrays = forward_arrays()
    half = arrays["cut"].astype(np.float16).tobytes()

    def as_half(header):
        cut = next(a for a in header.arrays if a.name == "cut")
        cut.dtype, cut.nbytes = pb.ArrayHeader.FLOAT16, len(half)
    sender = sessions()[0]
    body = [arrays["ids"].tobytes(), arrays["label"].tobytes(), half]
    expect_rejected(forged(as_half, payload=body, sender=sender), "array 'cut' is float16, agreed float32")


def test_a_dtype_outside_the_allow_list_is_rejected():
    def int8(header):
        header.arrays[0].ClearField("dtype")
        header.arrays[0].MergeFromString(b"\x10\x09")   # field 2 (dtype) = 9
    expect_rejected(forged(int8), "dtype code", "not one of")


def test_a_wrong_shape_is_rejected_naming_both_shapes():
    hello = small_hello(cut_shape=[64, 50, 4, 4], batch_size=64, label_shape=[64])
    sender = P.Session("net1", KEY, P.Expectations.from_hello(
        small_hello(cut_shape=list(POOL1), batch_size=64, label_shape=[64])))
    frames = sender.serialize(P.FORWARD, 3, forward_arrays(64, POOL1))
    receiver = P.Session("net2", KEY, P.Expectations.from_hello(hello))
    text = expect_rejected(frames, receiver=receiver)
    assert "FORWARD from net1: array 'cut' has shape (64, 20, 12, 12), agreed (64, 50, 4, 4)" in text


def test_a_byte_count_that_does_not_match_the_shape_is_rejected():
    def lie(header):
        header.arrays[2].nbytes = 8
    expect_rejected(forged(lie), "array 'cut' of shape (4, 3, 2, 2) needs 192 bytes", "header says 8")


def test_a_frame_shorter_than_its_shape_is_rejected():
    arrays = forward_arrays()
    body = [arrays["ids"].tobytes(), arrays["label"].tobytes(), arrays["cut"].tobytes()[:-4]]
    expect_rejected(forged(payload=body), "needs 192 bytes", "the frame has 188")


def test_a_missing_or_unknown_array_name_is_rejected():
    expect_rejected(forged(lambda h: setattr(h.arrays[1], "name", "labels")), "arrays ['ids', 'labels', 'cut']")


def test_more_array_headers_than_frames_are_rejected():
    expect_rejected(forged(lambda h: h.arrays.add(name="extra")), "describes 4 arrays but 3 array frames")


def test_before_the_handshake_only_unsigned_handshake_messages_pass():
    stranger = P.Session("net1")
    hello_frames = stranger.serialize(P.HELLO, 0, hello=small_hello())
    assert hello_frames[1] == b""
    message = P.Session("net2").deserialize(hello_frames, {P.HELLO})
    assert message.hello.split_at == "pool1"
    signed = sessions()[0].serialize(P.SNAPSHOT, 0)
    expect_rejected(signed, "signature before the handshake", receiver=P.Session("net2"), allowed={P.HELLO})
    with pytest.raises(ProtocolError, match="before the handshake"):
        stranger.serialize(P.FORWARD, 0)


def test_a_curve_identity_other_than_the_paired_one_is_rejected():
    sender, receiver = sessions()
    receiver.peer_user_id = "paired-key"
    frames = sender.serialize(P.SNAPSHOT, 1)
    expect_rejected(frames, "CURVE key 'other-key'", allowed={P.SNAPSHOT}, receiver=receiver, user_id="other-key")


# ---------------------------------------------------------------------------- expectations


def test_expectations_from_hello_describe_forward_test_and_target():
    expectations = P.Expectations.from_hello(small_hello(encoding=P.SIGN_BITS))
    forward = expectations.arrays(P.FORWARD)
    assert {name: (spec.dtype.str, spec.shape) for name, spec in forward.items()} == {
        "ids": ("<i8", (4,)), "label": ("<f4", (4,)), "cut_bits": ("<u8", (4, 1)), "cut_scale": ("<f4", (4,))}
    assert expectations.arrays(P.TEST)["cut_bits"].shape == (2, 1)
    assert expectations.arrays(P.TARGET)["delta"].shape == (4, 3, 2, 2)
    assert expectations.arrays(P.SNAPSHOT) == {}


def test_frame_limit_is_the_largest_agreed_frame():
    hello = small_hello(cut_shape=list(POOL1), batch_size=64, label_shape=[64])
    assert P.frame_limit(hello) == 737280
    assert P.frame_limit(small_hello()) == P.MAX_HEADER_BYTES


# ---------------------------------------------------------------------------- hello comparison


def test_equal_hellos_have_no_differences_and_role_is_not_compared():
    net2 = small_hello()
    net2.role = "net2"
    assert P.compare_hellos(small_hello(), net2) == []


def test_differences_are_listed_with_both_values():
    net1 = small_hello(encoding=P.FLOAT32, resume_iter=500)
    net2 = small_hello(encoding=P.SIGN_BITS, resume_iter=0)
    assert P.describe_differences(P.compare_hellos(net1, net2)) == (
        "net1 and net2 disagree: encoding FLOAT32 (net1) vs SIGN_BITS (net2); "
        "resume iteration 500 (net1) vs 0 (net2)")


def test_every_hello_field_but_role_is_compared():
    """A field added to Hello is compared without code changes."""
    for descriptor in pb.Hello.DESCRIPTOR.fields:
        if descriptor.name == "role":
            continue
        other = small_hello()
        if descriptor.is_repeated:
            getattr(other, descriptor.name).append(99)
        elif descriptor.enum_type is not None:
            values = [v.number for v in descriptor.enum_type.values]
            setattr(other, descriptor.name, next(v for v in values if v != getattr(other, descriptor.name)))
        elif descriptor.type == descriptor.TYPE_STRING:
            setattr(other, descriptor.name, getattr(other, descriptor.name) + "x")
        else:
            setattr(other, descriptor.name, getattr(other, descriptor.name) + 1)
        assert len(P.compare_hellos(small_hello(), other)) == 1, descriptor.name
