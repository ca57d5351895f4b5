"""Cutting a net in two: which layers go where, the shapes that cross, and the errors."""
import re

import numpy as np
import pytest

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.dual.launch import build_split
from dualnet.dual.split import (MEMORY_HALVES, SplitError, best_cut, candidate_cuts, layer_flops, split_net,
                                unsplit_activation_bytes)
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


def test_suggest_names_the_cut_that_balances_memory_of_cnn4():
    # cnn4's 28x28 and 14x14 maps sit before pool2, so the FLOP-balanced cut leaves net1 most of the
    # activations; cutting at pool1 makes the larger half's activation bytes the smallest
    param, origin = dualnet.io.read_net_param("models/cnn4_train_test.prototxt")
    rows = {r.blob: r for r in candidate_cuts(param, origin)}
    assert best_cut(list(rows.values()), halves=MEMORY_HALVES).blob == "pool1"
    assert max(rows["pool1"].net1_bytes, rows["pool1"].net2_bytes) < rows["pool2"].net1_bytes


def test_memory_balance_compares_the_larger_half_of_activation_bytes():
    rows = [("conv1", 1, 99, 10, 60, 50), ("pool1", 2, 98, 5, 45, 44), ("pool2", 50, 50, 1, 80, 5)]
    assert best_cut(rows, halves=MEMORY_HALVES)[0] == "pool1"
    assert best_cut(rows)[0] == "pool2"


def test_suggest_prints_the_table_without_the_build_log(capsys):
    from dualnet.cli import main

    assert main(["split", "--model", "models/cnn4_train_test.prototxt", "--suggest"]) == 0
    out, err = capsys.readouterr()
    assert "needs backward computation" not in out + err
    assert "best balanced cut: pool2" in out
    assert "cut that balances memory instead: pool1" in out


def test_best_cut_prefers_fewer_bytes_among_equally_balanced_cuts():
    rows = [("conv2", 100, 101, 4000), ("pool2", 101, 100, 1000), ("ip1", 190, 10, 10)]
    assert best_cut(rows)[0] == "pool2"


COMMON = ('base_lr: 0.1 lr_policy: "fixed" momentum: 0.9 display: 0 max_iter: 10 random_seed: 3 '
          'snapshot_after_train: false snapshot_prefix: "{folder}/s" ')


def split_command(tmp_path, capsys, *flags):
    """`dualnet split` of the chain at pool1 into tmp_path/halves; returns (net path, initial weights, stdout)."""
    net_path = tmp_path / "chain.prototxt"
    net_path.write_text(CHAIN.format(npz=tmp_path / "d.npz"))
    from dualnet.cli import main

    capsys.readouterr()
    assert main(["split", "--model", str(net_path), "--at", "pool1", "--out", str(tmp_path / "halves"), *flags]) == 0
    printed = capsys.readouterr().out
    weights = tmp_path / "w.caffemodel"
    dualnet.Net(str(net_path), dualnet.TRAIN).save(str(weights))
    return net_path, str(weights), printed


@pytest.mark.parametrize("consistency", ["", "consistency_weight: 0.25",
                                         "consistency_weight: 0.01 normalize_consistency: true"])
def test_split_command_writes_a_pair_that_trains_like_the_automatic_split(tmp_path, chain, capsys, consistency):
    # The file says loss_weight 1, EuclideanLoss; the solver's dual_param decides (net2's z-step is N / w).
    net_path, weights, _printed = split_command(tmp_path, capsys)
    common = COMMON.format(folder=tmp_path)
    automatic = solver_param(common + f'net: "{net_path}" dual_param {{ split_at: "pool1" schedule: LOCKSTEP '
                             f'{consistency} }}', tmp_path / "a.prototxt")
    pair = solver_param(common + f'dual_param {{ split_at: "pool1" schedule: LOCKSTEP {consistency} '
                        f'net1: "{tmp_path}/halves/net1.prototxt" net2: "{tmp_path}/halves/net2.prototxt" }}',
                        tmp_path / "b.prototxt")
    loss = next(l for l in build_split(pair, str(tmp_path / "b.prototxt")).net1.layer if l.name == "consistency_loss")
    expected_type = "NormalizedEuclideanLoss" if "normalize" in consistency else "EuclideanLoss"
    assert (loss.type, list(loss.loss_weight)) == (expected_type, [pytest.approx(pair.dual_param.consistency_weight)])
    said = [line for line in capsys.readouterr().err.splitlines() if "takes the solver's dual_param" in line]
    assert bool(said) == bool(consistency), said         # logged when the solver changes the file's loss
    if "0.25" in consistency:
        assert said[0].endswith("net1.prototxt: consistency loss 'consistency_loss' takes the solver's dual_param: "
                                "loss_weight 1 -> 0.25 (consistency_weight)"), said
    a1, a2 = run_pair(automatic, tmp_path / "a.prototxt", 2, weights=weights)
    b1, b2 = run_pair(pair, tmp_path / "b.prototxt", 2, weights=weights)
    np.testing.assert_array_equal(a1.net.params["conv1"][0].data, b1.net.params["conv1"][0].data)
    np.testing.assert_array_equal(a2.net.params["ip1"][0].data, b2.net.params["ip1"][0].data)


