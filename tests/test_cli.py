"""The `dualnet` command on a single net, as a user runs it (subprocesses):
Caffe's spellings and log lines, one-line errors with exit status 1, SIGINT
snapshots, NaN stops, `test`, `time`, `info` and `plot`."""
import datetime
import fcntl
import math
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading

import numpy as np
import pytest

import dualnet
from dualnet.io.solverstate import read_state
from dual_harness import make_npz, small_net

GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [\w.]+:\d+\] (?P<text>.*)$")
NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"


SOLVER = """
net: "{net}"
test_iter: 2 test_interval: 10
base_lr: {base_lr} momentum: 0.9 weight_decay: 0.001 lr_policy: "inv" gamma: 0.01 power: 0.75
display: {display} max_iter: {max_iter} snapshot: {snapshot} random_seed: 3
snapshot_prefix: "{prefix}"
{extra}
"""


def write_solver(folder, name, max_iter=20, snapshot=10, display=5, base_lr=0.1, extra=""):
    path = folder / name
    path.write_text(SOLVER.format(net=folder / "net.prototxt", max_iter=max_iter, snapshot=snapshot,
                                  display=display, base_lr=base_lr, prefix=folder / name.replace(".prototxt", ""),
                                  extra=extra))
    return path


def inv_rate(iteration):
    """SOLVER's learning rate at `iteration` (lr_policy inv, base_lr 0.1)."""
    return 0.1 * (1 + 0.01 * iteration) ** -0.75


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A net on a 64-record training set and a 10-record test set (batches of 4: 4, 4, 2)."""
    folder = tmp_path_factory.mktemp("cli")
    train = make_npz(folder / "train.npz", records=64)
    test = make_npz(folder / "test.npz", records=10, seed=1)
    (folder / "net.prototxt").write_text(small_net(train, test))
    return folder


def dualnet_cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "dualnet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def log_texts(stderr):
    """The message part of each glog line (every line of a clean log is one)."""
    texts = []
    for line in stderr.splitlines():
        match = GLOG.match(line)
        assert match, f"not a glog line: {line!r}"
        texts.append(match.group("text"))
    return texts


def assert_one_line_error(result, *phrases):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dualnet: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], f"{phrase!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def trained(project):
    """One `dualnet train` of 20 iterations, also logged to a file with --log."""
    solver = write_solver(project, "solver.prototxt")
    result = dualnet_cli("train", "--solver", solver, "--log", project / "train.log", cwd=project)
    return result, project / "solver"


def test_version_prints_the_package_version():
    result = dualnet_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"dualnet {dualnet.__version__}\n"


def test_train_logs_caffes_lines_and_snapshots(trained):
    result, prefix = trained
    assert result.returncode == 0, result.stderr
    texts = log_texts(result.stderr)
    expected = [
        r"Solving small",
        r"Learning Rate Policy: inv",
        rf"Iteration 0, Testing net \(#0\)",
        rf"Iteration 5 \({NUMBER} iter/s, {NUMBER}s/5 iters\), loss = {NUMBER}",
        rf"    Train net output #0: loss = {NUMBER} \(\* 1 = {NUMBER} loss\)",
        rf"Iteration 5, lr = {NUMBER}",
        rf"Iteration 10, Testing net \(#0\)",
        rf"    Test net output #0: accuracy = {NUMBER}",
        rf"    Test net output #1: loss = {NUMBER} \(\* 1 = {NUMBER} loss\)",
        rf"Snapshotting to binary proto file {re.escape(str(prefix))}_iter_10\.caffemodel",
        rf"Snapshotting solver state to binary proto file {re.escape(str(prefix))}_iter_20\.solverstate",
        rf"Iteration 20, loss = {NUMBER}",
        r"Optimization Done\.",
    ]
    for pattern in expected:
        assert any(re.fullmatch(pattern, text) for text in texts), f"no log line matches {pattern!r}"
    assert texts[-1] == "Optimization Done."
    for iteration in (10, 20):
        assert read_state(f"{prefix}_iter_{iteration}.solverstate").iter == iteration


def test_no_progress_bar_when_stderr_is_not_a_terminal(trained):
    result, _prefix = trained
    assert "\r" not in result.stderr
    assert not re.search(r"\d+/20 \[", result.stderr)


def run_on_a_terminal(project, *flags):
    """`dualnet train` (40 iterations) with stderr on a 100-column pseudo-terminal:
    (exit status, everything the terminal received)."""
    solver = write_solver(project, "tty.prototxt", max_iter=40, snapshot=0, display=10)
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "dualnet", "train", "--solver", str(solver), *flags],
                               cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    received = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:             # EIO: the process has closed the terminal
            break
        if not chunk:
            break
        received.append(chunk)
    os.close(master)
    return process.wait(60), b"".join(received).decode()


def test_progress_bar_on_a_terminal_keeps_every_log_line_whole(project):
    status, screen = run_on_a_terminal(project)
    assert status == 0, screen[-2000:]
    assert re.search(r"\| 20/40 \[", screen)          # the bar, redrawn below the log lines
    # What stays on screen of each line is what follows its last carriage return.
    visible = [line.rsplit("\r", 1)[-1] for line in screen.replace("\r\n", "\n").split("\n")[:-1]]
    texts = log_texts("\n".join(visible))              # each one a whole glog line, no bar mixed in
    assert [t.split(" (")[0] for t in texts if re.match(r"Iteration \d+ \(", t)] == [
        "Iteration 0", "Iteration 10", "Iteration 20", "Iteration 30"]
    assert texts[-1] == "Optimization Done."


def test_quiet_on_a_terminal_shows_no_bar_and_no_info_lines(project):
    status, screen = run_on_a_terminal(project, "--quiet")
    assert (status, screen) == (0, "")


def test_log_flag_writes_the_same_training_lines_to_a_file(trained, project):
    result, _prefix = trained
    written = log_texts((project / "train.log").read_text())
    shown = log_texts(result.stderr)
    training = [t for t in shown if t.startswith(("Iteration", "    Train", "    Test", "Optimization"))]
    assert [t for t in written if t.startswith(("Iteration", "    Train", "    Test", "Optimization"))] == training


def caffe_parse_log(lines, year=2000):
    """The (.train rows, .test rows) that Caffe's tools/extra/parse_log.py makes of a log, restated:
    - the clock starts at the glog time of the first line containing `Solving`; glog times have
      no year, so any fixed one will do;
    - `Iteration N` anywhere in a line makes N the current iteration; lines before the first
      such line, and lines without a glog time, are skipped;
    - `lr = X` makes X the current learning rate (NaN until one is seen);
    - a `Train net output` / `Test net output` line adds `name = value` to the open row of its
      table, first opening a row (NumIters, Seconds, LearningRate) if there is none or its
      iteration is not the current one; a row is complete once it has as many columns as the
      table's first row;
    - finally each table's first row takes the second row's learning rate (no `lr =` line
      precedes the first outputs).
    """
    def clock(line):
        found = re.match(r"[IWEF](\d{4} \d\d:\d\d:\d\d\.\d{6}) ", line)
        return datetime.datetime.strptime(f"{year}{found.group(1)}", "%Y%m%d %H:%M:%S.%f") if found else None

    start = next(clock(line) for line in lines if "Solving" in line)
    tables, open_rows = {"Train": [], "Test": []}, {"Train": None, "Test": None}
    iteration, rate = None, math.nan
    for line in lines:
        found = re.search(r"Iteration (\d+)", line)
        if found:
            iteration = int(found.group(1))
        if iteration is None or clock(line) is None:
            continue
        found = re.search(r"lr = (\S+)", line)
        if found:
            rate = float(found.group(1))
        found = re.search(r"(Train|Test) net output #\d+: (\S+) = (\S+)", line)
        if not found:
            continue
        kind, name, value = found.groups()
        rows, row = tables[kind], open_rows[kind]
        if row is None or row["NumIters"] != iteration:
            if row is not None:
                rows.append(row)
            row = {"NumIters": iteration, "Seconds": (clock(line) - start).total_seconds(), "LearningRate": rate}
        row[name] = float(value)
        if rows and len(row) == len(rows[0]):
            rows.append(row)
            row = None
        open_rows[kind] = row
    for kind, row in open_rows.items():
        if row is not None:
            tables[kind].append(row)
    for rows in tables.values():
        if len(rows) > 1:
            rows[0]["LearningRate"] = rows[1]["LearningRate"]
    return tables["Train"], tables["Test"]


def test_caffes_parse_log_makes_its_train_and_test_tables_of_a_training_log(trained, project):
    lines = (project / "train.log").read_text().splitlines()
    train, test = caffe_parse_log(lines)
    # 20 iterations, display 5 (the last display, at 20, has no output lines), test every 10
    assert [row["NumIters"] for row in train] == [0, 5, 10, 15]
    assert [row["NumIters"] for row in test] == [0, 10, 20]
    assert all(list(row) == ["NumIters", "Seconds", "LearningRate", "loss"] for row in train)
    assert all(list(row) == ["NumIters", "Seconds", "LearningRate", "accuracy", "loss"] for row in test)
    for rows in (train, test):
        seconds = [row["Seconds"] for row in rows]
        assert seconds == sorted(seconds) and seconds[0] >= 0
    # A row's rate is the last `lr =` line before its first output: for a display at N that is
    # the display before it (Caffe logs the rate after the outputs), for a test pass at N the
    # last display before N.
    assert [row["LearningRate"] for row in train] == pytest.approx([inv_rate(i) for i in (0, 0, 5, 10)], rel=1e-5)
    assert [row["LearningRate"] for row in test] == pytest.approx([inv_rate(i) for i in (5, 5, 15)], rel=1e-5)
    displayed = {int(m.group(1)): float(m.group(2)) for m in
                 (re.search(rf"Iteration (\d+) \(.*\), loss = ({NUMBER})$", line) for line in lines) if m}
    assert [row["loss"] for row in train] == pytest.approx([displayed[i] for i in (0, 5, 10, 15)], rel=1e-5)
    assert all(0 <= row["accuracy"] <= 1 and row["loss"] > 0 for row in test)


@pytest.mark.parametrize("spelling", [["-solver", "{s}"], ["--solver={s}"], ["-solver={s}", "-sigint_effect", "stop"]],
                         ids=["-solver x", "--solver=x", "-solver=x -sigint_effect"])
def test_caffes_spellings_of_the_flags_work(project, spelling):
    solver = write_solver(project, "short.prototxt", max_iter=2, snapshot=0, display=1)
    result = dualnet_cli("train", *[part.format(s=solver) for part in spelling], cwd=project)
    assert result.returncode == 0, result.stderr
    assert log_texts(result.stderr)[-1] == "Optimization Done."


def test_weights_and_snapshot_together_are_refused(project):
    solver = write_solver(project, "solver_ws.prototxt")
    result = dualnet_cli("train", "--solver", solver, "--weights", "a.caffemodel", "--snapshot", "b.solverstate")
    assert_one_line_error(result, "--snapshot", "--weights")


@pytest.mark.parametrize("args,phrases", [
    ([], ["give a command: train, test, time", "see 'dualnet --help'"]),
    (["trian", "--solver", "s.prototxt"], ["invalid choice: 'trian'", "see 'dualnet --help'"]),
    (["train"], ["the following arguments are required: --solver", "see 'dualnet train --help'"]),
    (["train", "--solver", "s.prototxt", "--sigint-effect", "stopp"],
     ["argument --sigint-effect: invalid choice: 'stopp'", "see 'dualnet train --help'"]),
    (["train", "--solver", "s.prototxt", "--bogus"], ["unrecognized arguments: --bogus", "see 'dualnet train --help'"]),
    (["test", "--model", "m", "--weights", "w", "--iterations", "ten"],
     ["argument --iterations: invalid int value: 'ten'", "see 'dualnet test --help'"]),
], ids=["no command", "unknown command", "missing --solver", "bad --sigint-effect", "unknown flag", "bad number"])
def test_usage_errors_are_one_line_with_exit_status_1(args, phrases):
    assert_one_line_error(dualnet_cli(*args), *phrases)


def test_help_still_prints_the_usage_and_exits_0():
    result = dualnet_cli("train", "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: dualnet train [-h] --solver S")
    assert "--sigint-effect {stop,snapshot,none}" in result.stdout


@pytest.fixture(scope="module")
def lone_caffemodel(trained, project):
    """The trained weights copied away from their .solverstate."""
    _result, prefix = trained
    path = project / "lone.caffemodel"
    shutil.copy(f"{prefix}_iter_20.caffemodel", path)
    return path


@pytest.mark.parametrize("args,phrases", [
    (["test", "--model", "{project}/net.prototxt", "--weights", "{lone}", "--iterations", "0"],
     ["--iterations must be positive, got 0", "--epoch scores one pass over the test set"]),
    (["train", "--solver", "{project}/solver.prototxt", "--bind", "tcp://127.0.0.1:5555"],
     ["--bind is for dual-net training; {project}/solver.prototxt has no dual_param",
      "add a dual_param block to the solver, or drop --bind"]),
    (["train", "--solver", "{project}/solver.prototxt", "--connect", "tcp://127.0.0.1:5555"],
     ["--connect is for dual-net training", "drop --connect"]),
    (["train", "--solver", "{project}/solver.prototxt", "--snapshot", "{lone}"],
     ["{lone}: is a .caffemodel and no lone.solverstate lies beside it", "--snapshot needs the .solverstate",
      "use --weights"]),
    (["train", "--solver", "{project}/solver.prototxt", "--snapshot", "{project}/net.prototxt"],
     ["{project}/net.prototxt: is a text file (a prototxt?)", "--snapshot takes a .solverstate"]),
], ids=["test --iterations 0", "--bind", "--connect", "--snapshot caffemodel", "--snapshot prototxt"])
def test_bad_command_line_inputs_are_one_line_with_advice(project, lone_caffemodel, args, phrases):
    fill = dict(project=project, lone=lone_caffemodel)
    result = dualnet_cli(*[a.format(**fill) for a in args], cwd=project)
    assert_one_line_error(result, *[p.format(**fill) for p in phrases])


HEAD_ONLY = """
name: "head"
layer { name: "in" type: "Input" top: "ip1" input_param { shape { dim: 1 dim: 6 } } }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 4 } }
"""


def test_weights_w1_w2_are_both_applied_in_order(project):
    whole = dualnet.Net(str(project / "net.prototxt"), dualnet.TRAIN)
    whole.params["conv1"][0].data[...] = 0.25
    whole.params["ip2"][0].data[...] = -1.0         # W2 overwrites it
    whole.save(str(project / "w1.caffemodel"))
    (project / "head.prototxt").write_text(HEAD_ONLY)
    head = dualnet.Net(str(project / "head.prototxt"), dualnet.TEST)
    head.params["ip2"][0].data[...] = 0.5
    head.params["ip2"][1].data[...] = 0.75
    head.save(str(project / "w2.caffemodel"))
    solver = write_solver(project, "finetune.prototxt", max_iter=0, snapshot=0)
    result = dualnet_cli("train", "--solver", solver, "--weights", "w1.caffemodel,w2.caffemodel", cwd=project)
    assert result.returncode == 0, result.stderr
    texts = log_texts(result.stderr)
    assert [t for t in texts if t.startswith("Finetuning from")] == [
        "Finetuning from w1.caffemodel", "Finetuning from w2.caffemodel"]
    started = dualnet.Net(str(project / "net.prototxt"), dualnet.TEST,
                          weights=str(project / "finetune_iter_0.caffemodel"))
    np.testing.assert_array_equal(started.params["conv1"][0].data, 0.25)
    np.testing.assert_array_equal(started.params["ip2"][0].data, 0.5)
    np.testing.assert_array_equal(started.params["ip2"][1].data, 0.75)


def test_resume_does_not_load_the_solvers_weights(trained, project):
    _result, prefix = trained
    solver = write_solver(project, "resume.prototxt", max_iter=12, extra='weights: "missing.caffemodel"')
    result = dualnet_cli("train", "--solver", solver, "--snapshot", f"{prefix}_iter_10.solverstate", cwd=project)
    assert result.returncode == 0, result.stderr
    texts = log_texts(result.stderr)
    assert f"Resuming from {prefix}_iter_10.solverstate: not loading the solver's weights (missing.caffemodel)" \
        in texts
    assert not any(t.startswith("Finetuning from") for t in texts)
    assert "Restored to iteration 10" in texts
    assert read_state(f"{project / 'resume'}_iter_12.solverstate").iter == 12


def test_a_missing_solver_file_is_one_line_naming_it(project):
    result = dualnet_cli("train", "--solver", "no_such_solver.prototxt", cwd=project)
    assert_one_line_error(result, "no_such_solver.prototxt")


def test_a_misspelled_field_is_one_line_with_its_place_and_a_suggestion(project):
    path = project / "typo.prototxt"
    path.write_text(f'net: "{project / "net.prototxt"}"\nbase_lrr: 0.1\nmax_iter: 2\n')
    result = dualnet_cli("train", "--solver", path, cwd=project)
    assert_one_line_error(result, f"{path.name}:2:1", "base_lrr", "did you mean 'base_lr'")


DISPLAYED = re.compile(r"\] Iteration (\d+) \(")
SNAPSHOT_WRITTEN = re.compile(r"Snapshotting solver state to binary proto file (.*_iter_(\d+)\.solverstate)")


def train_with_signals(project, name, send):
    """`dualnet train` of an endless solver; after each stderr line, signal the process group with
    send(line) unless it returns None (Ctrl-C in a terminal signals the group). Returns (status, log texts)."""
    solver = write_solver(project, name, max_iter=1_000_000, snapshot=0, display=10)
    process = subprocess.Popen([sys.executable, "-m", "dualnet", "train", "--solver", str(solver)], cwd=project,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    watchdog = threading.Timer(120, process.kill)       # a hang guard, not a measurement
    watchdog.start()
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            signum = send(line)
            if signum is not None:
                os.killpg(process.pid, signum)
        status = process.wait(60)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
    return status, log_texts("".join(lines))


def snapshots_written(texts):
    """[(iteration, .solverstate path)] in the order the log reports them."""
    return [(int(m.group(2)), m.group(1)) for m in map(SNAPSHOT_WRITTEN.fullmatch, texts) if m]


def test_sigint_snapshots_at_the_stopping_iteration_and_exits_0(project):
    sent = []

    def interrupt_after_iteration_20(line):
        found = DISPLAYED.search(line)
        if found and int(found.group(1)) >= 20 and not sent:
            sent.append(signal.SIGINT)
            return signal.SIGINT
        return None

    status, texts = train_with_signals(project, "long.prototxt", interrupt_after_iteration_20)
    assert status == 0, texts[-10:]
    written = snapshots_written(texts)
    assert len(written) == 1, "exactly one snapshot, on the signal"
    iteration, state_path = written[0]
    assert iteration > 20
    assert read_state(state_path).iter == iteration
    assert os.path.exists(state_path.replace(".solverstate", ".caffemodel"))
    assert "Optimization stopped early." in texts


def test_sighup_snapshots_and_training_goes_on(project):
    snapped, sent = [], []

    def hangup_then_interrupt(line):
        """SIGHUP once past iteration 20; SIGINT 20 iterations after the snapshot it caused."""
        written = SNAPSHOT_WRITTEN.search(line)
        if written:
            snapped.append(int(written.group(2)))
        found = DISPLAYED.search(line)
        if not found:
            return None
        iteration = int(found.group(1))
        if not sent and iteration >= 20:
            sent.append(signal.SIGHUP)
        elif snapped and len(sent) == 1 and iteration >= snapped[0] + 20:
            sent.append(signal.SIGINT)
        else:
            return None
        return sent[-1]

    status, texts = train_with_signals(project, "hangup.prototxt", hangup_then_interrupt)
    assert status == 0, texts[-10:]
    written = snapshots_written(texts)
    assert len(written) == 2, "one snapshot on SIGHUP, one on SIGINT"
    (on_hangup, hangup_state), (on_interrupt, _) = written
    assert on_hangup > 20 and on_interrupt >= on_hangup + 20     # training went on after SIGHUP
    assert read_state(hangup_state).iter == on_hangup
    after = texts[texts.index(f"Snapshotting solver state to binary proto file {hangup_state}") + 1:]
    displayed_after = [int(m.group(1)) for m in (re.match(r"Iteration (\d+) \(", t) for t in after) if m]
    assert displayed_after and displayed_after[-1] >= on_hangup + 20


def test_a_nan_loss_stops_naming_the_iteration_and_layer_and_keeps_the_last_snapshot(project):
    solver = write_solver(project, "nan.prototxt", max_iter=50, snapshot=1, display=1, base_lr=1e12)
    result = dualnet_cli("train", "--solver", solver, cwd=project)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = result.stderr.splitlines()[-1]
    found = re.match(r"dualnet: error: Iteration (\d+): the loss is (nan|inf|-inf); the first non-finite output "
                     r"is top '\w+' of layer '\w+'; the last snapshot is (\S+\.solverstate)[ .]", error)
    assert found, error
    iteration, kept = int(found.group(1)), found.group(3)
    assert kept == f"{project / 'nan'}_iter_{iteration}.solverstate"
    assert read_state(kept).iter == iteration
    assert not os.path.exists(f"{project / 'nan'}_iter_{iteration + 1}.solverstate")


def batch_values(texts, name):
    return [(int(m.group(1)), float(m.group(2))) for m in
            (re.fullmatch(rf"Batch (\d+), {name} = ({NUMBER})", t) for t in texts) if m]


def final_value(texts, name):
    values = [float(m.group(1)) for m in (re.fullmatch(rf"{name} = ({NUMBER})(?: \(.*\))?", t) for t in texts) if m]
    assert len(values) == 1, f"one final {name} line"
    return values[0]


def test_test_epoch_scores_every_record_once_with_caffes_lines(trained, project):
    _result, prefix = trained
    result = dualnet_cli("test", "--model", project / "net.prototxt", "--weights", f"{prefix}_iter_20.caffemodel",
                         "--epoch", cwd=project)
    assert result.returncode == 0, result.stderr
    texts = log_texts(result.stderr)
    accuracy = batch_values(texts, "accuracy")
    assert [b for b, _ in accuracy] == [0, 1, 2]                       # 10 records in batches of 4, 4, 2
    assert accuracy[2][1] in (0.0, 0.5, 1.0)                          # the last batch holds 2 records
    expected = (4 * accuracy[0][1] + 4 * accuracy[1][1] + 2 * accuracy[2][1]) / 10
    assert final_value(texts, "accuracy") == pytest.approx(expected, abs=1e-5)
    losses = [v for _, v in batch_values(texts, "loss")]
    assert final_value(texts, "loss") == pytest.approx(np.average(losses, weights=[4, 4, 2]), rel=1e-4)


def test_test_iterations_scores_that_many_batches(trained, project):
    _result, prefix = trained
    result = dualnet_cli("test", "--model", project / "net.prototxt", "--weights", f"{prefix}_iter_20.caffemodel",
                         "--iterations", 5, cwd=project)
    assert result.returncode == 0, result.stderr
    texts = log_texts(result.stderr)
    accuracy = batch_values(texts, "accuracy")
    assert [b for b, _ in accuracy] == [0, 1, 2, 3, 4]
    assert final_value(texts, "accuracy") == pytest.approx(np.mean([v for _, v in accuracy]), abs=1e-5)


def test_time_prints_caffes_per_layer_table(project):
    result = dualnet_cli("time", "--model", project / "net.prototxt", "--iterations", 2, cwd=project)
    assert result.returncode == 0, result.stderr
    texts = log_texts(result.stderr)
    assert "*** Benchmark begins ***" in texts and texts[-1] == "*** Benchmark ends ***"
    assert "Testing for 2 iterations." in texts
    for layer in ("d", "conv1", "relu1", "pool1", "ip1", "relu2", "ip2", "loss"):
        for direction in ("forward", "backward"):
            pattern = rf"\s*{layer}\t{direction}: {NUMBER} ms\."
            assert any(re.fullmatch(pattern, t) for t in texts), f"no {direction} time for {layer}"
    for total in ("Average Forward pass", "Average Backward pass", "Average Forward-Backward", "Total Time"):
        assert any(re.fullmatch(rf"{total}: {NUMBER} ms\.", t) for t in texts), total


def test_info_prints_versions_blas_threads_kernel_and_data():
    result = dualnet_cli("info")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()

    def line(start):
        found = [l for l in lines if l.startswith(start)]
        assert found, f"no line starting {start!r} in:\n{result.stdout}"
        return found[0]

    assert lines[0] == f"dualnet {dualnet.__version__}"
    assert line("python ")
    assert "BLAS: " in line("numpy ")
    assert "pyzmq " in line("protobuf ")
    assert re.match(r"cpus: \d+; OPENBLAS_NUM_THREADS=\S+, OMP_NUM_THREADS=\S+, numexpr threads \d+", line("cpus: "))
    assert "available: " in line("HBNN kernel: ")
    assert line("data ")


def test_plot_writes_a_png_of_the_training_log(trained, project):
    _result, _prefix = trained
    output = project / "curves.png"
    result = dualnet_cli("plot", project / "train.log", "-o", output, cwd=project)
    assert result.returncode == 0, result.stderr
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_log_without_training_lines_is_a_clear_error(project):
    log = project / "empty.log"
    log.write_text("I1121 12:00:00.000000  1234 net.py:1] Network initialization done.\n")
    result = dualnet_cli("plot", log, "-o", project / "none.png", cwd=project)
    assert_one_line_error(result, str(log), "no training or test lines")
    assert not (project / "none.png").exists()
