"""The two roles over a real loopback link, in threads: requests are idempotent
by iteration (a resent FORWARD gets the cached TARGET and no second update, a
stale TARGET is ignored), the cut encodings train end to end and shrink the
wire traffic, a HELLO mismatch stops both roles naming the difference, a role
refuses the other role's snapshot, and a pair stopped by one side resumes
exactly where it stopped. Fake peers are bare Links speaking the protocol."""
import math
import re

import numpy as np
import pytest
import zmq

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.dual import protocol as P
from dualnet.dual.launch import build_split, hello_for
from dualnet.dual.roles import Net1Role, Net2Role, Wire
from dualnet.dual.transport import PeerStopped
from dualnet.errors import DualnetError, NumericalError, PeerError
from dual_harness import (FakeNet1, FakeNet2, against_fake_peer, free_address, in_threads, make_npz, open_role,
                          raise_any, run_pair, solver_param, small_net)
from test_dual_protocol import hmac_frames

MSG = pb.WireHeader

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


def params_of(solver):
    return {name: [blob.data.copy() for blob in blobs] for name, blobs in solver.net.params.items()}


# ------------------------------------------------------------------ idempotent requests


def against_fake_peer_of(files, role, peer, steps=2, dual="", **link_options):
    """`role` of dual_solver(files, dual) trains `steps` iterations against peer(param, split, address)."""
    _tmp, _net, weights = files
    param, source = dual_solver(files, dual=dual)
    split = build_split(param, source)
    return against_fake_peer(role, param, source, split, lambda address: peer(param, split, address), steps,
                             weights=weights, **link_options)


def net2_against_fake_net1(files, steps_sent):
    """net2 trains 2 iterations on the FORWARDs `steps_sent`; returns (net2, [TARGET messages])."""
    def net1(param, split, address):
        fake = FakeNet1(param, split, address)
        try:
            for step in steps_sent:
                fake.forward(step)
            return [fake.target() for _ in steps_sent]
        finally:
            fake.link.close()

    out = raise_any(against_fake_peer_of(files, "net2", net1))
    return out["net2"], out["net1"]


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


def net1_against_fake_net2(files, stale):
    """net1 trains 2 iterations; with `stale`, a second TARGET 0 (another delta) precedes TARGET 1."""
    def net2(param, split, address):
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

    return raise_any(against_fake_peer_of(files, "net1", net2))["net1"]


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


# ------------------------------------------------------------------ a misbehaving or stuck peer never hangs a role


class RawNet1:
    """A net1 that pairs properly, then sends whatever frames the test makes: a bare DEALER with a Session."""

    def __init__(self, param, split, address):
        self.hello = hello_for("net1", param, split, 0)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.routing_id = b"net1-raw"      # kept across a reconnection, as Link's net1 does
        self.socket.connect(address)
        self.session = P.Session("net1")
        self.socket.send_multipart(self.session.serialize(P.HELLO, 0, hello=self.hello))
        assert self.socket.poll(30000), "net2 did not answer HELLO"
        self.session.key = self.session.deserialize(self.socket.recv_multipart(), {P.WELCOME}).session_key
        self.session.expectations = P.Expectations.from_hello(self.hello, label_names=split.label_blobs)
        self.shape = tuple(split.cut_shapes[pb.TRAIN])

    def forward(self, step, header_edit=None):
        """FORWARD `step` (zeros), re-signed after `header_edit(header)`."""
        arrays = {"cut": np.zeros(self.shape, np.float32), "ids": np.arange(self.shape[0], dtype=np.int64),
                  "label": np.zeros(self.shape[0], np.float32)}
        frames = [bytes(f) for f in self.session.serialize(P.FORWARD, step, arrays, phase=pb.TRAIN)]
        if header_edit:
            header = pb.WireHeader.FromString(frames[0])
            header_edit(header)
            frames[0] = header.SerializeToString()
            frames[1] = hmac_frames(self.session.key, frames[0], frames[2:])
        self.socket.send_multipart(frames)

    def error(self, timeout=60):
        """The reason of the ERROR net2 sends (anything else before it is skipped)."""
        while self.socket.poll(int(timeout * 1000)):
            message = self.session.deserialize(self.socket.recv_multipart(), {P.HEARTBEAT})
            if message.type == P.ERROR:
                return message.reason
        raise AssertionError(f"no ERROR from net2 within {timeout} s")

    def close(self):
        self.socket.close()
        self.context.term()


