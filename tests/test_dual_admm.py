"""ADMM training of a split net: the exact setting reproduces backpropagation;
the z-update, the rho schedule, the DUAL_LAYER loss and k1/k2 alternation,
each checked against numbers computed here."""
import numpy as np
import pytest

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.dual.launch import build_split
from dualnet.dual.roles import Net1Role, Net2Role, Wire
from dual_harness import FakeNet1, FakeNet2, against_fake_peer, make_npz, raise_any, run_pair, small_net, solver_param

MSG = pb.WireHeader


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


def test_pipelined_instances_sharing_blob_diffs_train_as_with_their_own(files, monkeypatch):
    # net1's PIPELINED instances hold one set of diff arrays (memory); the weights must be
    # exactly those of instances that each keep their own diffs.
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" schedule: PIPELINED max_staleness: 1', tmp_path, net)
    shared, _ = run_pair(param, tmp_path / "dual.prototxt", 6, weights=weights)
    first, twin = shared.instances
    assert twin.blobs["conv1"].diff is first.blobs["conv1"].diff
    monkeypatch.setattr(Net1Role, "_share_blob_diffs", lambda self, twin: None)
    own, _ = run_pair(param, tmp_path / "dual.prototxt", 6, weights=weights)
    assert own.instances[1].blobs["conv1"].diff is not own.instances[0].blobs["conv1"].diff
    for name, blobs in own.net.params.items():
        for j, blob in enumerate(blobs):
            assert np.array_equal(shared.net.params[name][j].data, blob.data), f"{name} param {j}"


def test_dual_memory_keeps_u_per_sample(files):
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP dual_memory: true', tmp_path, net)
    _, net2 = run_pair(param, tmp_path / "dual.prototxt", 10, weights=weights)
    assert len(net2.admm.u) == 64                      # every record of the 64-record set was seen
    assert all(u.shape == (3, 3, 3) for u in net2.admm.u.values())


def params_of(solver):
    return {name: [blob.data.copy() for blob in blobs] for name, blobs in solver.net.params.items()}


def assert_params(after, before, equal, who):
    for name, blobs in before.items():
        for j, data in enumerate(blobs):
            same = np.array_equal(after[name][j], data)
            assert same == equal, f"{who}'s {name} param {j} {'changed' if equal else 'did not change'}"


def test_alternation_trains_net1_for_k1_iterations_then_net2_for_k2(files):
    # k1 = 1, k2 = 2: iteration 0 is net1's turn, iterations 1 and 2 are net2's.
    tmp_path, net, weights = files
    start = dualnet.Net(str(net), dualnet.TRAIN, weights=weights)
    initial = {name: [b.data.copy() for b in blobs] for name, blobs in start.params.items()}
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP k1: 1 k2: 2', tmp_path, net)
    turn1_net1, turn1_net2 = run_pair(param, tmp_path / "dual.prototxt", 1, weights=weights)
    net1_half = {name: initial[name] for name in turn1_net1.net.params}
    net2_half = {name: initial[name] for name in turn1_net2.net.params}
    assert_params(params_of(turn1_net1), net1_half, equal=False, who="net1 in its turn")
    assert_params(params_of(turn1_net2), net2_half, equal=True, who="net2 in net1's turn")
    turn2_net1, turn2_net2 = run_pair(param, tmp_path / "dual.prototxt", 3, weights=weights)
    assert_params(params_of(turn2_net1), params_of(turn1_net1), equal=True, who="net1 in net2's turn")
    assert_params(params_of(turn2_net2), net2_half, equal=False, who="net2 in its turn")


def against_fake_peer_of(files, role, dual, peer, prepare=None):
    """`role` of a LOCKSTEP dual solver cut at pool1 with `dual` trains one iteration against
    peer(param, split, address); returns {role: its solver, other role: what peer returned}."""
    tmp_path, net, weights = files
    param = dual_param(f'split_at: "pool1" schedule: LOCKSTEP {dual}', tmp_path, net)
    source = str(tmp_path / "dual.prototxt")
    split = build_split(param, source)
    return raise_any(against_fake_peer(role, param, source, split, lambda address: peer(param, split, address), 1,
                                       weights=weights, prepare=prepare))


def dual_layer_against_fake_net2(files, consistency, target):
    """net1 (DUAL_LAYER, cut pool1, copy ip1_dual) trains one iteration on `target` from a fake net2;
    returns (net1 solver, ip1_dual's weight and bias before the update)."""
    before = {}

    def net2(param, split, address):
        fake = FakeNet2(param, split, address)
        try:
            assert fake.link.recv({MSG.FORWARD}, timeout=30).iter == 0
            fake.answer(0, target)
        finally:
            fake.link.close()

    def remember(solver):
        before.update(W=solver.net.params["ip1_dual"][0].data.copy(), b=solver.net.params["ip1_dual"][1].data.copy())

    out = against_fake_peer_of(files, "net1", f"mode: DUAL_LAYER {consistency}", net2, prepare=remember)
    return out["net1"], before["W"], before["b"]