def test_a_dual_layer_pair_from_the_split_command_trains_as_its_printed_hint_says(tmp_path, chain, capsys):
    net_path, weights, printed = split_command(tmp_path, capsys, "--mode", "DUAL_LAYER")
    hint = re.search(r"to train them: (dual_param \{.*\}) in the solver", printed).group(1)
    assert "mode: DUAL_LAYER" in hint and "consistency_weight: 0.01" in hint
    common = COMMON.format(folder=tmp_path)
    pair = solver_param(common + hint.replace("dual_param { ", "dual_param { schedule: LOCKSTEP "),
                        tmp_path / "b.prototxt")
    automatic = solver_param(common + f'net: "{net_path}" dual_param {{ split_at: "pool1" schedule: LOCKSTEP '
                             'mode: DUAL_LAYER consistency_weight: 0.01 }', tmp_path / "a.prototxt")
    a1, a2 = run_pair(automatic, tmp_path / "a.prototxt", 2, weights=weights)
    b1, b2 = run_pair(pair, tmp_path / "b.prototxt", 2, weights=weights)
    for first, second, name in ((a1, b1, "conv1"), (a1, b1, "ip1_dual"), (a2, b2, "ip1")):
        for j, blob in enumerate(first.net.params[name]):
            np.testing.assert_array_equal(blob.data, second.net.params[name][j].data, err_msg=f"{name} param {j}")


def test_a_pair_written_for_dual_layer_is_refused_in_admm_mode_naming_the_mode(tmp_path, chain, capsys):
    split_command(tmp_path, capsys, "--mode", "DUAL_LAYER")
    param = solver_param(COMMON.format(folder=tmp_path) + f'dual_param {{ split_at: "pool1" '
                         f'net1: "{tmp_path}/halves/net1.prototxt" net2: "{tmp_path}/halves/net2.prototxt" }}',
                         tmp_path / "b.prototxt")
    with pytest.raises(SplitError, match="target Input 'ip1_target', but ADMM at 'pool1' sends 'pool1_target'"):
        build_split(param, str(tmp_path / "b.prototxt"))


def test_split_no_longer_takes_an_unused_phase_flag(tmp_path, chain):
    from dualnet.cli import main

    with pytest.raises(SystemExit):
        main(["split", "--model", str(tmp_path / "chain.prototxt"), "--suggest", "--phase", "TEST"])


@pytest.mark.parametrize("cut,net1_values,net2_values", [
    # TRAIN batch 8. net1: data 8x1x8x8, label 8, conv1 8x3x6x6 (relu1 in place), pool1 8x3x3x3, plus the
    # target pool1_target 8x3x3x3 and the scalar consistency loss; net2: its inputs pool1 and label, ip1 8x5,
    # the scalar loss.
    ("pool1", 512 + 8 + 864 + 216 + 216 + 1, 216 + 8 + 40 + 1),
    # net1 computes ip1 (8x5) too, with its target; net2 holds ip1, label and the loss
    ("ip1", 512 + 8 + 864 + 216 + 40 + 40 + 1, 40 + 8 + 1),
])
def test_suggest_reports_each_halfs_activation_bytes(chain, capsys, tmp_path, cut, net1_values, net2_values):
    rows = {row.blob: row for row in candidate_cuts(chain[0], chain[1])}
    data_and_diff = 2 * 4                      # float32 data and diff per value
    assert (rows[cut].net1_bytes, rows[cut].net2_bytes) == (net1_values * data_and_diff, net2_values * data_and_diff)
    net_path = tmp_path / "chain.prototxt"
    net_path.write_text(CHAIN.format(npz=tmp_path / "d.npz"))
    from dualnet.cli import main

    capsys.readouterr()
    assert main(["split", "--model", str(net_path), "--suggest"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.split()[0] == cut)
    assert f"{net1_values * data_and_diff:,}" in line.split() and f"{net2_values * data_and_diff:,}" in line.split()


def test_suggest_reports_the_share_of_the_unsplit_nets_activations_the_larger_half_keeps(chain, capsys, tmp_path):
    # the unsplit chain: data 8x1x8x8, label 8, conv1 8x3x6x6, pool1 8x3x3x3, ip1 8x5, the scalar loss.
    # net1 is the larger half at every cut; it is smallest at ip1, 512 + 8 + 864 + 216 + 40 + 40 + 1
    # values (see above; pool1's holds 1817, conv1's 2249), more than the unsplit net with the target
    whole = 2 * 4 * (512 + 8 + 864 + 216 + 40 + 1)
    assert unsplit_activation_bytes(chain[0], chain[1]) == whole
    net_path = tmp_path / "chain.prototxt"
    net_path.write_text(CHAIN.format(npz=tmp_path / "d.npz"))
    from dualnet.cli import main

    capsys.readouterr()
    assert main(["split", "--model", str(net_path), "--suggest"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    share = (512 + 8 + 864 + 216 + 40 + 40 + 1) / (512 + 8 + 864 + 216 + 40 + 1)
    assert last == (f"the unsplit net holds {whole:,} activation bytes; no cut leaves the larger half less than "
                    f"{share:.2f} of that (ip1)")
