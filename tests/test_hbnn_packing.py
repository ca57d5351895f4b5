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


# ---------------------------------------------------------------- `dualnet pack` and packed snapshots

PACK_NET = """
name: "packme"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 dim: 6 dim: 6 } } }
layer { name: "conv" type: "HBNNConvolution" bottom: "data" top: "conv"
        convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "gaussian" std: 0.3 } }
        hbnn_param { segment_size: 16 binarize_input: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "HBNNInnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 50 weight_filler { type: "gaussian" std: 0.1 } }
        hbnn_param { segment_size: 64 } }
layer { name: "out" type: "InnerProduct" bottom: "ip" top: "out"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
"""


@pytest.fixture
def trained_model(tmp_path):
    """(prototxt, float .caffemodel, input batch, the net's outputs on it)."""
    import dualnet

    model = tmp_path / "packme.prototxt"
    model.write_text(PACK_NET)
    dualnet.set_random_seed(3)
    net = dualnet.Net(str(model), dualnet.TEST)
    x = np.random.default_rng(1).standard_normal((4, 3, 6, 6)).astype(np.float32)
    outputs = net.forward(data=x)["out"].copy()
    net.save(str(tmp_path / "float.caffemodel"))
    return str(model), str(tmp_path / "float.caffemodel"), x, outputs


def test_pack_command_writes_a_file_that_computes_the_same_and_reports_its_size(trained_model, tmp_path, capsys,
                                                                               dualnet_log):
    import argparse
    import os
    import re

    import dualnet
    from dualnet.hbnn.pack_command import add_pack_parser, pack_main

    model, weights, x, outputs = trained_model
    out = str(tmp_path / "packed.caffemodel")
    parser = argparse.ArgumentParser()
    add_pack_parser(parser.add_subparsers(dest="command"))
    assert pack_main(parser.parse_args(["pack", "--model", model, "--weights", weights, "--out", out])) == 0
    printed = capsys.readouterr().out
    match = re.fullmatch(r"(\S+): (\d+) bytes with conv, ip packed; (\d+) bytes as float32 \(([\d.]+)x smaller\)\n",
                         printed)
    assert match, printed
    packed_bytes, float_bytes = int(match[2]), int(match[3])
    assert match[1] == out and packed_bytes == os.path.getsize(out)
    assert float_bytes == os.path.getsize(weights)
    # conv, 8 rows of 27 weights: 8 words of signs + 16 alphas (segments of 16) = 128 bytes instead
    # of 864; ip, 50 rows of 128: 100 words + 100 alphas = 1,200 bytes instead of 25,600. The file
    # shrinks by 25,136 bytes less the packed messages' few field headers.
    assert 25_000 < float_bytes - packed_bytes <= 25_136
    assert float(match[4]) == pytest.approx(float_bytes / packed_bytes, abs=0.05)
    assert f"{packed_bytes} bytes; {float_bytes} as float32" in dualnet_log.text
    loaded = dualnet.Net(model, dualnet.TEST, weights=out)
    np.testing.assert_array_equal(loaded.forward(data=x)["out"], outputs)  # alpha (.) sign(W) binarises to itself


def test_pack_command_names_a_missing_weights_file_before_building_the_net(tmp_path, capsys):
    from dualnet.cli import main

    missing = str(tmp_path / "trained.caffemodel")
    assert main(["pack", "--model", "models/lenet_hbnn_train_test.prototxt", "--weights", missing,
                 "--out", str(tmp_path / "p.caffemodel")]) == 1
    _out, err = capsys.readouterr()
    assert err.strip().splitlines() == [f"dualnet: error: {missing}: no such weights file; "
                                         "pass the trained .caffemodel to pack"]


def test_pack_command_refuses_a_model_without_hbnn_layers(tmp_path):
    from dualnet.errors import DualnetError
    from dualnet.hbnn.pack_command import pack_model

    model = tmp_path / "plain.prototxt"
    model.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }\n'
                     'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                     'inner_product_param { num_output: 2 } }')
    with pytest.raises(DualnetError, match="nothing to pack"):
        pack_model(str(model), None, str(tmp_path / "p.caffemodel"))


def test_save_packed_snapshot_writes_the_packed_file_beside_the_float_one(trained_model, tmp_path):
    import dualnet
    from dualnet.hbnn.pack_command import save_packed_snapshot

    model, weights, x, outputs = trained_model
    net = dualnet.Net(model, dualnet.TEST, weights=weights)
    path = save_packed_snapshot(net, str(tmp_path / "snap_iter_7.caffemodel"))
    assert path == str(tmp_path / "snap_iter_7.packed.caffemodel")
    packed = pb.NetParameter.FromString(open(path, "rb").read())
    assert [bool(layer.blobs and layer.blobs[0].HasField("packed")) for layer in packed.layer] == \
        [False, True, False, True, False]  # data, conv, relu, ip, out
    np.testing.assert_array_equal(dualnet.Net(model, dualnet.TEST, weights=path).forward(data=x)["out"], outputs)


SOLVER = """
base_lr: 0.01 lr_policy: "fixed" max_iter: 1 display: 0 snapshot_prefix: "%s/snaps/hbnn"
snapshot_packed_hbnn: true
net_param { %s
  layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 4 dim: 3 } } }
  layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "t" top: "loss" } }
"""


def test_a_solver_with_snapshot_packed_hbnn_writes_a_packed_model_beside_each_snapshot(tmp_path):
    import os

    import dualnet
    from dualnet.hbnn.pack_command import packed_snapshot_path
    from dualnet.io import parse_solver_text

    solver = dualnet.get_solver(parse_solver_text(SOLVER % (tmp_path, PACK_NET), "solver.prototxt"))
    assert solver.param.snapshot_packed_hbnn
    model_path, _ = solver.snapshot()
    packed = pb.NetParameter.FromString(open(packed_snapshot_path(model_path), "rb").read())
    assert [layer.name for layer in packed.layer if layer.blobs and layer.blobs[0].HasField("packed")] == ["conv", "ip"]
    floats = pb.NetParameter.FromString(open(model_path, "rb").read())  # resuming reads the latent weights
    assert not any(layer.blobs and layer.blobs[0].HasField("packed") for layer in floats.layer)
    assert os.path.getsize(packed_snapshot_path(model_path)) < os.path.getsize(model_path)
