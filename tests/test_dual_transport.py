"""The link over real sockets (tcp://127.0.0.1, random ports): handshake,
rejection of bad messages with the link still usable, dead and busy peers
(subprocesses), CurveZMQ keys, and the loopback rule. Every wait is bounded:
peer_timeout is 1 s and each receive has a timeout or a peer death to end it."""
import contextlib
import logging
import os
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zmq

from dualnet import dualnet_pb2 as pb
from dualnet.dual import protocol as P
from dualnet.dual.keys import KeysError, client_keys, make_keys, server_keys
from dualnet.dual.transport import Link, LinkReset, PeerStopped, is_loopback
from dualnet.errors import PeerError, ProtocolError
from test_dual_protocol import forward_arrays, hmac_frames, small_hello

PEER_TIMEOUT = 1.0
FAST = dict(peer_timeout=PEER_TIMEOUT, heartbeat_interval=0.1, linger=0.2)
LOOPBACK = "tcp://127.0.0.1:*"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def paired(server_hello=None, client_hello=None, server_options=None, client_options=None):
    """A net2 Link bound on loopback and a net1 Link connected to it, handshake done."""
    server = Link.bind(LOOPBACK, **{**FAST, **(server_options or {})})
    client = Link.connect(server.address, **{**FAST, **(client_options or {})})
    try:
        with ThreadPoolExecutor(1) as pool:
            accepted = pool.submit(server.handshake, server_hello or small_hello(), 5.0)
            client.handshake(client_hello or small_hello(), 5.0)
            accepted.result(timeout=10)
        yield server, client
    finally:
        client.close()
        server.close()


class RawNet1:
    """A net1 that sends whatever frames a test makes: a bare DEALER with a protocol.Session."""

    def __init__(self, address):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.socket.routing_id = b"net1-raw"
        self.socket.connect(address)
        self.session = P.Session("net1")

    def handshake(self, hello):
        self.socket.send_multipart(self.session.serialize(P.HELLO, 0, hello=hello))
        assert self.socket.poll(5000), "net2 did not answer HELLO"
        welcome = self.session.deserialize(self.socket.recv_multipart(), {P.WELCOME})
        self.session.key = welcome.session_key
        self.session.expectations = P.Expectations.from_hello(hello)

    def forward(self, iteration, header_edit=None, payload=None):
        """FORWARD frames, re-signed after `header_edit` / with `payload` replaced."""
        frames = [bytes(f) for f in self.session.serialize(P.FORWARD, iteration, forward_arrays())]
        header = pb.WireHeader.FromString(frames[0])
        if header_edit:
            header_edit(header)
        header_bytes = header.SerializeToString()
        body = frames[2:] if payload is None else payload
        return [header_bytes, hmac_frames(self.session.key, header_bytes, body)] + body

    def receive(self, timeout=5.0):
        assert self.socket.poll(int(timeout * 1000)), "nothing came"
        return self.socket.recv_multipart()

    def close(self):
        self.socket.close()
        self.context.term()


@contextlib.contextmanager
def raw_pair(server_options=None):
    server = Link.bind(LOOPBACK, **{**FAST, **(server_options or {})})
    raw = RawNet1(server.address)
    try:
        with ThreadPoolExecutor(1) as pool:
            accepted = pool.submit(server.handshake, small_hello(), 5.0)
            raw.handshake(small_hello())
            accepted.result(timeout=10)
        yield server, raw
    finally:
        raw.close()
        server.close()


# ---------------------------------------------------------------------------- a working link


def test_forward_and_target_cross_the_link_and_are_counted():
    with paired() as (server, client):
        arrays = forward_arrays()
        sent = client.send(P.FORWARD, 0, arrays, phase=pb.TRAIN)
        message = server.recv({P.FORWARD}, timeout=5, iterations=0)
        np.testing.assert_array_equal(message.arrays["cut"], arrays["cut"])
        assert sent == message.nbytes > arrays["cut"].nbytes
        delta = np.full((4, 3, 2, 2), 0.5, np.float32)
        server.send(P.TARGET, 0, {"delta": delta}, values={"loss": 2.5})
        answer = client.recv(P.TARGET, timeout=5)
        np.testing.assert_array_equal(answer.arrays["delta"], delta)
        assert answer.values == {"loss": 2.5}
        assert client.bytes_sent == server.bytes_received and server.bytes_sent == client.bytes_received


