"""Binary .caffemodel files: NetParameter messages holding each layer's blobs.

Writing follows Caffe's Net::ToProto (every layer's parameters, blobs with
`shape` and float `data`); large float arrays are encoded directly as packed
fields rather than through per-element protobuf calls, which is both exact
and fast. Reading accepts V1 files and legacy 4-D blob shapes.
"""
import os

import numpy as np
from google.protobuf.message import DecodeError

from .. import dualnet_pb2 as pb
from ..errors import WeightsError
from ..log import get_logger
from .atomic import atomic_write
from .blobproto import proto_array, proto_shape, shape_matches
from .upgrade import UpgradeError, upgrade_net

log = get_logger("dualnet.io")


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    """A length-delimited field: tag, length, payload."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def encode_blob(array, diff=None):
    """BlobProto bytes for a float array: shape (field 7) + packed data (field 5)."""
    shape = pb.BlobShape()
    shape.dim.extend(int(d) for d in array.shape)
    out = _field(7, shape.SerializeToString())
    out += _field(5, np.ascontiguousarray(array, dtype="<f4").tobytes())
    if diff is not None:
        out += _field(6, np.ascontiguousarray(diff, dtype="<f4").tobytes())
    return out


def _encode_layer(layer, param, write_diff, packed_hbnn):
    header = pb.LayerParameter()
    header.CopyFrom(param)
    header.ClearField("blobs")
    out = header.SerializeToString()
    packer = getattr(layer, "packed_blob", None) if packed_hbnn else None
    for j, blob in enumerate(layer.blobs):
        packed = packer(j) if packer is not None else None
        if packed is not None:
            out += _field(7, packed.SerializeToString())
        else:
            out += _field(7, encode_blob(blob.data, blob.diff if write_diff else None))
    return out


def encode_net(net, write_diff=False, packed_hbnn=False):
    """The net's NetParameter (with weights) as bytes."""
    head = pb.NetParameter(name=net.name)
    out = head.SerializeToString()
    for layer, param in zip(net.layers, net.param.layer):
        out += _field(100, _encode_layer(layer, param, write_diff, packed_hbnn))
    return out


def net_to_proto(net, write_diff=False):
    return pb.NetParameter.FromString(encode_net(net, write_diff))


def save_net(net, path, packed_hbnn=False, write_diff=False):
    payload = encode_net(net, write_diff=write_diff, packed_hbnn=packed_hbnn)
    atomic_write(path, payload)
    if packed_hbnn:
        float_bytes = len(encode_net(net, write_diff=write_diff))
        log.info("Saved %s with HBNN layers packed: %d bytes; %d as float32 (%.1fx smaller)",
                 path, len(payload), float_bytes, float_bytes / len(payload))
    return len(payload)


def _solverstate_in(payload):
    """The SolverState in `payload` if it looks like one, else None."""
    state = pb.SolverState()
    try:
        state.ParseFromString(payload)
    except DecodeError:
        return None
    if state.learned_net or len(state.history) or state.HasField("iter"):
        return state
    return None


def _solverstate_error(path, state):
    weights = f" ({state.learned_net})" if state.learned_net else ""
    return WeightsError(
        f"{path}: is a .solverstate (the solver's history), not weights; pass the .caffemodel "
        f"written with it{weights} as weights, or give the .solverstate to --snapshot to resume"
    )


def _looks_like_text(payload):
    try:
        text = payload[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(ch) < 9 or 13 < ord(ch) < 32 for ch in text)


def read_caffemodel(path):
    """The NetParameter stored in a .caffemodel (V1 files upgraded)."""
    try:
        with open(path, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except IsADirectoryError:
        raise WeightsError(f"{path}: is a folder, not a .caffemodel") from None
    if payload.startswith(b"\x89HDF\r\n\x1a\n"):
        raise WeightsError(
            f"{path}: is an HDF5 file (Caffe's snapshot_format: HDF5); dualnet reads binary .caffemodel "
            "files: load the net and weights in pycaffe and save them with net.save('model.caffemodel')"
        )
    if os.fspath(path).endswith(".solverstate"):
        state = _solverstate_in(payload)
        if state is not None:
            raise _solverstate_error(path, state)
    net = pb.NetParameter()
    try:
        net.ParseFromString(payload)
        parsed = True
    except DecodeError:
        parsed = False
    if not parsed or (not net.layer and not net.layers):
        state = _solverstate_in(payload)
        if state is not None and (state.learned_net or len(state.history)):
            raise _solverstate_error(path, state)
        if payload and _looks_like_text(payload):
            raise WeightsError(
                f"{path}: is a text file (a prototxt?), not a binary .caffemodel; "
                "weights are the .caffemodel that training or net.save() wrote"
            )
        if not parsed:
            raise WeightsError(
                f"{path}: not a binary .caffemodel (it does not parse as a NetParameter message); "
                "is it an HDF5 model or another kind of file?"
            )
        raise WeightsError(f"{path}: holds no layers; is it a .caffemodel?")
    if net.input and not net.input_shape and not net.input_dim:
        # As Caffe: bare input names in a legacy caffemodel are just dropped.
        net.ClearField("input")
    try:
        upgrade_net(net, source=os.fspath(path))
    except UpgradeError as error:
        raise WeightsError(f"{path}: {error.reason}") from None
    return net


def copy_weights(net, path_or_proto):
    """Caffe's CopyTrainedLayersFrom: copy blobs of same-named layers."""
    source = read_caffemodel(path_or_proto) if isinstance(path_or_proto, (str, os.PathLike)) else path_or_proto
    name = path_or_proto if isinstance(path_or_proto, (str, os.PathLike)) else "<weights>"
    for layer_param in source.layer:
        target = net.layer_dict.get(layer_param.name)
        if target is None:
            log.info("Ignoring source layer %s", layer_param.name)
            continue
        if not layer_param.blobs:
            continue
        log.info("Copying source layer %s Type:%s #blobs=%d", layer_param.name, layer_param.type, len(layer_param.blobs))
        if len(layer_param.blobs) != len(target.blobs):
            raise WeightsError(
                f"{name}: incompatible number of blobs for layer '{layer_param.name}': "
                f"the weights have {len(layer_param.blobs)}, the net has {len(target.blobs)}"
            )
        for j, proto in enumerate(layer_param.blobs):
            blob = target.blobs[j]
            shape = proto_shape(proto)
            if not shape_matches(proto, blob.shape):
                count = int(np.prod(shape)) if shape else 1
                raise WeightsError(
                    f"Cannot copy param {j} weights from layer '{layer_param.name}'; shape mismatch. "
                    f"Source param shape is {' '.join(map(str, shape))} ({count}); "
                    f"target param shape is {' '.join(map(str, blob.shape))} ({blob.count}). "
                    "To learn this layer's parameters from scratch rather than copying from a saved net, "
                    "rename the layer."
                )
            blob.data[...] = proto_array(proto, blob.data.dtype).reshape(blob.shape)
