"""The two roles over a real loopback link, in threads: requests are idempotent
by iteration (a resent FORWARD gets the cached TARGET and no second update, a
stale TARGET is ignored), the cut encodings train end to end and shrink the
wire traffic, a HELLO mismatch stops both roles naming the difference, a role
refuses the other role's snapshot, and a pair stopped by one side resumes
exactly where it stopped. Fake peers are bare Links speaking the protocol."""
import math
import threading

import numpy as np
import pytest

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.dual.launch import build_split, hello_for
from dualnet.dual.protocol import FLOAT32, Expectations, encode_cut, frame_limit
from dualnet.dual.roles import Net1Role, Net2Role, Wire
from dualnet.dual.transport import Link, PeerStopped
from dualnet.errors import DualnetError, PeerError
from dual_harness import free_address, make_npz, run_pair, solver_param, small_net

MSG = pb.WireHeader
LINK_OPTIONS = dict(peer_timeout=10.0, heartbeat_interval=0.5)

# conv1 has 32 channels so that the cut, pool1 (8, 32, 4, 4), dwarfs the ids,
# labels and header that travel with it: the encodings' ratios show in the bytes.

SOLVER = """
net: "{net}"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.001 lr_policy: "fixed"
max_iter: 100 display: 0 snapshot: {snapshot} snapshot_after_train: false random_seed: 3
snapshot_prefix: "{folder}/snap"
dual_param {{ split_at: "{cut}" schedule: LOCKSTEP {dual} }}
"""


@pytest.fixture
def files(tmp_path):
    npz = make_npz(tmp_path / "data.npz")
    net = tmp_path / "net.prototxt"
    net.write_text(small_net(npz, conv_outputs=32, pad=1))
    weights = tmp_path / "init.caffemodel"
    dualnet.Net(str(net), dualnet.TRAIN).save(str(weights))
    return tmp_path, net, str(weights)


def dual_solver(files, dual="", cut="pool1", snapshot=0):
    tmp_path, net, _weights = files
    path = tmp_path / "dual.prototxt"
    text = SOLVER.format(net=net, folder=tmp_path, cut=cut, dual=dual, snapshot=snapshot)
    path.write_text(text)
    return solver_param(text, path), str(path)


def open_role(role, param, source, split, address, weights=None, snapshot=None):
    """A role's solver (restored from `snapshot` if given) paired over a Link; closes the link on failure."""
    cls = Net1Role if role == "net1" else Net2Role
    solver = cls(param, source, split, None, Wire(split, param.dual_param.encoding, role), weights=weights)
    if snapshot:
        solver.restore(snapshot)
    hello = hello_for(role, param, split, solver.iter)
    options = dict(LINK_OPTIONS, max_message_bytes=frame_limit(hello))
    link = Link.bind(address, role=role, **options) if role == "net2" else Link.connect(address, role=role, **options)
    try:
        link.handshake(hello, timeout=30, expectations=Expectations.from_hello(hello, label_names=split.label_blobs))
    except BaseException:
        link.close()
        raise
    solver.link = link
    return solver, link


def in_threads(bodies):
    """Run {name: function()} in threads; returns {name: result or the exception raised}."""
    out = {}

    def run(name, body):
        try:
            out[name] = body()
        except BaseException as error:  # noqa: B902 - handed to the test
            out[name] = error

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in bodies.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a role did not finish within 60 s"
    return out


def params_of(solver):
    return {name: [blob.data.copy() for blob in blobs] for name, blobs in solver.net.params.items()}


# ------------------------------------------------------------------ idempotent requests


class FakeNet1:
    """net1 without a net: sends made-up pool1 activations over a bare Link."""

    def __init__(self, param, split, address):
        self.hello = hello_for("net1", param, split, 0)
        self.labels = split.label_blobs
        self.shape = tuple(split.cut_shapes[pb.TRAIN])
        self.link = Link.connect(address, role="net1", max_message_bytes=frame_limit(self.hello), **LINK_OPTIONS)
        self.link.handshake(self.hello, timeout=30,
                            expectations=Expectations.from_hello(self.hello, label_names=self.labels))

    def batch(self, step):
        rng = np.random.default_rng(100 + step)
        a = rng.random(self.shape, dtype=np.float32)
        labels = {name: rng.integers(0, 4, self.shape[0]).astype(np.float32) for name in self.labels}
        return a, labels

    def forward(self, step):
        a, labels = self.batch(step)
        arrays = dict(encode_cut(a, FLOAT32), ids=np.arange(self.shape[0], dtype=np.int64), **labels)
        self.link.send(MSG.FORWARD, step, arrays=arrays, phase=pb.TRAIN)

    def target(self):
        return self.link.recv({MSG.TARGET}, timeout=30)