def test_a_live_but_silent_peer_times_out_only_the_call_that_asked():
    with paired() as (server, client):
        with pytest.raises(PeerError, match=r"no FORWARD from net1 at 127.0.0.1 within 0.3 s \(it is alive"):
            server.recv(P.FORWARD, timeout=0.3)
        client.send(P.FORWARD, 1, forward_arrays())
        assert server.recv(P.FORWARD, timeout=5).iter == 1


def test_bye_and_error_stop_the_peer_with_iteration_and_reason():
    with paired() as (server, client):
        client.send(P.BYE, 7, reason="max_iter reached")
        with pytest.raises(PeerStopped) as stopped:
            server.recv(P.FORWARD, timeout=5)
        assert (stopped.value.iteration, stopped.value.reason, stopped.value.clean) == (7, "max_iter reached", True)
        server.send(P.ERROR, 7, reason="NaN loss")
        with pytest.raises(PeerStopped, match="stopped on an error at iteration 7: NaN loss") as failed:
            client.recv(P.TARGET, timeout=5)
        assert not failed.value.clean


# ---------------------------------------------------------------------------- bad messages are dropped


def _shape(header):
    del header.arrays[2].shape[:]
    header.arrays[2].shape.extend([4, 3, 4, 1])        # same byte count, other shape


def _dtype(header):
    header.arrays[0].dtype = pb.ArrayHeader.FLOAT32     # ids as float32: 16 bytes, int64 agreed


def _unknown_type(header):
    header.ClearField("type")
    header.MergeFromString(b"\x08\x63")


def _version(header):
    header.protocol_version = 99


def _bad_signature(frames):
    frames[-1] = bytes([frames[-1][0] ^ 1]) + frames[-1][1:]
    return frames


BAD_MESSAGES = {
    "malformed header": (lambda raw: [b"\xff\xfe junk", hmac_frames(raw.session.key, b"\xff\xfe junk", [])],
                         "is not a WireHeader"),
    "wrong shape": (lambda raw: raw.forward(3, _shape), "array 'cut' has shape (4, 3, 4, 1), agreed (4, 3, 2, 2)"),
    "wrong dtype": (lambda raw: raw.forward(3, _dtype), "array 'ids' is float32, agreed int64"),
    "byte count": (lambda raw: raw.forward(3, payload=[bytes(32), bytes(16), bytes(100)]),
                   "array 'cut' of shape (4, 3, 2, 2) needs 192 bytes, the header says 192 and the frame has 100"),
    "unknown type": (lambda raw: raw.forward(3, _unknown_type), "unknown message type"),
    "bad signature": (lambda raw: _bad_signature(raw.forward(3)), "bad signature"),
    "wrong version": (lambda raw: raw.forward(3, _version), "wire protocol version 99"),
}


@pytest.mark.parametrize("kind", sorted(BAD_MESSAGES))
def test_a_bad_message_is_rejected_and_the_link_stays_usable(kind):
    make, words = BAD_MESSAGES[kind]
    with raw_pair() as (server, raw):
        raw.socket.send_multipart(make(raw))
        with pytest.raises(ProtocolError) as rejected:
            server.recv(P.FORWARD, timeout=5)
        assert words in str(rejected.value) and "net1 at 127.0.0.1" in str(rejected.value)
        raw.socket.send_multipart(raw.forward(4))
        assert server.recv(P.FORWARD, timeout=5).iter == 4


def test_a_frame_over_max_message_bytes_is_dropped_by_zeromq_and_reported():
    limit = P.frame_limit(small_hello())
    with raw_pair(server_options={"max_message_bytes": limit}) as (server, raw):
        big = raw.forward(3, payload=[bytes(32), bytes(16), bytes(4 * limit)])
        raw.socket.send_multipart(big)
        with pytest.raises(LinkReset, match="over max_message_bytes=65536"):
            server.recv(P.FORWARD, timeout=5)
        raw.socket.send_multipart(raw.forward(4))
        assert server.recv(P.FORWARD, timeout=5).iter == 4


def test_both_ends_report_a_reset_and_carry_on_after_a_resend():
    limit = P.frame_limit(small_hello())
    with paired(server_options={"max_message_bytes": limit}) as (server, client):
        agreed = client.expectations
        client.expectations = P.Expectations().expect(P.FORWARD, "cut", "<f4", (limit,))
        client.send(P.FORWARD, 0, {"cut": np.zeros(limit, np.float32)})      # 4x the limit
        with pytest.raises(LinkReset):
            server.recv(P.FORWARD, timeout=5)
        with pytest.raises(LinkReset):
            client.recv(P.TARGET, timeout=5)
        client.expectations = agreed
        client.send(P.FORWARD, 0, forward_arrays())                          # the resend
        assert server.recv(P.FORWARD, timeout=5).iter == 0
        server.send(P.TARGET, 0, {"delta": np.zeros((4, 3, 2, 2), np.float32)})
        assert client.recv(P.TARGET, timeout=5).iter == 0


