"""The committed dualnet_pb2.py matches proto/dualnet.proto, and the shared
messages keep Caffe's field numbers (so binary files interoperate)."""
import os
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2

from dualnet import dualnet_pb2 as pb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from gen_proto import protoc_command  # noqa: E402


def _serialized_descriptor(pb2_source):
    """The descriptor bytes a generated module embeds (version headers differ by protoc)."""
    line = next(l for l in pb2_source.splitlines() if "AddSerializedFile(" in l)
    return line.strip()


def test_generated_module_matches_proto(tmp_path):
    command = protoc_command()
    if command is None:
        pytest.skip("no protoc available (pip install grpcio-tools)")
    subprocess.check_call(command + ["-I", os.path.join(ROOT, "proto"), f"--python_out={tmp_path}",
                                     os.path.join(ROOT, "proto", "dualnet.proto")])
    fresh = (tmp_path / "dualnet_pb2.py").read_text()
    with open(os.path.join(ROOT, "dualnet", "dualnet_pb2.py")) as handle:
        committed = handle.read()
    assert _serialized_descriptor(fresh) == _serialized_descriptor(committed), \
        "dualnet_pb2.py is stale: run scripts/gen_proto.py"


# A sample of Caffe's field numbers that binary .caffemodel / .solverstate
# files depend on (from BVLC Caffe's caffe.proto).
CAFFE_NUMBERS = {
    ("NetParameter", "layer"): 100, ("NetParameter", "layers"): 2, ("NetParameter", "name"): 1,
    ("LayerParameter", "blobs"): 7, ("LayerParameter", "convolution_param"): 106,
    ("LayerParameter", "inner_product_param"): 117, ("LayerParameter", "batch_norm_param"): 139,
    ("LayerParameter", "clip_param"): 148, ("LayerParameter", "input_param"): 143,
    ("BlobProto", "shape"): 7, ("BlobProto", "data"): 5, ("BlobProto", "num"): 1,
    ("BlobShape", "dim"): 1, ("V1LayerParameter", "blobs"): 6, ("V1LayerParameter", "type"): 5,
    ("SolverState", "iter"): 1, ("SolverState", "learned_net"): 2, ("SolverState", "history"): 3,
    ("SolverState", "current_step"): 4, ("SolverParameter", "type"): 40, ("SolverParameter", "weights"): 42,
    ("Datum", "data"): 4, ("Datum", "label"): 5, ("Datum", "float_data"): 6,
}


@pytest.mark.parametrize("message,field", sorted(CAFFE_NUMBERS))
def test_caffe_field_numbers(message, field):
    assert pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number == CAFFE_NUMBERS[(message, field)]


DUALNET_FIELDS = [("LayerParameter", "hbnn_param"), ("SolverParameter", "dual_param"),
                  ("SolverState", "solver_type"), ("SolverState", "dual_state"),
                  ("DataParameter", "shuffle"), ("DataParameter", "shuffle_seed"), ("BlobProto", "packed")]


@pytest.mark.parametrize("message,field", DUALNET_FIELDS)
def test_dualnet_extensions_are_far_from_caffe_numbers(message, field):
    assert pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number >= 1000
