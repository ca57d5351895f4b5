"""Run both roles of a dual net in one process (a thread each, loopback TCP)."""
import socket
import threading

import numpy as np

from dualnet.dual.launch import build_split, hello_for
from dualnet.dual.protocol import Expectations, frame_limit
from dualnet.dual.roles import Net1Role, Net2Role, Wire
from dualnet.dual.transport import Link
from dualnet.io import parse_solver_text


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


def start_role(role, param, source, split, address, weights=None, peer_timeout=10.0, results=None):
    """Build the role, pair it, and return (solver, link)."""
    wire = Wire(split, param.dual_param.encoding, role)
    cls = Net1Role if role == "net1" else Net2Role
    solver = cls(param, source, split, None, wire, weights=weights)
    hello = hello_for(role, param, split, solver.iter)
    options = dict(peer_timeout=peer_timeout, heartbeat_interval=0.5, max_message_bytes=frame_limit(hello))
    link = Link.bind(address, role="net2", **options) if role == "net2" else Link.connect(address, role="net1", **options)
    solver.link = link
    link.handshake(hello, expectations=Expectations.from_hello(hello, label_names=split.label_blobs))
    return solver, link


def run_pair(param, source, iterations, weights=None, net2_param=None):
    """Train both roles for `iterations` in threads; returns (net1 solver, net2 solver)."""
    split = build_split(param, str(source))
    address = free_address()
    out, errors = {}, []

    def role_thread(role, role_param):
        try:
            solver, link = start_role(role, role_param, str(source), split, address, weights)
            out[role] = solver
            try:
                solver.step(iterations)
            finally:
                link.close()
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)

    net2_param = net2_param or param
    threads = [threading.Thread(target=role_thread, args=("net2", net2_param)),
               threading.Thread(target=role_thread, args=("net1", param))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a role did not finish"
    return out["net1"], out["net2"]