def test_a_second_net1_is_turned_away_and_the_pair_is_unaffected():
    with paired() as (server, client):
        stranger = RawNet1(server.address)
        try:
            stranger.socket.send_multipart(stranger.session.serialize(P.HELLO, 0, hello=small_hello()))
            with pytest.raises(PeerError, match="no FORWARD"):     # net2 reads and answers the stranger
                server.recv(P.FORWARD, timeout=0.5)
            reply = stranger.session.deserialize(stranger.receive(), {P.ERROR})
            assert "already paired with net1 at 127.0.0.1" in reply.reason
            client.send(P.FORWARD, 2, forward_arrays())
            assert server.recv(P.FORWARD, timeout=5).iter == 2
        finally:
            stranger.close()


# ---------------------------------------------------------------------------- handshake


HELLO_FAMILIES = {
    "versions": (dict(dualnet_version="0.0.9", protocol_version=2),
                 "dualnet version 0.1.0 (net1) vs 0.0.9 (net2); wire protocol version 1 (net1) vs 2 (net2)"),
    "cut shape": (dict(cut_shape=[4, 3, 2, 3]), "cut shape (TRAIN) (4, 3, 2, 2) (net1) vs (4, 3, 2, 3) (net2)"),
    "batch and labels": (dict(batch_size=8, label_shape=[8]),
                         "batch size 4 (net1) vs 8 (net2); label shape (TRAIN) (4,) (net1) vs (8,) (net2)"),
    "mode and schedule": (dict(mode=pb.DualParameter.DUAL_LAYER, schedule=pb.DualParameter.PIPELINED),
                          "mode unset (net1) vs DUAL_LAYER (net2); schedule unset (net1) vs PIPELINED (net2)"),
    "encoding": (dict(encoding=P.SIGN_BITS), "encoding FLOAT32 (net1) vs SIGN_BITS (net2)"),
    "resume iteration": (dict(resume_iter=500), "resume iteration 0 (net1) vs 500 (net2)"),
}


@pytest.mark.parametrize("family", sorted(HELLO_FAMILIES))
def test_a_mismatched_hello_stops_both_sides_with_the_differences(family):
    fields, expected = HELLO_FAMILIES[family]
    server = Link.bind(LOOPBACK, **FAST)
    client = Link.connect(server.address, **FAST)
    try:
        with ThreadPoolExecutor(1) as pool:
            accepted = pool.submit(server.handshake, small_hello(**fields), 5.0)
            with pytest.raises(PeerError) as on_net1:
                client.handshake(small_hello(), 5.0)
            with pytest.raises(PeerError) as on_net2:
                accepted.result(timeout=10)
    finally:
        client.close()
        server.close()
    assert str(on_net1.value) == str(on_net2.value) == f"net1 and net2 disagree: {expected}"


def test_connecting_to_nothing_fails_within_the_timeout():
    with Link.connect("tcp://127.0.0.1:9", **FAST) as client:
        started = time.monotonic()
        with pytest.raises(PeerError, match="no answer from net2 at tcp://127.0.0.1:9 within 0.5 s"):
            client.handshake(small_hello(), timeout=0.5)
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------------------- dead and busy peers

PEER_SCRIPT = textwrap.dedent("""
    import ctypes, sys, time
    import numpy as np
    from dualnet import dualnet_pb2 as pb
    from dualnet.dual import protocol as P
    from dualnet.dual.transport import Link, PeerStopped
    role, address, behaviour, hello_hex = sys.argv[1:5]
    options = dict(peer_timeout=%(timeout)r, heartbeat_interval=0.1, linger=0.2)
    hello = pb.Hello.FromString(bytes.fromhex(hello_hex))
    if role == "net2":
        link = Link.bind(address, role="net2", **options)
        print(link.address, flush=True)
    else:
        link = Link.connect(address, role="net1", **options)
    link.handshake(hello, timeout=30)
    ids, labels = np.arange(4), np.zeros(4, np.float32)
    cut = np.ones((4, 3, 2, 2), np.float32)
    if role == "net2":
        link.send(P.TARGET, 0, {"delta": cut})
    else:
        link.send(P.FORWARD, 0, {"ids": ids, "label": labels, "cut": cut})
    if behaviour == "busy":
        # Hold the GIL in one C call (ctypes.PyDLL keeps it) for 3 peer timeouts.
        ctypes.PyDLL(None).usleep(int(3 * %(timeout)r * 1e6))
        link.send(P.FORWARD, 1, {"ids": ids, "label": labels, "cut": cut})
        try:
            link.recv({P.TARGET}, timeout=30)
        except PeerStopped:
            pass
    else:
        time.sleep(60)
    link.close()
""") % {"timeout": PEER_TIMEOUT}


