"""The `dualnet` command on a single net, as a user runs it (subprocesses):
Caffe's spellings and log lines, one-line errors with exit status 1, SIGINT
snapshots, NaN stops, `test`, `time`, `info` and `plot`."""
import os
import re
import signal
import subprocess
import sys

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
"""


def write_solver(folder, name, max_iter=20, snapshot=10, display=5, base_lr=0.1):
    path = folder / name
    path.write_text(SOLVER.format(net=folder / "net.prototxt", max_iter=max_iter, snapshot=snapshot,
                                  display=display, base_lr=base_lr, prefix=folder / name.replace(".prototxt", "")))
    return path


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


def test_log_flag_writes_the_same_training_lines_to_a_file(trained, project):
    result, _prefix = trained
    written = log_texts((project / "train.log").read_text())
    shown = log_texts(result.stderr)
    training = [t for t in shown if t.startswith(("Iteration", "    Train", "    Test", "Optimization"))]
    assert [t for t in written if t.startswith(("Iteration", "    Train", "    Test", "Optimization"))] == training


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


def test_a_missing_solver_file_is_one_line_naming_it(project):
    result = dualnet_cli("train", "--solver", "no_such_solver.prototxt", cwd=project)
    assert_one_line_error(result, "no_such_solver.prototxt")


def test_a_misspelled_field_is_one_line_with_its_place_and_a_suggestion(project):
    path = project / "typo.prototxt"
    path.write_text(f'net: "{project / "net.prototxt"}"\nbase_lrr: 0.1\nmax_iter: 2\n')
    result = dualnet_cli("train", "--solver", path, cwd=project)
    assert_one_line_error(result, f"{path.name}:2:1", "base_lrr", "did you mean 'base_lr'")


def test_sigint_snapshots_at_the_stopping_iteration_and_exits_0(project):
    solver = write_solver(project, "long.prototxt", max_iter=1_000_000, snapshot=0, display=10)
    process = subprocess.Popen([sys.executable, "-m", "dualnet", "train", "--solver", str(solver)], cwd=project,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            found = re.search(r"\] Iteration (\d+) \(", line)
            if found and int(found.group(1)) >= 20:
                os.killpg(process.pid, signal.SIGINT)       # Ctrl-C in a terminal signals the group
                break
        lines += process.stderr.readlines()
        assert process.wait(60) == 0, "".join(lines[-10:])
    finally:
        if process.poll() is None:
            process.kill()
    texts = log_texts("".join(lines))
    written = [re.fullmatch(r"Snapshotting solver state to binary proto file (.*_iter_(\d+)\.solverstate)", t)
               for t in texts]
    written = [m for m in written if m]
    assert len(written) == 1, "exactly one snapshot, on the signal"
    iteration = int(written[0].group(2))
    assert iteration > 20
    assert read_state(written[0].group(1)).iter == iteration
    assert os.path.exists(written[0].group(1).replace(".solverstate", ".caffemodel"))
    assert "Optimization stopped early." in texts


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
