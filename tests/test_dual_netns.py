"""net1 and net2 as two hosts: two Linux network namespaces joined by a veth
pair (10.231.0.1 <-> 10.231.0.2), each role started with `ip netns exec`.
Off loopback the link needs CurveZMQ keys (`dualnet keys`) or an explicit
--insecure. Needs root and iproute2: without root it skips; as root (CI) a
machine that cannot create the namespaces fails with the reason, so CI never
passes without having run it."""
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

from dualnet.io.solverstate import read_state
from dual_harness import make_npz, small_net


SOLVER = """
net: "{net}"
test_iter: 2 test_interval: 5
base_lr: 0.05 momentum: 0.9 lr_policy: "fixed"
max_iter: 10 display: 5 snapshot: 0 random_seed: 3
snapshot_prefix: "{prefix}"
dual_param {{ split_at: "pool1" peer_timeout: 10 heartbeat_interval: 0.5 }}
"""
PORT = 5555          # each namespace is a fresh host: no other process holds it


@dataclass
class Hosts:
    net1: str          # namespace of net1's host
    net2: str
    net1_ip: str
    net2_ip: str


def _ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def cannot(reason):
    """As root (CI, which must run these tests) a machine that cannot set up the hosts fails, not skips."""
    pytest.fail(f"running as root, yet {reason}")


@pytest.fixture(scope="module")
def hosts():
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are a Linux feature")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    if shutil.which("ip") is None:
        cannot("there is no `ip` command (apt-get install iproute2)")
    tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
    ns1, ns2, veth1, veth2 = f"dn1-{tag}", f"dn2-{tag}", f"dv1{tag}", f"dv2{tag}"     # veth names <= 15 chars
    made = []
    try:
        for ns in (ns1, ns2):
            result = _ip("netns", "add", ns)
            if result.returncode:
                cannot(f"this machine cannot create network namespaces: {result.stderr.strip()}")
            made.append(ns)
        steps = [("link", "add", veth1, "type", "veth", "peer", "name", veth2),
                 ("link", "set", veth1, "netns", ns1), ("link", "set", veth2, "netns", ns2),
                 ("-n", ns1, "addr", "add", "10.231.0.1/24", "dev", veth1),
                 ("-n", ns2, "addr", "add", "10.231.0.2/24", "dev", veth2),
                 ("-n", ns1, "link", "set", veth1, "up"), ("-n", ns2, "link", "set", veth2, "up"),
                 ("-n", ns1, "link", "set", "lo", "up"), ("-n", ns2, "link", "set", "lo", "up")]
        for step in steps:
            result = _ip(*step)
            if result.returncode:
                cannot(f"this machine cannot join namespaces with a veth pair: `ip {' '.join(step)}`: "
                       f"{result.stderr.strip()}")
        yield Hosts(ns1, ns2, "10.231.0.1", "10.231.0.2")
    finally:
        for ns in made:
            _ip("netns", "del", ns)             # takes the veth end inside it, and so the pair, along
        if _ip("link", "show", veth1).returncode == 0:
            _ip("link", "del", veth1)           # set-up stopped before the veth moved


@pytest.fixture
def solver(tmp_path):
    npz = make_npz(tmp_path / "data.npz")
    (tmp_path / "net.prototxt").write_text(small_net(npz))
    path = tmp_path / "dual_solver.prototxt"
    path.write_text(SOLVER.format(net=tmp_path / "net.prototxt", prefix=tmp_path / "snap"))
    return path


def on_host(namespace, *args):
    """`dualnet ARGS` started inside `namespace`."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-m", "dualnet", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def train_across(hosts, solver, *flags):
    """Both roles, each on its host, with `flags` (e.g. --keys DIR); returns {role: (exit code, log)}."""
    address = f"tcp://{hosts.net2_ip}:{PORT}"
    processes = {
        "net2": on_host(hosts.net2, "train", "--solver", solver, "--role", "net2", "--bind", address, *flags),
        "net1": on_host(hosts.net1, "train", "--solver", solver, "--role", "net1", "--connect", address, *flags),
    }
    out = {}
    try:
        for role, process in processes.items():
            _stdout, stderr = process.communicate(timeout=120)
            out[role] = (process.returncode, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return out


def assert_trained(out, solver, link):
    for role, (code, log) in out.items():
        assert code == 0, f"{role}:\n{log[-3000:]}"
        assert f"({link} link)" in log, f"{role} did not report a {link} link"
        assert "Optimization Done." in log
        assert read_state(str(solver.parent / f"snap_{role}_iter_10.solverstate")).iter == 10
    # net2 saw net1 come from the other host's address, not from loopback
    assert "paired with net1 at 10.231.0.1" in out["net2"][1]


def test_the_roles_train_across_two_hosts_with_curve_keys(hosts, solver, tmp_path):
    keys = tmp_path / "keys"
    made = subprocess.run([sys.executable, "-m", "dualnet", "keys", "--out", str(keys)], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    out = train_across(hosts, solver, "--keys", keys)
    assert_trained(out, solver, "CurveZMQ")


def test_the_roles_train_across_two_hosts_unencrypted_with_insecure(hosts, solver):
    out = train_across(hosts, solver, "--insecure")
    assert_trained(out, solver, "unencrypted")
    for role, (_code, log) in out.items():
        assert "UNENCRYPTED (--insecure)" in log, role


@pytest.mark.parametrize("role", ["net1", "net2"])
def test_off_loopback_without_keys_or_insecure_a_role_refuses(hosts, solver, role):
    address = f"tcp://{hosts.net2_ip}:{PORT}"
    flag = "--bind" if role == "net2" else "--connect"
    process = on_host(getattr(hosts, role), "train", "--solver", solver, "--role", role, flag, address)
    _stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    error = stderr.splitlines()[-1]
    assert error.startswith("dualnet: error: "), stderr[-3000:]
    assert "dualnet keys" in error and "--insecure" in error, error
    assert "Traceback" not in stderr