def start_peer(tmp_path, role, address, behaviour):
    script = tmp_path / "peer.py"
    script.write_text(PEER_SCRIPT)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, str(script), role, address, behaviour,
                             small_hello().SerializeToString().hex()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def read_address(peer, timeout=30):
    ready, _, _ = select.select([peer.stdout], [], [], timeout)
    assert ready, "the peer did not start"
    return peer.stdout.readline().strip()


def stop(peer):
    if peer.poll() is None:
        peer.kill()
    peer.communicate(timeout=10)


def test_a_killed_net1_is_reported_within_peer_timeout(tmp_path):
    with Link.bind(LOOPBACK, **FAST) as server:
        peer = start_peer(tmp_path, "net1", server.address, "hang")
        try:
            server.handshake(small_hello(), timeout=30)
            assert server.recv(P.FORWARD, timeout=10).iter == 0
            os.kill(peer.pid, signal.SIGKILL)
            peer.wait(timeout=10)
            killed = time.monotonic()
            with pytest.raises(PeerError, match="net1 at 127.0.0.1 has been unreachable .* may have died"):
                server.recv(P.FORWARD, timeout=10 * PEER_TIMEOUT)
            assert time.monotonic() - killed < PEER_TIMEOUT + 3
        finally:
            stop(peer)


def test_a_frozen_net1_is_reported_after_its_heartbeats_stop(tmp_path):
    with Link.bind(LOOPBACK, **FAST) as server:
        peer = start_peer(tmp_path, "net1", server.address, "hang")
        try:
            server.handshake(small_hello(), timeout=30)
            assert server.recv(P.FORWARD, timeout=10).iter == 0
            os.kill(peer.pid, signal.SIGSTOP)          # alive, connection open, but no PONG any more
            frozen = time.monotonic()
            with pytest.raises(PeerError, match="net1 at 127.0.0.1 has been unreachable .* may have died"):
                server.recv(P.FORWARD, timeout=10 * PEER_TIMEOUT)
            assert time.monotonic() - frozen < PEER_TIMEOUT + 3
        finally:
            stop(peer)


def test_a_killed_net2_is_reported_within_peer_timeout(tmp_path):
    peer = start_peer(tmp_path, "net2", LOOPBACK, "hang")
    try:
        with Link.connect(read_address(peer), **FAST) as client:
            client.handshake(small_hello(), timeout=30)
            assert client.recv(P.TARGET, timeout=10).iter == 0
            os.kill(peer.pid, signal.SIGKILL)
            peer.wait(timeout=10)
            killed = time.monotonic()
            with pytest.raises(PeerError, match="net2 at tcp://127.0.0.1:[0-9]+ has been unreachable"):
                client.recv(P.TARGET, timeout=10 * PEER_TIMEOUT)
            assert time.monotonic() - killed < PEER_TIMEOUT + 3
    finally:
        stop(peer)


def test_a_peer_busy_for_three_peer_timeouts_holding_the_gil_is_not_taken_for_dead(tmp_path):
    with Link.bind(LOOPBACK, **FAST) as server:
        peer = start_peer(tmp_path, "net1", server.address, "busy")
        try:
            server.handshake(small_hello(), timeout=30)
            assert server.recv(P.FORWARD, timeout=10).iter == 0
            waited = time.monotonic()
            assert server.recv(P.FORWARD, timeout=10 * PEER_TIMEOUT).iter == 1
            assert time.monotonic() - waited > 2 * PEER_TIMEOUT, "the peer was not silent for long"
            server.send(P.BYE, 1, reason="test over")
            assert peer.wait(timeout=10) == 0
        finally:
            stop(peer)


# ---------------------------------------------------------------------------- keys and CurveZMQ


