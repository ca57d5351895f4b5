"""What a dual-net run promises when things go wrong, with each role a real
process (`dualnet train --role ...` on tcp://127.0.0.1): a role killed with
SIGKILL leaves its peer to notice within peer_timeout, snapshot, name the
resume command and exit 1; both roles resume from the last common snapshot
and finish; Ctrl-C on the local pair stops both roles at one iteration; the
local pair resumes from either role's file. Bounds on waits are liveness
checks with generous slack (peer_timeout is 3 s; a survivor gets 30 s)."""
import glob
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from dualnet.io.solverstate import read_state
from dual_harness import free_address, make_npz, small_net


# The default schedule (PIPELINED, max_staleness 1): net1 runs a batch ahead of net2.
SOLVER = """
net: "{net}"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.001 lr_policy: "inv" gamma: 0.01 power: 0.75
max_iter: {max_iter} display: 5 snapshot: {snapshot} random_seed: 3
snapshot_prefix: "{prefix}"
dual_param {{ split_at: "pool1" peer_timeout: 3 heartbeat_interval: 0.5 }}
"""
ROLES = ("net1", "net2")
SURVIVOR_SECONDS = 30
ITERATION = re.compile(r"\] (?:\[(net[12])\] )?Iteration (\d+) \(")


@pytest.fixture
def folder(tmp_path):
    npz = make_npz(tmp_path / "data.npz")
    (tmp_path / "net.prototxt").write_text(small_net(npz, name="faults"))
    return tmp_path


def write_solver(folder, max_iter, snapshot=10):
    path = folder / "dual_solver.prototxt"
    path.write_text(SOLVER.format(net=folder / "net.prototxt", max_iter=max_iter, snapshot=snapshot,
                                  prefix=folder / "snap"))
    return path


def snapshot_file(folder, role, iteration, suffix="solverstate"):
    return folder / f"snap_{role}_iter_{iteration}.{suffix}"


