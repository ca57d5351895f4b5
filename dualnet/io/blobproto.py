"""Blob <-> BlobProto, accepting Caffe's legacy num/channels/height/width."""
import numpy as np

from .. import dualnet_pb2 as pb
from ..blob import Blob


def proto_shape(proto):
    """The shape a BlobProto declares (legacy 4-D fields when `shape` is absent)."""
    if proto.HasField("shape"):
        return tuple(int(d) for d in proto.shape.dim)
    if proto.num or proto.channels or proto.height or proto.width:
        return (proto.num, proto.channels, proto.height, proto.width)
    count = len(proto.data) or len(proto.double_data)
    return (count,) if count else ()


def is_legacy(proto):
    return not proto.HasField("shape")


def proto_array(proto, dtype=np.float32):
    """The data of a BlobProto as an array of its declared shape."""
    shape = proto_shape(proto)
    if proto.HasField("packed"):
        from ..hbnn.packing import unpack_blob

        return unpack_blob(proto.packed).astype(dtype).reshape(shape)
    if len(proto.double_data):
        values = np.asarray(proto.double_data, dtype=np.float64)
    else:
        values = np.asarray(proto.data, dtype=np.float32)
    expected = int(np.prod(shape)) if shape else 1
    if values.size != expected:
        raise ValueError(f"BlobProto holds {values.size} values for shape {shape} ({expected} expected)")
    return values.astype(dtype, copy=False).reshape(shape)


def blob_from_proto(proto):
    blob = Blob(())
    blob.data = proto_array(proto)
    blob.diff = np.zeros_like(blob.data)
    if len(proto.diff) == blob.data.size and blob.data.size:
        blob.diff = np.asarray(proto.diff, dtype=np.float32).reshape(blob.data.shape)
    return blob


def blob_to_proto(array, diff=None):
    """A BlobProto with `shape` and float data (Caffe's current format)."""
    proto = pb.BlobProto()
    proto.shape.dim.extend(int(d) for d in array.shape)
    proto.data.extend(np.asarray(array, dtype=np.float32).ravel().tolist())
    if diff is not None:
        proto.diff.extend(np.asarray(diff, dtype=np.float32).ravel().tolist())
    return proto
