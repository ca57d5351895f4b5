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


def test_generated_module_matches_proto(tmp_path):
    command = protoc_command()
    if command is None:
        pytest.skip("no protoc available (pip install grpcio-tools)")
    out = tmp_path / "set.pb"
    subprocess.check_call(command + ["-I", os.path.join(ROOT, "proto"), f"--descriptor_set_out={out}",
                                     os.path.join(ROOT, "proto", "dualnet.proto")])
    compiled = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert compiled == committed, "dualnet_pb2.py is stale: run scripts/gen_proto.py"


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


def test_dualnet_extensions_are_far_from_caffe_numbers():
    for message in ("LayerParameter", "SolverParameter", "SolverState", "DataParameter", "BlobProto"):
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        own = [f for f in descriptor.fields if f.name in ("hbnn_param", "dual_param", "solver_type", "dual_state",
                                                          "shuffle", "shuffle_seed", "packed")]
        assert own and all(f.number >= 1000 for f in own)
