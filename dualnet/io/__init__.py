"""Reading and writing Caffe's file formats: prototxt, .caffemodel, .solverstate."""
from .atomic import atomic_write
from .blobproto import blob_from_proto, blob_to_proto
from .text import read_net_param, read_solver_param, parse_net_text, parse_solver_text

__all__ = [
    "atomic_write",
    "blob_from_proto",
    "blob_to_proto",
    "read_net_param",
    "read_solver_param",
    "parse_net_text",
    "parse_solver_text",
]