def net2_against_raw_net1(files, send, dual="", **link_options):
    """net2 (cut pool1 (8, 32, 4, 4)) paired with a RawNet1 that runs `send(raw)`;
    returns (net2's exception, the ERROR reason net1 got)."""
    def net1(param, split, address):
        raw = RawNet1(param, split, address)
        try:
            send(raw)
            return raw.error()
        finally:
            raw.close()

    out = against_fake_peer_of(files, "net2", net1, dual=dual, **link_options)
    assert isinstance(out["net2"], PeerError), f"net2 did not stop: {out['net2']!r}"
    assert isinstance(out["net1"], str), out["net1"]
    return str(out["net2"]), out["net1"]


def _cut_shape(header):
    cut = next(a for a in header.arrays if a.name == "cut")
    del cut.shape[:]
    cut.shape.extend([8, 32, 16, 1])           # the agreed byte count, another shape


def test_a_malformed_forward_stops_net2_and_tells_net1_what_was_rejected(files):
    error, told = net2_against_raw_net1(files, lambda raw: raw.forward(0, _cut_shape),
                                        peer_timeout=2.0, heartbeat_interval=0.25)
    for text in (error, told):
        assert "net2 rejected FORWARD from net1 at 127.0.0.1" in text, text
        assert "array 'cut' has shape (8, 32, 16, 1), agreed (8, 32, 4, 4)" in text, text
        assert "no valid message followed within 2 s (peer_timeout)" in text, text
    assert error == told


def test_a_live_peer_that_sends_nothing_stops_net2_after_progress_timeout(files):
    error, told = net2_against_raw_net1(files, lambda raw: None, dual="progress_timeout: 1")
    assert error == told
    assert told.startswith("net2 waited 1 s for FORWARD 0 from net1 at 127.0.0.1"), told
    assert "progress_timeout" in told


def test_messages_beyond_the_staleness_window_stop_net2(files):
    # LOCKSTEP: net1 has nothing in flight ahead of the FORWARD net2 waits for, so one may come early, not two.
    def ahead(raw):
        raw.forward(5)
        raw.forward(6)
    error, told = net2_against_raw_net1(files, ahead)
    assert error == told
    assert told.startswith("net2 waits for FORWARD 0, but net1 at 127.0.0.1"), told
    assert "sent 2 other messages first (FORWARD 5, FORWARD 6); at most 1 may arrive early (max_staleness 0)" in told


# ------------------------------------------------------------------ logs and warnings


def test_net1_logs_the_test_outputs_net2_computes_in_caffes_format(files, dualnet_log):
    _tmp, _net, weights = files
    param, source = dual_solver(files)
    param.test_iter.append(2)
    param.test_interval = 2
    run_pair(param, source, 3, weights=weights)
    caffe = re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)")    # Caffe's tools/extra/parse_log.py
    outputs = {role: [caffe.search(r.getMessage()).groups() for r in dualnet_log.records
                      if r.threadName == role and caffe.search(r.getMessage())] for role in ("net1", "net2")}
    # two tests (iterations 0 and 2), each: accuracy and loss, in net2's order and with net2's values
    assert [name for _k, name, _v in outputs["net1"]] == ["accuracy", "loss"] * 2
    assert outputs["net1"] == outputs["net2"]
    assert all(0 <= float(v) <= 1 for _k, name, v in outputs["net1"] if name == "accuracy")


@pytest.mark.parametrize("snapshot,warned", [(0, True), (5, False)])
def test_a_dual_role_without_periodic_snapshots_warns_at_start(files, dualnet_log, snapshot, warned):
    param, source = dual_solver(files, snapshot=snapshot)
    split = build_split(param, source)
    Net1Role(param, source, split, None, Wire(split, param.dual_param.encoding, "net1"))
    text = dualnet_log.text
    assert ("snapshot: 0" in text and "kill -9" in text and "set snapshot: N" in text) == warned, text


def test_a_non_finite_target_from_net2_is_blamed_on_net2_not_on_base_lr(files):
    def net2(param, split, address):
        fake = FakeNet2(param, split, address)
        try:
            fake.link.recv({MSG.FORWARD}, timeout=30)
            fake.answer(0, np.nan)
        finally:
            fake.link.close()

    out = against_fake_peer_of(files, "net1", net2, steps=1)
    assert isinstance(out["net1"], NumericalError), out["net1"]
    text = str(out["net1"])
    assert text.startswith("Iteration 0: net1's loss is nan; the target net2 sent back ('pool1_target') is not "
                           "finite: see net2's log"), text
    assert "base_lr" not in text
