""".caffemodel files: written as Caffe writes them, read as Caffe reads them.

net.save writes a NetParameter whose layers carry BlobProtos with `shape`
and float `data` (Caffe's Net::ToProto), readable by any protobuf reader
that knows Caffe's field numbers; writing is atomic. copy_from follows
Caffe's CopyTrainedLayersFrom: layers matched by name, unknown source layers
logged and ignored, a shape mismatch refused with the advice to rename the
layer; legacy num/channels/height/width blobs and V1 files load.
"""
import os

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import dualnet
import dualnet.random
from dualnet import dualnet_pb2 as pb
from dualnet.errors import WeightsError
from dualnet.io import atomic, parse_net_text
from dualnet.io.caffemodel import save_net

NET = """name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 1 }
                              bias_filler { type: "gaussian" std: 1 } } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "ip" }
layer { name: "out" type: "InnerProduct" bottom: "ip" top: "out"
        inner_product_param { num_output: 1 bias_term: false weight_filler { type: "gaussian" std: 1 } } }
"""


def make_net(text=NET, seed=1):
    dualnet.random.seed(seed)
    param, origin = parse_net_text(text, "small.prototxt")
    return dualnet.Net(param, dualnet.TEST, origin=origin)


def write_model(path, layers, v1=False):
    """A .caffemodel with `layers`: [(name, [BlobProto, ...])]."""
    net = pb.NetParameter(name="written")
    for name, blobs in layers:
        if v1:
            layer = net.layers.add(name=name, type=pb.V1LayerParameter.INNER_PRODUCT)
        else:
            layer = net.layer.add(name=name, type="InnerProduct")
        for blob in blobs:
            layer.blobs.add().CopyFrom(blob)
    path.write_bytes(net.SerializeToString())
    return str(path)


def shaped(array):
    proto = pb.BlobProto()
    proto.shape.dim.extend(np.shape(array))
    proto.data.extend(np.asarray(array, np.float32).ravel().tolist())
    return proto


