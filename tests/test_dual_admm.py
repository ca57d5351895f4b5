"""ADMM training of a split net: the exact setting reproduces backpropagation."""
import numpy as np
import pytest

import dualnet
from dual_harness import make_npz, run_pair, solver_param, small_net


SOLVER = """
net: "{net}"
base_lr: 0.1 momentum: 0.9 weight_decay: 0.001 lr_policy: "inv" gamma: 0.01 power: 0.75
max_iter: 100 display: 0 snapshot_after_train: false random_seed: 3
snapshot_prefix: "{folder}/snap"
{dual}
"""


@pytest.fixture
def files(tmp_path):
    npz = make_npz(tmp_path / "data.npz")
    net = tmp_path / "net.prototxt"
    net.write_text(small_net(npz))
    single = dualnet.get_solver(solver_param(SOLVER.format(net=net, folder=tmp_path, dual=""), tmp_path / "s.prototxt"))
    weights = tmp_path / "init.caffemodel"
    single.net.save(str(weights))
    return tmp_path, net, str(weights)


def single_run(tmp_path, net, weights, iterations):
    solver = dualnet.get_solver(solver_param(SOLVER.format(net=net, folder=tmp_path, dual=""),
                                             tmp_path / "s.prototxt"), weights=weights)
    solver.step(iterations)
    return solver


def dual_param(text, tmp_path, net):
    return solver_param(SOLVER.format(net=net, folder=tmp_path, dual=f"dual_param {{ {text} }}"),
                        tmp_path / "dual.prototxt")


@pytest.mark.parametrize("cut", ["pool1", "ip1"])
def test_lockstep_exact_setting_reproduces_the_single_net(files, cut):
    tmp_path, net, weights = files
    single = single_run(tmp_path, net, weights, 3)
    param = dual_param(f'split_at: "{cut}" schedule: LOCKSTEP', tmp_path, net)
    net1, net2 = run_pair(param, tmp_path / "dual.prototxt", 3, weights=weights)
    for name, blobs in single.net.params.items():
        half = net1.net if name in net1.net.params else net2.net
        for j, blob in enumerate(blobs):
            np.testing.assert_allclose(half.params[name][j].data, blob.data, rtol=2e-5, atol=2e-6,
                                       err_msg=f"{name} param {j} after 3 iterations")


def test_consistency_weight_does_not_change_the_exact_setting(files):
    # eta defaults to N / w, so net1's gradient w/N (a - t) is backprop's whatever w is.
    tmp_path, net, weights = files
    single = single_run(tmp_path, net, weights, 2)
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP consistency_weight: 0.25', tmp_path, net)
    net1, _ = run_pair(param, tmp_path / "dual.prototxt", 2, weights=weights)
    np.testing.assert_allclose(net1.net.params["conv1"][0].data, single.net.params["conv1"][0].data,
                               rtol=2e-5, atol=2e-6)


def test_a_larger_z_step_scales_net1s_gradient(files):
    # With u = 0 and one z-step, eta = c N / w gives net1 c times backprop's gradient.
    tmp_path, net, weights = files
    before = dualnet.Net(str(net), dualnet.TRAIN, weights=weights).params["conv1"][0].data.copy()
    plain = single_run(tmp_path, net, weights, 1).net.params["conv1"][0].data - before
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP z_step_size: 16', tmp_path, net)   # 2 x N / w
    net1, _ = run_pair(param, tmp_path / "dual.prototxt", 1, weights=weights)
    doubled = net1.net.params["conv1"][0].data - before
    # the first step has no momentum yet; weight decay is added after the gradient
    decay = 0.1 * 0.001 * before
    np.testing.assert_allclose(doubled + decay, 2 * (plain + decay), rtol=1e-3, atol=1e-7)


def test_pipelined_training_lowers_the_loss(files):
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" schedule: PIPELINED max_staleness: 1', tmp_path, net)
    net1, net2 = run_pair(param, tmp_path / "dual.prototxt", 30, weights=weights)
    assert net1.iter == net2.iter == 30
    first = dualnet.Net(str(net), dualnet.TRAIN, weights=weights)
    assert net2.smoothed_loss < first.forward()["loss"]


def test_dual_memory_keeps_u_per_sample(files):
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP dual_memory: true', tmp_path, net)
    _, net2 = run_pair(param, tmp_path / "dual.prototxt", 10, weights=weights)
    assert len(net2.admm.u) == 64                      # every record of the 64-record set was seen
    assert all(u.shape == (3, 3, 3) for u in net2.admm.u.values())


def test_alternation_freezes_the_side_whose_turn_it_is_not(files):
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP k1: 2 k2: 3', tmp_path, net)
    net1, net2 = run_pair(param, tmp_path / "dual.prototxt", 2, weights=weights)
    start = dualnet.Net(str(net), dualnet.TRAIN, weights=weights)
    assert not np.array_equal(net1.net.params["conv1"][0].data, start.params["conv1"][0].data)
    np.testing.assert_array_equal(net2.net.params["ip1"][0].data, start.params["ip1"][0].data)


def test_dual_layer_mode_trains_both_halves(files):
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" mode: DUAL_LAYER schedule: LOCKSTEP consistency_weight: 0.01',
                       tmp_path, net)
    net1, net2 = run_pair(param, tmp_path / "dual.prototxt", 5, weights=weights)
    assert "ip1_dual" in net1.net.params                # net1's copy of net2's first layer
    assert net1.iter == net2.iter == 5




def test_the_halves_start_from_the_single_nets_weights_under_the_same_seed(files):
    # No --weights: each layer's fillers are seeded from (random_seed, layer name).
    tmp_path, net, _weights = files
    single = dualnet.get_solver(solver_param(SOLVER.format(net=net, folder=tmp_path, dual=""),
                                             tmp_path / "s.prototxt"))
    single.step(2)
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP', tmp_path, net)
    net1, net2 = run_pair(param, tmp_path / "dual.prototxt", 2)
    np.testing.assert_allclose(net1.net.params["conv1"][0].data, single.net.params["conv1"][0].data, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(net2.net.params["ip2"][0].data, single.net.params["ip2"][0].data, rtol=2e-5, atol=2e-6)