class Running:
    """A `dualnet` process whose stderr is collected line by line as it comes."""

    def __init__(self, args, cwd, **popen):
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, "-m", "dualnet", *map(str, args)], cwd=cwd, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def text(self):
        return "".join(self.lines)

    def wait_for_iteration(self, iteration, role=None, timeout=60):
        """Until the log shows `Iteration N (...)` with N >= iteration (of `role`, if given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = ITERATION.search(line)
                if found and (role is None or found.group(1) == role) and int(found.group(2)) >= iteration:
                    return
            assert self.process.poll() is None, f"exited with {self.process.returncode} early:\n{self.text[-3000:]}"
            time.sleep(0.02)
        raise AssertionError(f"no iteration {iteration} within {timeout} s:\n{self.text[-3000:]}")

    def wait(self, timeout):
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n{self.text[-3000:]}") from None
        self._reader.join(10)
        return code

    def end(self):
        """SIGTERM (a local pair's launcher passes it to both roles), then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_roles(folder, solver, snapshot_iteration=None):
    """net2 bound to a free loopback port and net1 connected to it, each its own process."""
    address = free_address()
    roles = {}
    for role, flag in (("net2", "--bind"), ("net1", "--connect")):
        args = ["train", "--solver", solver, "--role", role, flag, address]
        if snapshot_iteration is not None:
            args += ["--snapshot", snapshot_file(folder, role, snapshot_iteration)]
        roles[role] = Running(args, folder)
    return roles


def iterations_logged(text):
    return [int(m.group(2)) for m in map(ITERATION.search, text.splitlines()) if m]


def saved_iterations(folder):
    """{role: sorted iterations of its .solverstate files}."""
    saved = {role: [] for role in ROLES}
    for path in glob.glob(str(folder / "snap_*_iter_*.solverstate")):
        role, iteration = re.search(r"snap_(net[12])_iter_(\d+)\.solverstate$", path).groups()
        saved[role].append(int(iteration))
    return {role: sorted(its) for role, its in saved.items()}


@pytest.mark.parametrize("victim", ROLES)
def test_a_killed_role_is_detected_and_both_resume_from_the_last_common_snapshot(folder, victim):
    survivor_role = "net2" if victim == "net1" else "net1"
    solver = write_solver(folder, max_iter=1_000_000)
    roles = start_roles(folder, solver)
    try:
        roles[survivor_role].wait_for_iteration(25)
        roles[victim].process.kill()                           # SIGKILL: no farewell, no snapshot
        code = roles[survivor_role].wait(SURVIVOR_SECONDS)
    finally:
        for running in roles.values():
            running.end()
    survivor = roles[survivor_role].text
    assert code == 1, survivor[-3000:]
    error = survivor.splitlines()[-1]
    assert error.startswith("dualnet: error: ") and "may have died" in error, error
    saved = re.search(r"This side saved (\S+_iter_(\d+)\.solverstate)", error)
    assert saved and os.path.exists(saved.group(1)), error
    assert read_state(saved.group(1)).iter == int(saved.group(2))
    resume = re.search(r"resume both sides from iteration (\d+): dualnet train --solver (\S+) --snapshot (\S+)", error)
    assert resume, error
    common = int(resume.group(1))
    assert resume.group(2) == str(solver)
    assert resume.group(3) == str(snapshot_file(folder, "net1", common))
    assert common >= 20 and common % 10 == 0 and common <= int(saved.group(2))
    assert re.search(rf"\[{survivor_role}\] Peak memory \(RSS\) of {survivor_role}: \d+\.\d MB$", survivor, re.M), \
        survivor[-3000:]
    for role in ROLES:
        assert read_state(str(snapshot_file(folder, role, common))).iter == common

    # Both roles again, from their own files of the common iteration, to max_iter.
    final = common + 10
    solver = write_solver(folder, max_iter=final)
    roles = start_roles(folder, solver, snapshot_iteration=common)
    try:
        codes = {role: running.wait(60) for role, running in roles.items()}
    finally:
        for running in roles.values():
            running.end()
    for role, running in roles.items():
        assert codes[role] == 0, running.text[-3000:]
        assert f"Restored to iteration {common}" in running.text
        logged = iterations_logged(running.text)
        assert logged[0] == common and logged[-1] == final - 5, logged
        assert read_state(str(snapshot_file(folder, role, final))).iter == final
        assert "Optimization Done." in running.text


def test_sigint_to_the_local_pair_snapshots_both_roles_at_one_iteration(folder):
    solver = write_solver(folder, max_iter=1_000_000, snapshot=0)
    pair = Running(["train", "--solver", solver], folder, start_new_session=True)
    try:
        pair.wait_for_iteration(20, role="net1")
        os.killpg(pair.process.pid, signal.SIGINT)            # a terminal's Ctrl-C reaches the whole group
        code = pair.wait(SURVIVOR_SECONDS)
    finally:
        pair.end()
    assert code == 0, pair.text[-3000:]
    saved = saved_iterations(folder)
    assert all(len(its) == 1 for its in saved.values()), saved
    assert saved["net1"] == saved["net2"], f"the roles stopped at different iterations: {saved}"
    iteration = saved["net1"][0]
    assert iteration >= 20
    for role in ROLES:
        assert read_state(str(snapshot_file(folder, role, iteration))).iter == iteration
        assert os.path.exists(snapshot_file(folder, role, iteration, "caffemodel"))


def test_sighup_then_sigint_to_the_launcher_snapshot_and_stop_both_roles_together(folder):
    # `kill -HUP PID` / `kill -INT PID` of `dualnet train`: Caffe's snapshot-and-go-on, then stop.
    solver = write_solver(folder, max_iter=1_000_000, snapshot=0)
    pair = Running(["train", "--solver", solver], folder)
    try:
        pair.wait_for_iteration(20, role="net1")
        pair.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + SURVIVOR_SECONDS
        while not all(saved_iterations(folder).values()):
            assert time.monotonic() < deadline and pair.process.poll() is None, pair.text[-3000:]
            time.sleep(0.05)
        first = saved_iterations(folder)
        pair.wait_for_iteration(first["net1"][0] + 20, role="net1")      # it goes on
        pair.process.send_signal(signal.SIGINT)
        code = pair.wait(SURVIVOR_SECONDS)
    finally:
        pair.end()
    assert code == 0, pair.text[-3000:]
    saved = saved_iterations(folder)
    assert saved["net1"] == saved["net2"] and len(saved["net1"]) == 2, saved
    assert first["net1"] == first["net2"] == saved["net1"][:1]


def test_sigterm_to_the_launcher_leaves_no_role_running(folder):
    solver = write_solver(folder, max_iter=1_000_000, snapshot=0)
    pair = Running(["train", "--solver", solver], folder)
    try:
        pair.wait_for_iteration(10, role="net1")
        pair.wait_for_iteration(10, role="net2")
        pids = {int(m.group(1)) for m in re.finditer(r"^\w\d{4} \S+ +(\d+) \S+\] \[net[12]\]", pair.text, re.M)}
        assert len(pids) == 2, pids
        pair.process.terminate()
        assert pair.wait(SURVIVOR_SECONDS) != 0
    finally:
        pair.end()
    deadline = time.monotonic() + SURVIVOR_SECONDS
    while any(os.path.exists(f"/proc/{pid}") and not _is_zombie(pid) for pid in pids):
        assert time.monotonic() < deadline, f"a role outlived its launcher: {pids}"
        time.sleep(0.05)


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def short_pair(tmp_path_factory):
    """A local pair of 20 iterations with snapshots at 10 and 20."""
    folder = tmp_path_factory.mktemp("pair")
    npz = make_npz(folder / "data.npz")
    (folder / "net.prototxt").write_text(small_net(npz, name="faults"))
    solver = write_solver(folder, max_iter=20)
    result = subprocess.run([sys.executable, "-m", "dualnet", "train", "--solver", str(solver),
                             "--log", str(folder / "pair.log")],
                            cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, solver


def test_the_local_pairs_log_file_merges_both_roles(short_pair):
    folder, _solver = short_pair
    text = (folder / "pair.log").read_text()
    for role in ROLES:
        assert iterations_logged("\n".join(l for l in text.splitlines() if f"] [{role}] " in l)) == [0, 5, 10, 15]
        assert f"[{role}] Optimization Done." in text


@pytest.mark.parametrize("given", [("net1", "solverstate"), ("net2", "caffemodel")], ids=lambda g: "_".join(g))
def test_the_local_pair_resumes_from_either_roles_file(short_pair, given):
    folder, solver = short_pair
    role, suffix = given
    result = subprocess.run([sys.executable, "-m", "dualnet", "train", "--solver", str(solver),
                             "--snapshot", str(snapshot_file(folder, role, 10, suffix))],
                            cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    for tag in ROLES:
        lines = [l for l in result.stderr.splitlines() if f"] [{tag}] " in l]
        assert any(l.endswith("Restored to iteration 10") for l in lines), tag
        logged = iterations_logged("\n".join(lines))
        assert logged[0] == 10 and logged[-1] == 15, (tag, logged)
        assert any(l.endswith("Optimization Done.") for l in lines), tag


def test_a_role_given_the_other_roles_snapshot_refuses_in_one_line(short_pair):
    folder, solver = short_pair
    result = subprocess.run([sys.executable, "-m", "dualnet", "train", "--solver", str(solver), "--role", "net1",
                             "--connect", free_address(), "--snapshot", str(snapshot_file(folder, "net2", 10))],
                            cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    error = result.stderr.splitlines()[-1]
    assert error.startswith("dualnet: error: ") and "belongs to net2, not net1" in error, error
    assert "Traceback" not in result.stderr
