"""Cutting a net in two: which layers go where, the shapes that cross, and the errors."""
import numpy as np
import pytest

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.dual.split import SplitError, best_cut, candidate_cuts, layer_flops, split_net
from dualnet.io import parse_net_text
from dual_harness import make_npz, run_pair, solver_param

CHAIN = """
name: "chain"
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
        data_param {{ source: "{npz}" batch_size: 8 backend: NPZ }} }}
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
        data_param {{ source: "{npz}" batch_size: 4 backend: NPZ }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: 3 kernel_size: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param {{ num_output: 5 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "acc" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy" include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }}
"""


@pytest.fixture
def chain(tmp_path):
    npz = make_npz(tmp_path / "d.npz", classes=5)
    return parse_net_text(CHAIN.format(npz=npz), str(tmp_path / "chain.prototxt"))


def names(net_param, phase=None):
    if phase is None:
        return [l.name for l in net_param.layer]
    return [l.name for l in net_param.layer if not l.include or any(r.phase == phase for r in l.include)]


def test_net1_keeps_the_data_and_everything_up_to_the_cut(chain):
    split = split_net(*chain[:1], "pool1", origin=chain[1])
    assert names(split.net1) == ["d", "d", "conv1", "relu1", "pool1", "labels_to_net2", "pool1_target",
                                 "consistency_loss"]
    assert names(split.net2) == ["pool1_input_train", "pool1_input_test", "ip1", "acc", "loss"]
    assert split.label_blobs == ["label"]
    assert split.cut_shapes == {pb.TRAIN: (8, 3, 3, 3), pb.TEST: (4, 3, 3, 3)}
    assert split.net2.force_backward


def test_in_place_layers_on_the_cut_blob_stay_in_net1(chain):
    split = split_net(chain[0], "conv1", origin=chain[1])
    assert "relu1" in names(split.net1) and "relu1" not in names(split.net2)


def test_the_consistency_loss_is_train_only_and_weighted(chain):
    split = split_net(chain[0], "pool1", origin=chain[1], consistency_weight=0.5)
    loss = next(l for l in split.net1.layer if l.name == "consistency_loss")
    assert (loss.type, list(loss.bottom), list(loss.loss_weight)) == ("EuclideanLoss", ["pool1", "pool1_target"], [0.5])
    assert [r.phase for r in loss.include] == [pb.TRAIN]
    test_net1 = dualnet.Net(split.net1, dualnet.TEST)
    assert test_net1.outputs == ["pool1"]          # the test net just computes the cut


def test_both_halves_build_in_both_phases(chain):
    split = split_net(chain[0], "pool1", origin=chain[1])
    for phase in (dualnet.TRAIN, dualnet.TEST):
        dualnet.Net(split.net1, phase)
        net2 = dualnet.Net(split.net2, phase)
        assert net2.inputs == ["pool1", "label"]


def test_dual_layer_copies_net2s_first_layer_into_net1(chain):
    split = split_net(chain[0], "pool1", mode=pb.DualParameter.DUAL_LAYER, origin=chain[1], normalize=True)
    dual = next(l for l in split.net1.layer if l.name == "ip1_dual")
    assert (dual.type, list(dual.bottom), list(dual.top)) == ("InnerProduct", ["pool1"], ["ip1_dual"])
    assert split.target_blob == "ip1" and split.target_shapes[pb.TRAIN] == (8, 5)
    assert next(l for l in split.net1.layer if l.name == "consistency_loss").type == "NormalizedEuclideanLoss"


def test_a_cut_crossed_by_another_blob_is_refused(tmp_path):
    npz = make_npz(tmp_path / "d.npz", classes=5)
    text = CHAIN.format(npz=npz).replace(
        'layer { name: "acc"', 'layer { name: "skip" type: "Eltwise" bottom: "ip1" bottom: "ip1b" top: "sum" }\n'
        'layer { name: "acc"').replace(
        'layer { name: "ip1"', 'layer { name: "ip1b" type: "InnerProduct" bottom: "conv1" top: "ip1b" '
        'inner_product_param { num_output: 5 } }\nlayer { name: "ip1"')
    param, origin = parse_net_text(text, "skip.prototxt")
    with pytest.raises(SplitError, match="layer 'ip1b' after the cut reads 'conv1', which is computed before the cut"):
        split_net(param, "pool1", origin=origin)


@pytest.mark.parametrize("cut,message", [("pool9", "no blob named 'pool9'"), ("loss", "leaves nothing for net2"),
                                         ("data", "leaves only the data layers")])
def test_impossible_cuts_are_explained(chain, cut, message):
    with pytest.raises(SplitError, match=message):
        split_net(chain[0], cut, origin=chain[1])


def test_flops_of_a_convolution_and_an_inner_product(chain):
    net = dualnet.Net(chain[0], dualnet.TRAIN, origin=chain[1])
    flops = {name: (f, b) for name, _t, f, b in layer_flops(net)}
    # conv1: 8 samples x 3 maps x 6 x 6 outputs, each 1 x 3 x 3 multiply-adds
    assert flops["conv1"] == (2 * 8 * 3 * 6 * 6 * 9, 2 * 2 * 8 * 3 * 6 * 6 * 9)
    # ip1: 8 x 5 outputs of 27 inputs
    assert flops["ip1"] == (2 * 8 * 5 * 27, 4 * 8 * 5 * 27)


def test_suggest_names_the_balanced_cut_of_cnn4():
    param, origin = dualnet.io.read_net_param("models/cnn4_train_test.prototxt")
    rows = candidate_cuts(param, origin)
    assert [r[0] for r in rows][:4] == ["conv1", "pool1", "conv2", "pool2"]
    assert best_cut(rows)[0] == "pool2"


def test_best_cut_prefers_fewer_bytes_among_equally_balanced_cuts():
    rows = [("conv2", 100, 101, 4000), ("pool2", 101, 100, 1000), ("ip1", 190, 10, 10)]
    assert best_cut(rows)[0] == "pool2"


def test_split_command_writes_a_pair_that_trains_like_the_automatic_split(tmp_path, chain):
    net_path = tmp_path / "chain.prototxt"
    net_path.write_text(CHAIN.format(npz=tmp_path / "d.npz"))
    from dualnet.cli import main

    assert main(["split", "--model", str(net_path), "--at", "pool1", "--out", str(tmp_path / "halves")]) == 0
    weights = tmp_path / "w.caffemodel"
    dualnet.Net(str(net_path), dualnet.TRAIN).save(str(weights))
    common = (f'base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 display: 0 max_iter: 10 '
              f'snapshot_after_train: false snapshot_prefix: "{tmp_path}/s" ')
    automatic = solver_param(common + f'net: "{net_path}" dual_param {{ split_at: "pool1" schedule: LOCKSTEP }}',
                             tmp_path / "a.prototxt")
    pair = solver_param(common + f'dual_param {{ split_at: "pool1" schedule: LOCKSTEP '
                        f'net1: "{tmp_path}/halves/net1.prototxt" net2: "{tmp_path}/halves/net2.prototxt" }}',
                        tmp_path / "b.prototxt")
    a1, a2 = run_pair(automatic, tmp_path / "a.prototxt", 2, weights=str(weights))
    b1, b2 = run_pair(pair, tmp_path / "b.prototxt", 2, weights=str(weights))
    np.testing.assert_array_equal(a1.net.params["conv1"][0].data, b1.net.params["conv1"][0].data)
    np.testing.assert_array_equal(a2.net.params["ip1"][0].data, b2.net.params["ip1"][0].data)