def legacy(array, dims):
    proto = pb.BlobProto(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
    proto.data.extend(np.asarray(array, np.float32).ravel().tolist())
    return proto


def caffe_reader_net_parameter():
    """NetParameter of a minimal schema with only Caffe's names and field numbers,
    built here without dualnet's generated module: what another Caffe reader sees."""
    F = descriptor_pb2.FieldDescriptorProto
    schema = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")

    def message(name, fields):
        described = schema.message_type.add(name=name)
        for field_name, number, kind, label, type_name, packed in fields:
            field = described.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
            if packed:
                field.options.packed = True

    message("BlobShape", [("dim", 1, F.TYPE_INT64, F.LABEL_REPEATED, None, True)])
    message("BlobProto", [("shape", 7, F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".caffe.BlobShape", False),
                          ("data", 5, F.TYPE_FLOAT, F.LABEL_REPEATED, None, True),
                          ("diff", 6, F.TYPE_FLOAT, F.LABEL_REPEATED, None, True),
                          ("num", 1, F.TYPE_INT32, F.LABEL_OPTIONAL, None, False)])
    message("LayerParameter", [("name", 1, F.TYPE_STRING, F.LABEL_OPTIONAL, None, False),
                               ("type", 2, F.TYPE_STRING, F.LABEL_OPTIONAL, None, False),
                               ("bottom", 3, F.TYPE_STRING, F.LABEL_REPEATED, None, False),
                               ("top", 4, F.TYPE_STRING, F.LABEL_REPEATED, None, False),
                               ("blobs", 7, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".caffe.BlobProto", False)])
    message("NetParameter", [("name", 1, F.TYPE_STRING, F.LABEL_OPTIONAL, None, False),
                             ("layer", 100, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".caffe.LayerParameter", False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(schema)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


# ---------------------------------------------------------------- writing

def test_saved_file_parses_as_a_plain_net_parameter_in_another_reader(tmp_path):
    net = make_net()
    path = tmp_path / "small.caffemodel"
    written = net.save(str(path))
    assert written == path.stat().st_size
    model = caffe_reader_net_parameter().FromString(path.read_bytes())
    assert model.name == "small"
    assert [(l.name, l.type, list(l.bottom), list(l.top)) for l in model.layer] == [
        ("data", "Input", [], ["data"]), ("ip", "InnerProduct", ["data"], ["ip"]),
        ("relu", "ReLU", ["ip"], ["ip"]), ("out", "InnerProduct", ["ip"], ["out"])]
    weights, bias = model.layer[1].blobs
    assert list(weights.shape.dim) == [2, 3] and list(bias.shape.dim) == [2]
    assert np.array_equal(np.array(weights.data, np.float32).reshape(2, 3), net.params["ip"][0].data)
    assert np.array_equal(np.array(bias.data, np.float32), net.params["ip"][1].data)


def test_saved_blobs_use_shape_not_the_legacy_fields_and_no_diff(tmp_path):
    net = make_net()
    net.save(str(tmp_path / "m.caffemodel"))
    model = pb.NetParameter.FromString((tmp_path / "m.caffemodel").read_bytes())
    for layer in model.layer:
        for blob in layer.blobs:
            assert blob.HasField("shape")
            assert not any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
            assert len(blob.double_data) == 0 and len(blob.diff) == 0


def test_save_then_copy_from_round_trips_bit_exactly(tmp_path):
    net = make_net(seed=1)
    special = np.array([[-0.0, 1e-45, -3.4028235e38], [np.pi, 1 / 3, 1.17549435e-38]], np.float32)
    net.params["ip"][0].data[...] = special
    path = str(tmp_path / "a.caffemodel")
    net.save(path)
    other = make_net(seed=2)
    other.copy_from(path)
    for name in net.params:
        for mine, theirs in zip(net.params[name], other.params[name]):
            assert np.array_equal(mine.data.view(np.uint32), theirs.data.view(np.uint32))
    other.save(str(tmp_path / "b.caffemodel"))
    assert (tmp_path / "a.caffemodel").read_bytes() == (tmp_path / "b.caffemodel").read_bytes()


def test_snapshot_diff_writes_the_parameter_diffs(tmp_path):
    net = make_net()
    net.params["out"][0].diff[...] = [[0.25, -2.0]]
    path = tmp_path / "d.caffemodel"
    save_net(net, str(path), write_diff=True)
    model = pb.NetParameter.FromString(path.read_bytes())
    out = next(l for l in model.layer if l.name == "out")
    assert list(out.blobs[0].diff) == [0.25, -2.0]
    assert list(out.blobs[0].data) == net.params["out"][0].data.ravel().tolist()


@pytest.mark.parametrize("interruption", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_interrupted_save_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch, interruption):
    path = tmp_path / "net.caffemodel"
    make_net(seed=1).save(str(path))
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter:
        """A file that writes half of what it is given, then fails."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, payload):
            self.handle.write(payload[: len(payload) // 2])
            self.handle.flush()
            raise interruption

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(type(interruption)):
        make_net(seed=2).save(str(path))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.caffemodel"]


def test_saved_file_gets_the_permissions_a_plain_open_gives(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = tmp_path / "m.caffemodel"
    make_net().save(str(path))
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


# ---------------------------------------------------------------- reading

def test_weights_passed_to_the_net_constructor_are_copied(tmp_path):
    source = make_net(seed=1)
    path = str(tmp_path / "w.caffemodel")
    source.save(path)
    model = tmp_path / "small.prototxt"
    model.write_text(NET)
    net = dualnet.Net(str(model), dualnet.TEST, weights=path)
    assert np.array_equal(net.params["out"][0].data, source.params["out"][0].data)


def test_copy_from_matches_layers_by_name_and_logs_ignored_layers(tmp_path, dualnet_log):
    W = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = write_model(tmp_path / "m.caffemodel",
                       [("ip", [shaped(W), shaped([7, 8])]), ("fc_old", [shaped([[1.0]])])])
    net = make_net()
    out_before = net.params["out"][0].data.copy()
    net.copy_from(path)
    assert np.array_equal(net.params["ip"][0].data, W)
    assert net.params["ip"][1].data.tolist() == [7, 8]
    assert np.array_equal(net.params["out"][0].data, out_before)
    assert "Ignoring source layer fc_old" in dualnet_log.text


def test_legacy_four_d_blobs_load_into_inner_product_weights(tmp_path):
    # Old Caffe stored InnerProduct weights as 1 x 1 x N x K and biases as 1 x 1 x 1 x N.
    W = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    path = write_model(tmp_path / "old.caffemodel",
                       [("ip", [legacy(W, (1, 1, 2, 3)), legacy([-1, -2], (1, 1, 1, 2))])])
    net = make_net()
    net.copy_from(path)
    assert np.array_equal(net.params["ip"][0].data, W)
    assert net.params["ip"][1].data.tolist() == [-1, -2]


def test_double_precision_blob_data_loads_as_float32(tmp_path):
    weights = pb.BlobProto()
    weights.shape.dim.extend([1, 2])
    weights.double_data.extend([0.5, -0.25])
    path = write_model(tmp_path / "d.caffemodel", [("out", [weights])])
    net = make_net()
    net.copy_from(path)
    assert net.params["out"][0].data.dtype == np.float32
    assert net.params["out"][0].data.tolist() == [[0.5, -0.25]]


def test_v1_caffemodel_loads_through_copy_from(tmp_path):
    W = np.array([[1, 0, -1], [2, 0, -2]], np.float32)
    path = write_model(tmp_path / "v1.caffemodel",
                       [("ip", [legacy(W, (1, 1, 2, 3)), legacy([3, 4], (1, 1, 1, 2))])], v1=True)
    net = make_net()
    net.copy_from(path)
    assert np.array_equal(net.params["ip"][0].data, W)
    assert net.params["ip"][1].data.tolist() == [3, 4]


def test_shape_mismatch_says_to_rename_the_layer_with_both_shapes(tmp_path):
    path = write_model(tmp_path / "m.caffemodel", [("ip", [shaped(np.zeros((4, 3))), shaped(np.zeros(4))])])
    with pytest.raises(WeightsError) as caught:
        make_net().copy_from(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "Cannot copy param 0 weights from layer 'ip'; shape mismatch" in message
    assert "Source param shape is 4 3 (12)" in message and "target param shape is 2 3 (6)" in message
    assert "rename the layer" in message


def test_legacy_blob_of_another_shape_is_a_mismatch_too(tmp_path):
    path = write_model(tmp_path / "m.caffemodel",
                       [("ip", [legacy(np.zeros(6), (1, 1, 3, 2)), legacy(np.zeros(2), (1, 1, 1, 2))])])
    with pytest.raises(WeightsError, match=r"Source param shape is 1 1 3 2 \(6\); target param shape is 2 3 \(6\)"):
        make_net().copy_from(path)


def test_different_number_of_blobs_names_the_layer(tmp_path):
    path = write_model(tmp_path / "m.caffemodel", [("out", [shaped([[1, 2]]), shaped([5])])])
    with pytest.raises(WeightsError, match="number of blobs for layer 'out'.*have 2.*has 1"):
        make_net().copy_from(path)


def test_solverstate_given_as_weights_says_which_file_to_pass(tmp_path):
    state = pb.SolverState(iter=100, learned_net="snapshots/lenet_iter_100.caffemodel")
    state.history.add().CopyFrom(shaped(np.zeros((2, 3))))
    path = tmp_path / "lenet_iter_100.solverstate"
    path.write_bytes(state.SerializeToString())
    with pytest.raises(WeightsError) as caught:
        make_net().copy_from(str(path))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: is a .solverstate")
    assert "snapshots/lenet_iter_100.caffemodel" in message


def test_solverstate_renamed_to_caffemodel_is_recognised(tmp_path):
    state = pb.SolverState(iter=5, learned_net="x_iter_5.caffemodel")
    state.history.add().CopyFrom(shaped([1.0, 2.0]))
    path = tmp_path / "x.caffemodel"
    path.write_bytes(state.SerializeToString())
    with pytest.raises(WeightsError, match="is a .solverstate"):
        make_net().copy_from(str(path))


def test_prototxt_given_as_weights_is_called_a_text_file(tmp_path):
    path = tmp_path / "small.prototxt"
    path.write_text(NET)
    with pytest.raises(WeightsError, match="is a text file"):
        make_net().copy_from(str(path))


def test_hdf5_weights_are_named_hdf5(tmp_path):
    path = tmp_path / "net.caffemodel.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(WeightsError, match=r"is an HDF5 file.*net\.save"):
        make_net().copy_from(str(path))


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(WeightsError, match="nowhere.caffemodel: no such weights file"):
        make_net().copy_from(str(tmp_path / "nowhere.caffemodel"))


def test_bare_input_names_of_an_old_caffemodel_are_dropped(tmp_path, dualnet_log):
    # As Caffe's UpgradeNetInput: without shapes they are not turned into a layer.
    model = pb.NetParameter(name="old", input=["data"])
    model.layer.add(name="ip", type="InnerProduct").blobs.extend(
        [shaped(np.ones((2, 3))), shaped(np.ones(2))])
    path = tmp_path / "old.caffemodel"
    path.write_bytes(model.SerializeToString())
    net = make_net()
    net.copy_from(str(path))
    assert net.params["ip"][0].data.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert "Ignoring source layer" not in dualnet_log.text