def net2_against_fake_net1(files, steps_sent):
    """net2 trains 2 iterations on the FORWARDs `steps_sent`; returns (net2, [TARGET messages])."""
    _tmp, _net, weights = files
    param, source = dual_solver(files)
    split = build_split(param, source)
    address = free_address()
    net2 = {}

    def net2_body():
        solver, link = open_role("net2", param, source, split, address, weights=weights)
        net2["solver"] = solver
        try:
            solver.step(2)
        finally:
            link.close()

    def net1_body():
        fake = FakeNet1(param, split, address)
        try:
            for step in steps_sent:
                fake.forward(step)
            return [fake.target() for _ in steps_sent]
        finally:
            fake.link.close()

    out = in_threads({"net2": net2_body, "net1": net1_body})
    for result in out.values():
        if isinstance(result, BaseException):
            raise result
    return net2["solver"], out["net1"]


def test_a_duplicate_forward_gets_the_same_target_and_no_second_update(files):
    plain, plain_targets = net2_against_fake_net1(files, [0, 1])
    twice, targets = net2_against_fake_net1(files, [0, 0, 1])
    assert [t.iter for t in targets] == [0, 0, 1]
    np.testing.assert_array_equal(targets[1].arrays["delta"], targets[0].arrays["delta"])
    assert targets[1].values == targets[0].values
    np.testing.assert_array_equal(targets[2].arrays["delta"], plain_targets[1].arrays["delta"])
    assert twice.iter == plain.iter == 2
    for name, blobs in params_of(plain).items():
        for j, data in enumerate(blobs):
            np.testing.assert_allclose(twice.net.params[name][j].data, data, rtol=1e-6, atol=1e-7,
                                       err_msg=f"net2's {name} param {j}: updated more than once per iteration?")


class FakeNet2:
    """net2 without a net: answers FORWARDs with TARGETs of a given delta over a bare Link."""

    def __init__(self, param, split, address):
        self.hello = hello_for("net2", param, split, 0)
        self.shape = tuple(split.target_shapes[pb.TRAIN])
        self.link = Link.bind(address, role="net2", max_message_bytes=frame_limit(self.hello), **LINK_OPTIONS)
        self.link.handshake(self.hello, timeout=30,
                            expectations=Expectations.from_hello(self.hello, label_names=split.label_blobs))

    def answer(self, step, delta):
        self.link.send(MSG.TARGET, step, arrays={"delta": np.full(self.shape, delta, np.float32)},
                       values={"loss": 1.0}, phase=pb.TRAIN)


def net1_against_fake_net2(files, stale):
    """net1 trains 2 iterations; with `stale`, a second TARGET 0 (another delta) precedes TARGET 1."""
    _tmp, _net, weights = files
    param, source = dual_solver(files)
    split = build_split(param, source)
    address = free_address()
    net1 = {}

    def net2_body():
        fake = FakeNet2(param, split, address)
        try:
            assert fake.link.recv({MSG.FORWARD}, timeout=30).iter == 0
            fake.answer(0, -0.1)
            assert fake.link.recv({MSG.FORWARD}, timeout=30).iter == 1
            if stale:
                fake.answer(0, 5.0)
            fake.answer(1, -0.1)
        finally:
            fake.link.close()

    def net1_body():
        solver, link = open_role("net1", param, source, split, address, weights=weights)
        net1["solver"] = solver
        try:
            solver.step(2)
        finally:
            link.close()

    out = in_threads({"net2": net2_body, "net1": net1_body})
    for result in out.values():
        if isinstance(result, BaseException):
            raise result
    return net1["solver"]


