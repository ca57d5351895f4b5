"""SIGN_BITS at the cut is exact when net2's first layer is an HBNNInnerProduct
that binarises its input: it sees beta * sign(a) either way, with beta = mean |a|
per sample, which is exactly the scale the encoding sends."""
import numpy as np
import pytest

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.dual.protocol import decode_cut, encode_cut
from dualnet.io import parse_net_text

NET2 = """
layer {{ name: "in" type: "Input" top: "cut" input_param {{ shape {{ dim: 6 dim: 5 dim: 3 dim: 3 }} }} }}
layer {{ name: "hb" type: "HBNNInnerProduct" bottom: "cut" top: "hb"
        inner_product_param {{ num_output: 7 weight_filler {{ type: "gaussian" std: 0.3 }} }}
        hbnn_param {{ binarize_input: {binarize} segment_size: 16 }} }}
"""


def outputs(binarize, a):
    param, origin = parse_net_text(NET2.format(binarize=binarize), "net2.prototxt")
    dualnet.set_random_seed(4)
    net = dualnet.Net(param, dualnet.TEST, origin=origin)
    return net.forward(cut=a)["hb"].copy()


@pytest.fixture
def activations():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((6, 5, 3, 3)), 0).astype(np.float32)   # ReLU-like: many exact zeros
    a[2] = 0                                                                  # a sample that is all zero
    return a


def test_sign_bits_are_exact_for_a_binarising_hbnn_inner_product(activations):
    received = decode_cut(dict(encode_cut(activations, pb.DualParameter.SIGN_BITS)),
                          pb.DualParameter.SIGN_BITS, activations.shape)
    assert not np.array_equal(received, activations)          # the wire carries less...
    np.testing.assert_array_equal(outputs("true", received), outputs("true", activations))   # ...and loses nothing


def test_sign_bits_are_lossy_for_a_float_input_layer(activations):
    received = decode_cut(dict(encode_cut(activations, pb.DualParameter.SIGN_BITS)),
                          pb.DualParameter.SIGN_BITS, activations.shape)
    assert not np.allclose(outputs("false", received), outputs("false", activations))


def test_the_launcher_says_which(dualnet_log, tmp_path):
    from dualnet.dual.launch import _lossy_warning
    from dualnet.dual.split import Split

    param = pb.SolverParameter()
    param.dual_param.encoding = pb.DualParameter.SIGN_BITS
    for binarize, words in (("true", "exact"), ("false", "lossy")):
        net2, _ = parse_net_text(NET2.format(binarize=binarize), "net2.prototxt")
        shapes = {pb.TRAIN: (6, 5, 3, 3), pb.TEST: (6, 5, 3, 3)}
        split = Split(pb.NetParameter(), net2, "cut", 0, [], shapes, {}, ["hb"], "cut")
        _lossy_warning(split, param)
        assert words in dualnet_log.records[-1].getMessage()
