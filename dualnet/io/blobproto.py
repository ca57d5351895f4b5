"""Blob <-> BlobProto, accepting Caffe's legacy num/channels/height/width."""
import numpy as np

from .. import dualnet_pb2 as pb
from ..blob import Blob


_LEGACY_FIELDS = ("num", "channels", "height", "width")


def is_legacy(proto):
    """True when the BlobProto uses the deprecated num/channels/height/width.

    As in Caffe's Blob::FromProto, any of those fields wins over `shape`.
    """
    return any(proto.HasField(field) for field in _LEGACY_FIELDS)


def proto_shape(proto):
    """The shape a BlobProto declares: legacy 4-D fields, else `shape`."""
    if is_legacy(proto):
        return (proto.num, proto.channels, proto.height, proto.width)
    if proto.HasField("shape"):
        return tuple(int(d) for d in proto.shape.dim)
    # Neither: Caffe reads a 0-axis blob (one value); keep a longer list 1-D.
    count = len(proto.data) or len(proto.double_data)
    return (count,) if count > 1 else ()


def shape_matches(proto, shape):
    """Caffe's Blob::ShapeEquals: may the BlobProto's values fill a blob of `shape`?

    A legacy 4-D proto matches a blob of at most 4 axes whose shape, padded
    with leading 1s to 4 axes, equals (num, channels, height, width): old
    InnerProduct weights stored as 1 x 1 x N x K fill an (N, K) blob.
    """
    shape = tuple(int(d) for d in shape)
    if is_legacy(proto):
        if len(shape) > 4:
            return False
        return (1,) * (4 - len(shape)) + shape == proto_shape(proto)
    return proto_shape(proto) == shape


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