def test_a_stale_target_at_net1_is_ignored(files):
    plain = net1_against_fake_net2(files, stale=False)
    with_stale = net1_against_fake_net2(files, stale=True)
    assert with_stale.iter == plain.iter == 2
    np.testing.assert_allclose(with_stale.net.params["conv1"][0].data, plain.net.params["conv1"][0].data,
                               rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ encodings


def train_bytes_per_iteration(files, encoding, iterations=3):
    _tmp, _net, weights = files
    param, source = dual_solver(files, dual=f"encoding: {encoding}")
    net1, net2 = run_pair(param, source, iterations, weights=weights)
    assert net1.iter == net2.iter == iterations
    for role in (net1, net2):
        assert math.isfinite(role.smoothed_loss), f"{role.role} {encoding}: loss {role.smoothed_loss}"
        for name, blobs in role.net.params.items():
            assert all(np.isfinite(b.data).all() for b in blobs), f"{role.role} {encoding}: {name} not finite"
    assert net1.train_bytes[0] == net2.train_bytes[1]       # what net1 sent is what net2 received
    return net1.train_bytes[0] / iterations


def test_sign_bits_and_float16_train_end_to_end_with_fewer_bytes(files):
    # pool1 (8, 32, 4, 4): 8 * 512 * 4 = 16384 bytes of float32 per FORWARD,
    # 8 * 8 uint64 words + 8 float32 scales = 544 bytes as sign bits.
    float32 = train_bytes_per_iteration(files, "FLOAT32")
    float16 = train_bytes_per_iteration(files, "FLOAT16")
    sign_bits = train_bytes_per_iteration(files, "SIGN_BITS")
    assert float32 > 16384
    assert float32 - float16 == pytest.approx(16384 / 2, abs=64)    # the cut halves; the rest is the same
    assert float32 >= 16 * sign_bits, f"FLOAT32 {float32:.0f} B vs SIGN_BITS {sign_bits:.0f} B per iteration"


# ------------------------------------------------------------------ handshake and snapshots


def pair_errors(files, dual1="", dual2="", cut1="pool1", cut2="pool1"):
    """Pair a net1 and a net2 set up differently; returns {role: error text}."""
    param1, source1 = dual_solver(files, dual=dual1, cut=cut1)
    split1 = build_split(param1, source1)
    param2, source2 = dual_solver(files, dual=dual2, cut=cut2)
    split2 = build_split(param2, source2)
    address = free_address()

    def body(role, param, source, split):
        def run():
            _solver, link = open_role(role, param, source, split, address)
            link.close()
        return run

    out = in_threads({"net2": body("net2", param2, source2, split2), "net1": body("net1", param1, source1, split1)})
    for role, result in out.items():
        assert isinstance(result, PeerError), f"{role} did not stop: {result!r}"
    return {role: str(error) for role, error in out.items()}


def test_a_different_encoding_stops_both_roles_naming_it(files):
    errors = pair_errors(files, dual1="encoding: FLOAT32", dual2="encoding: SIGN_BITS")
    for role, text in errors.items():
        assert "encoding FLOAT32 (net1) vs SIGN_BITS (net2)" in text, f"{role}: {text}"


def test_a_different_cut_stops_both_roles_naming_it(files):
    errors = pair_errors(files, cut1="pool1", cut2="ip1")
    for role, text in errors.items():
        assert "split_at pool1 (net1) vs ip1 (net2)" in text, f"{role}: {text}"


def test_a_role_refuses_the_other_roles_snapshot(files):
    tmp_path, _net, weights = files
    param, source = dual_solver(files, snapshot=2)
    run_pair(param, source, 2, weights=weights)
    split = build_split(param, source)
    for role, other in (("net1", "net2"), ("net2", "net1")):
        cls = Net1Role if role == "net1" else Net2Role
        solver = cls(param, source, split, None, Wire(split, param.dual_param.encoding, role))
        with pytest.raises(DualnetError, match=f"belongs to {other}, not {role}"):
            solver.restore(str(tmp_path / f"snap_{other}_iter_2.solverstate"))
        assert solver.iter == 0


def test_a_pair_stopped_by_net2_resumes_exactly_where_it_stopped(files):
    # net2 says BYE after 3 of 6 iterations; net1 is then mid-iteration with batch 3 drawn.
    # Both snapshot at 3; resuming both from there must give the weights of 6 uninterrupted
    # iterations (so net1 draws batch 3 again).
    tmp_path, _net, weights = files
    param, source = dual_solver(files)
    split = build_split(param, source)
    whole1, whole2 = run_pair(param, source, 6, weights=weights)

    address = free_address()

    def net2_body():
        solver, link = open_role("net2", param, source, split, address, weights=weights)
        try:
            solver.step(3)
            solver.snapshot()
            link.send(MSG.BYE, solver.iter, reason="net2 stops here")
        finally:
            link.close()

    def net1_body():
        solver, link = open_role("net1", param, source, split, address, weights=weights)
        try:
            solver.step(6)
        except PeerStopped as stopped:
            assert stopped.clean and stopped.iteration == 3
            solver.snapshot()
            return solver.iter
        finally:
            link.close()
        return "net1 did not see net2 stop"

    out = in_threads({"net2": net2_body, "net1": net1_body})
    assert out["net1"] == 3 and out["net2"] is None, out

    address = free_address()
    resumed = in_threads({
        role: (lambda role=role: open_role(role, param, source, split, address,
                                           snapshot=str(tmp_path / f"snap_{role}_iter_3.solverstate")))
        for role in ("net2", "net1")})
    for result in resumed.values():
        if isinstance(result, BaseException):
            raise result

    def finish(role):
        solver, link = resumed[role]
        try:
            assert solver.iter == 3
            solver.step(3)
            return solver
        finally:
            link.close()

    done = in_threads({role: (lambda role=role: finish(role)) for role in ("net2", "net1")})
    for role, whole in (("net1", whole1), ("net2", whole2)):
        assert not isinstance(done[role], BaseException), done[role]
        assert done[role].iter == 6
        for name, blobs in params_of(whole).items():
            for j, data in enumerate(blobs):
                np.testing.assert_allclose(done[role].net.params[name][j].data, data, rtol=1e-5, atol=1e-6,
                                           err_msg=f"{role} {name} param {j} after resuming at 3")
