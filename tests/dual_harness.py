"""Run both roles of a dual net in one process (a thread each, loopback TCP),
or one role against a fake peer (a bare Link speaking the protocol)."""
import socket
import threading

import numpy as np

from dualnet import dualnet_pb2 as pb
from dualnet.dual.launch import build_split, hello_for
from dualnet.dual.protocol import FLOAT32, Expectations, encode_cut, frame_limit
from dualnet.dual.roles import Net1Role, Net2Role, Wire
from dualnet.dual.transport import Link
from dualnet.io import parse_solver_text

MSG = pb.WireHeader


def free_address():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def make_npz(path, records=64, shape=(1, 8, 8), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, data=rng.integers(0, 255, (records,) + shape).astype(np.uint8),
             label=rng.integers(0, classes, records))
    return path


SMALL_NET = """
name: "{name}"
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
        transform_param {{ scale: 0.00390625 }} data_param {{ source: "{train}" batch_size: 8 backend: NPZ }} }}
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
        transform_param {{ scale: 0.00390625 }} data_param {{ source: "{test}" batch_size: 4 backend: NPZ }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param {{ num_output: {conv_outputs} kernel_size: 3 pad: {pad} weight_filler {{ type: "xavier" }}
                             bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
        inner_product_param {{ num_output: 6 weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" value: 0.1 }} }} }}
layer {{ name: "relu2" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
        inner_product_param {{ num_output: 4 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "acc" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy" include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""


def small_net(train, test=None, conv_outputs=3, pad=0, name="small"):
    """Prototxt of a small conv / pool / inner-product net on NPZ data (batch 8, TEST batch 4)."""
    return SMALL_NET.format(name=name, train=train, test=test or train, conv_outputs=conv_outputs, pad=pad)


def solver_param(text, path):
    return parse_solver_text(text, str(path))


LINK_OPTIONS = dict(peer_timeout=10.0, heartbeat_interval=0.5)


def open_role(role, param, source, split, address, weights=None, snapshot=None, **link_options):
    """A role's solver (restored from `snapshot` if given) paired over a Link: (solver, link).
    `link_options` override LINK_OPTIONS; the link is closed if pairing fails."""
    cls = Net1Role if role == "net1" else Net2Role
    solver = cls(param, source, split, None, Wire(split, param.dual_param.encoding, role), weights=weights)
    if snapshot:
        solver.restore(snapshot)
    hello = hello_for(role, param, split, solver.iter)
    options = dict(LINK_OPTIONS, max_message_bytes=frame_limit(hello), **link_options)
    link = Link.bind(address, role=role, **options) if role == "net2" else Link.connect(address, role=role, **options)
    try:
        link.handshake(hello, timeout=30, expectations=Expectations.from_hello(hello, label_names=split.label_blobs))
    except BaseException:
        link.close()
        raise
    solver.link = link
    return solver, link


def in_threads(bodies, timeout=60):
    """Run {name: function()} in threads named after the keys; returns {name: result or the exception raised}."""
    out = {}

    def run(name, body):
        try:
            out[name] = body()
        except BaseException as error:  # noqa: B902 - handed to the test
            out[name] = error

    threads = [threading.Thread(target=run, args=item, name=item[0], daemon=True) for item in bodies.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), f"a role did not finish within {timeout} s"
    return out


def raise_any(out):
    for result in out.values():
        if isinstance(result, BaseException):
            raise result
    return out


def run_pair(param, source, iterations, weights=None, net2_param=None):
    """Train both roles for `iterations` in threads named "net1" and "net2"; returns (net1 solver, net2 solver)."""
    split = build_split(param, str(source))
    address = free_address()

    def role_body(role, role_param):
        def body():
            solver, link = open_role(role, role_param, str(source), split, address, weights)
            try:
                solver.step(iterations)
            finally:
                link.close()
            return solver
        return body

    out = raise_any(in_threads({"net2": role_body("net2", net2_param or param), "net1": role_body("net1", param)},
                               timeout=120))
    return out["net1"], out["net2"]


def against_fake_peer(role, param, source, split, peer, steps, weights=None, prepare=None, **link_options):
    """A real `role` trains `steps` iterations while peer(address), a fake other role, runs in another
    thread; returns {role name: the solver or what it raised, other role: what peer returned or raised}.
    prepare(solver), if given, runs once the role is paired, before its steps."""
    address = free_address()

    def real():
        solver, link = open_role(role, param, source, split, address, weights=weights, **link_options)
        try:
            if prepare is not None:
                prepare(solver)
            solver.step(steps)
        finally:
            link.close()
        return solver

    fake = lambda: peer(address)  # noqa: E731
    return in_threads({"net2": real, "net1": fake} if role == "net2" else {"net2": fake, "net1": real})


class FakeNet1:
    """net1 without a net: sends made-up cut activations over a bare Link."""

    def __init__(self, param, split, address, **link_options):
        self.hello = hello_for("net1", param, split, 0)
        self.labels = split.label_blobs
        self.shape = tuple(split.cut_shapes[pb.TRAIN])
        options = dict(LINK_OPTIONS, max_message_bytes=frame_limit(self.hello), **link_options)
        self.link = Link.connect(address, role="net1", **options)
        self.link.handshake(self.hello, timeout=30,
                            expectations=Expectations.from_hello(self.hello, label_names=self.labels))

    def batch(self, step):
        """(a, labels) of batch `step`: a uniform in [0, 1), labels in 0..3."""
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


class FakeNet2:
    """net2 without a net: answers FORWARDs with TARGETs over a bare Link."""

    def __init__(self, param, split, address, **link_options):
        self.hello = hello_for("net2", param, split, 0)
        self.shape = tuple(split.target_shapes[pb.TRAIN])
        self.name = "target" if split.mode == pb.DualParameter.DUAL_LAYER else "delta"
        options = dict(LINK_OPTIONS, max_message_bytes=frame_limit(self.hello), **link_options)
        self.link = Link.bind(address, role="net2", **options)
        self.link.handshake(self.hello, timeout=30,
                            expectations=Expectations.from_hello(self.hello, label_names=split.label_blobs))

    def answer(self, step, value):
        """TARGET `step`: a delta (ADMM) or target (DUAL_LAYER) equal to `value` (a number or an array)."""
        array = np.broadcast_to(np.asarray(value, np.float32), self.shape)
        self.link.send(MSG.TARGET, step, arrays={self.name: np.ascontiguousarray(array)}, values={"loss": 1.0},
                       phase=pb.TRAIN)