def test_make_keys_writes_private_secrets_and_the_allow_list(tmp_path):
    folder = str(tmp_path / "keys")
    make_keys(folder)
    for name in ("server.key_secret", "client.key_secret"):
        assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o600
    public, _, authorized = server_keys(folder)
    client_public, _, server_public = client_keys(folder)
    assert server_public == public
    with open(os.path.join(authorized, "client.key")) as listed, open(os.path.join(folder, "client.key")) as own:
        assert listed.read() == own.read()
    assert sorted(n for n in os.listdir(folder) if not n.startswith(".")) == [
        "authorized_clients", "client.key", "client.key_secret", "server.key", "server.key_secret"]


def test_make_keys_refuses_to_overwrite_existing_keys(tmp_path):
    folder = str(tmp_path / "keys")
    make_keys(folder)
    with open(os.path.join(folder, "server.key_secret")) as handle:
        before = handle.read()
    with pytest.raises(KeysError, match="already holds keys .*server.key_secret.*refusing to overwrite"):
        make_keys(folder)
    with open(os.path.join(folder, "server.key_secret")) as handle:
        assert handle.read() == before


def test_a_missing_key_file_says_how_to_make_it(tmp_path):
    with pytest.raises(KeysError, match="has no server.key_secret, which net2 needs.*dualnet keys --out"):
        Link.bind(LOOPBACK, keys=str(tmp_path), **FAST)


def test_curve_link_with_the_right_keys_works(tmp_path):
    folder = str(tmp_path / "keys")
    make_keys(folder)
    with paired(server_options={"keys": folder}, client_options={"keys": folder}) as (server, client):
        assert server.security == client.security == "curve"
        client.send(P.FORWARD, 0, forward_arrays())
        assert server.recv(P.FORWARD, timeout=5).iter == 0


def test_an_unknown_client_key_is_refused_and_net2_keeps_waiting(tmp_path, caplog):
    good, bad = str(tmp_path / "good"), str(tmp_path / "bad")
    make_keys(good)
    make_keys(bad)
    os.replace(os.path.join(good, "server.key"), os.path.join(bad, "server.key"))   # the real net2, another key
    os.link(os.path.join(bad, "server.key"), os.path.join(good, "server.key"))
    logger = logging.getLogger("dualnet.dual")
    logger.addHandler(caplog.handler)
    try:
        with Link.bind(LOOPBACK, keys=good, **FAST) as server, ThreadPoolExecutor(1) as pool:
            accepted = pool.submit(server.handshake, small_hello(), 20.0)
            with Link.connect(server.address, keys=bad, **FAST) as intruder:
                started = time.monotonic()
                with pytest.raises(PeerError, match="did not accept net1's CurveZMQ key"):
                    intruder.handshake(small_hello(), timeout=10)
                assert time.monotonic() - started < PEER_TIMEOUT + 2
            with Link.connect(server.address, keys=good, **FAST) as client:
                client.handshake(small_hello(), timeout=10)
                assert accepted.result(timeout=10).role == "net1"
                client.send(P.FORWARD, 0, forward_arrays())
                assert server.recv(P.FORWARD, timeout=5).iter == 0
    finally:
        logger.removeHandler(caplog.handler)
    assert any("Refused a connection from 127.0.0.1" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------- the loopback rule


@pytest.mark.parametrize("address,loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.0.9:5555", True), ("tcp://[::1]:5555", True),
    ("tcp://localhost:5555", True), ("ipc:///tmp/dualnet", True), ("inproc://pair", True),
    ("tcp://10.0.0.2:5555", False), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://net2host:5555", False)])
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


def test_off_loopback_without_keys_is_refused():
    for make in (lambda: Link.connect("tcp://10.255.255.1:5555", **FAST),
                 lambda: Link.bind("tcp://0.0.0.0:*", **FAST)):
        with pytest.raises(PeerError, match=r"not a loopback address.*dualnet keys --out DIR.*--insecure"):
            make()


def test_off_loopback_with_insecure_runs_plain_tcp_with_a_warning(caplog):
    logger = logging.getLogger("dualnet.dual")
    logger.addHandler(caplog.handler)
    try:
        with Link.connect("tcp://10.255.255.1:5555", insecure=True, **FAST) as link:
            assert link.security == "plain"
    finally:
        logger.removeHandler(caplog.handler)
    assert any("UNENCRYPTED" in r.getMessage() for r in caplog.records)