@pytest.mark.parametrize("normalize", [False, True])
def test_dual_layer_consistency_loss_compares_net1s_copy_with_net2s_target(files, normalize):
    # loss = w/(2N) sum_n ||y_n - t_n||^2 [/ ||t_n||],  y = pool1 W^T + b (net1's copy ip1_dual);
    # dW = w/N sum_n (y_n - t_n) [/ ||t_n||] x_n^T; the first SGD step: W - lr (dW + decay W).
    w, lr, decay, n = 0.5, 0.1, 0.001, 8
    target = np.random.default_rng(7).standard_normal((n, 6)).astype(np.float32)
    consistency = f"consistency_weight: {w}" + (" normalize_consistency: true" if normalize else "")
    net1, W, b = dual_layer_against_fake_net2(files, consistency, target)
    x = net1.net.blobs["pool1"].data.reshape(n, -1).astype(np.float64)
    y = x @ W.T.astype(np.float64) + b
    scale = 1 / np.linalg.norm(target, axis=1, keepdims=True) if normalize else np.ones((n, 1))
    loss = ((y - target) ** 2 * scale).sum() / (2 * n)
    np.testing.assert_allclose(float(net1.net.blobs["consistency_loss"].data), loss, rtol=1e-5)
    np.testing.assert_allclose(net1.smoothed_loss, w * loss, rtol=1e-5)
    dW = w / n * ((y - target) * scale).T @ x
    np.testing.assert_allclose(net1.net.params["ip1_dual"][0].data, W - lr * (dW + decay * W), rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------ z-steps and rho


def net2_z_update(files, dual):
    """net2 trains one iteration on FORWARD 0 of a fake net1; returns (the delta it sent, a, labels)."""
    batch = {}

    def net1(param, split, address):
        fake = FakeNet1(param, split, address)
        try:
            batch["a"], batch["labels"] = fake.batch(0)
            fake.forward(0)
            return fake.target()
        finally:
            fake.link.close()

    out = against_fake_peer_of(files, "net2", dual, net1)
    return out["net1"].arrays["delta"], batch["a"], batch["labels"]


def test_many_z_steps_with_a_large_rho_follow_the_proximal_update(files):
    # K = 3 z-steps, rho = 1000, eta = N / w = 8, c = eta rho / N = 1000 (the explicit step would multiply
    # z - a by 1 - c = -999 per step). Independently: z_0 = a; y_k = (z_k + c a) / (1 + c) (y_0 = z_0);
    # z_{k+1} = y_k - eta grad_z l(f2(y_k)); the delta sent is z_3 - z_0.
    tmp_path, net, weights = files
    delta, a, labels = net2_z_update(files, "z_steps: 3 rho: 1000")
    eta, c = 8.0, 8.0 * 1000 / 8
    split = build_split(dual_param('split_at: "pool1"', tmp_path, net), str(tmp_path / "dual.prototxt"))
    f2 = dualnet.Net(split.net2, dualnet.TRAIN, weights=weights)
    z = a.astype(np.float32)
    for k in range(3):
        y = z if k == 0 else (z + c * a) / (1 + c)
        f2.forward(pool1=y, **labels)
        z = y - eta * f2.backward()["pool1"]
    assert np.isfinite(delta).all()
    np.testing.assert_allclose(delta, z - a, rtol=1e-4, atol=1e-6)


def test_training_with_many_z_steps_and_a_growing_rho_stays_finite(files):
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP z_steps: 4 rho: 1 rho_growth: 10 rho_interval: 2 '
                       'rho_max: 1000', tmp_path, net)
    net1, net2 = run_pair(param, tmp_path / "dual.prototxt", 8, weights=weights)
    assert net2.admm.rho == 1000
    # The explicit step multiplied z - a by 1 - rho per z-step: here net1's loss reached 1e34 and net2's
    # weights 1e17 within these 8 iterations. The xavier-initialised weights start below 1.
    assert net1.smoothed_loss < 10 and net2.smoothed_loss < 10, (net1.smoothed_loss, net2.smoothed_loss)
    for role in (net1, net2):
        for name, blobs in role.net.params.items():
            assert max(np.abs(b.data).max() for b in blobs) < 10, f"{role.role} {name}"


@pytest.mark.parametrize("iterations,rho", [(1, 1), (2, 10), (3, 10), (4, 100), (6, 500)])
def test_rho_grows_by_rho_growth_every_rho_interval_up_to_rho_max(files, iterations, rho):
    # iteration i uses min(rho * growth ** (i // interval), rho_max); net2.admm.rho after `iterations`
    # iterations is the value iteration `iterations` uses.
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP rho: 1 rho_growth: 10 rho_interval: 2 rho_max: 500',
                       tmp_path, net)
    _net1, net2 = run_pair(param, tmp_path / "dual.prototxt", iterations, weights=weights)
    assert net2.admm.rho == pytest.approx(rho)


def test_rho_and_the_dual_variable_are_restored_from_a_snapshot(files):
    tmp_path, net, weights = files
    param = dual_param('split_at: "pool1" schedule: LOCKSTEP dual_memory: true rho: 1 rho_growth: 10 '
                       'rho_interval: 2', tmp_path, net)
    param.snapshot = 4
    source = str(tmp_path / "dual.prototxt")
    _net1, net2 = run_pair(param, source, 4, weights=weights)
    assert net2.admm.rho == pytest.approx(100) and len(net2.admm.u) == 32      # 4 batches of 8 records
    split = build_split(param, source)
    resumed = Net2Role(param, source, split, None, Wire(split, param.dual_param.encoding, "net2"))
    assert resumed.admm.rho == 1 and not resumed.admm.u
    resumed.restore(str(tmp_path / "snap_net2_iter_4.solverstate"))
    assert resumed.admm.rho == pytest.approx(100)
    assert sorted(resumed.admm.u) == sorted(net2.admm.u)
    for record, u in net2.admm.u.items():
        np.testing.assert_array_equal(resumed.admm.u[record], u)


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
