"""scripts/launch_two_hosts.sh, with `ssh` replaced by a stand-in that runs the
remote command on this machine (the script's own logic is what is tested)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from dual_harness import free_address, make_npz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NET = """
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
        transform_param {{ scale: 0.004 }} data_param {{ source: "{npz}" batch_size: 8 backend: NPZ }} }}
layer {{ name: "d" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
        data_param {{ source: "{npz}" batch_size: 8 backend: NPZ }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "data" top: "ip1" inner_product_param {{ num_output: 6 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param {{ num_output: 4 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""


@pytest.fixture
def setup(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_ssh = bin_dir / "ssh"
    # ssh HOST COMMAND: run COMMAND here, in its own session as on another host
    # (a terminal's Ctrl-C here does not reach processes there)
    fake_ssh.write_text('#!/usr/bin/env bash\nexec setsid -w bash -c "$2"\n')
    fake_ssh.chmod(0o755)
    dualnet_cmd = bin_dir / "dualnet"
    dualnet_cmd.write_text(f'#!/usr/bin/env bash\nexec {sys.executable} -m dualnet "$@"\n')
    dualnet_cmd.chmod(0o755)
    npz = make_npz(tmp_path / "d.npz")
    (tmp_path / "net.prototxt").write_text(NET.format(npz=npz))
    subprocess.run([sys.executable, "-m", "dualnet", "keys", "--out", str(tmp_path / "keys")], check=True,
                   capture_output=True)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1")
    return tmp_path, env


def solver(tmp_path, max_iter):
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" max_iter: {max_iter} display: 5 '
                    f'snapshot_prefix: "{tmp_path}/snaps/two" '
                    'dual_param { split_at: "ip1" peer_timeout: 5 heartbeat_interval: 0.5 }')
    return path


def launch(tmp_path, env, max_iter):
    port = free_address().rsplit(":", 1)[1]
    return subprocess.Popen(
        ["bash", os.path.join(ROOT, "scripts", "launch_two_hosts.sh"), "--solver", str(solver(tmp_path, max_iter)),
         "--net1-host", "127.0.0.1", "--net2-host", "127.0.0.1", "--port", port, "--keys", str(tmp_path / "keys"),
         "--workdir", str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def test_both_roles_train_and_their_logs_come_back_tagged(setup):
    tmp_path, env = setup
    process = launch(tmp_path, env, 10)
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output
    assert re.search(r"^\[127\.0\.0\.1\] I\d{4} .*\[net1\] Optimization Done\.", output, re.M), output
    assert re.search(r"^\[127\.0\.0\.1\] I\d{4} .*\[net2\] Optimization Done\.", output, re.M), output
    for role, peer in (("net1", "net2"), ("net2", "net1")):      # --keys: both ends of the link are CurveZMQ
        assert re.search(rf"\[{role}\] {role} paired with {peer} at \S+ \(CurveZMQ link\)$", output, re.M), output
    assert "unencrypted" not in output.lower()
    assert (tmp_path / "snaps" / "two_net1_iter_10.solverstate").exists()
    assert (tmp_path / "snaps" / "two_net2_iter_10.solverstate").exists()


def test_ctrl_c_stops_both_roles_with_a_snapshot(setup):
    tmp_path, env = setup
    process = launch(tmp_path, env, 100000)
    lines = []
    deadline = time.monotonic() + 240
    for line in process.stdout:
        lines.append(line)
        if re.search(r"\[net1\] Iteration 10 ", line) or time.monotonic() > deadline:
            break
    os.killpg(process.pid, signal.SIGINT)        # what a terminal's Ctrl-C does
    output, _ = process.communicate(timeout=120)
    output = "".join(lines) + output
    assert process.returncode == 0, output
    saved = {role: sorted(p.name for p in (tmp_path / "snaps").glob(f"two_{role}_iter_*.solverstate"))
             for role in ("net1", "net2")}
    assert saved["net1"] and saved["net1"][-1].replace("net1", "net2") == saved["net2"][-1], saved
