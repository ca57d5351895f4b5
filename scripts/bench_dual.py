#!/usr/bin/env python
"""The dual net against the single net: accuracy, throughput, memory and wire bytes.

Two nets on Fashion-MNIST: cnn4 cut at pool2 (the cut `dualnet split
--suggest` names as balanced) and LeNet cut at pool1 (a middle pooling
layer). Every run goes through the real command line, `python -m dualnet
train --solver S` (a dual solver runs both roles here, as two processes), on
a copy of the net's single-net solver written to the work folder with a
dual_param block and a private snapshot_prefix; each run's solver, merged
output (out.log) and role logs (snap_net1.log, snap_net2.log) stay there.

  accuracy  final test accuracy after --iterations iterations (same
            random_seed) of the single net, ADMM LOCKSTEP, ADMM PIPELINED
            (max_staleness 1) and DUAL_LAYER (consistency_weight 0.01, LOCKSTEP;
            Caffe's weight 1 diverges), plain and with the normalised
            consistency loss; the full test set at the last iteration.
            --variants picks some of them (the ratios need `single`).
            All start from the single net's initial weights (a max_iter 0 run
            saves them; the others get --weights), since the halves of a dual
            net fill their weights from the seed in another order (--init seed:
            each run fills its own). Target: neither ADMM schedule more than
            0.5 point below the single net. Every process has one BLAS thread (the
            roles' summation order: LOCKSTEP then tracks the single net to
            float rounding).
  speed     training samples/s over a steady window of iterations (glog
            timestamps of the display lines; no test net) of the single net with
            one BLAS thread and with two, and of the pair PIPELINED and LOCKSTEP
            with one thread per role; rounds interleaved (the order alternates),
            medians. Target (cnn4): PIPELINED >= 1.6x the 1-thread single net.
  memory    peak RSS at --memory-batch of the single net (its process's
            ru_maxrss) and of each role ("Peak memory (RSS) of netK" in its log),
            both schedules, at the net's cut and, when another, at the cut
            `dualnet split --suggest` names as balancing memory (cnn4: pool1;
            the FLOP-balanced pool2 leaves net1 most of the large early feature
            maps); then the largest batch that keeps every process under
            --memory-cap MB (default: the single net's peak at --memory-batch),
            searched by doubling and bisecting with 3-iteration probes. Target:
            the larger role at most 0.6 of the single net. First, per cut, the
            bound the cut itself sets: the larger half's share of the unsplit
            net's activation bytes, as `dualnet split --suggest` counts them.
  wire      bytes per iteration of each cut encoding from the roles' "Wire:"
            lines (net1 sends FORWARD, receives TARGET), a short LOCKSTEP run each.
            Target: FORWARD FLOAT32 / SIGN_BITS >= 16x.

The default run does everything at full length (10,000 iterations, 3 rounds)
and takes well over an hour on two cores; --quick (300 iterations, 1 round,
short windows, small batches) checks the script in a few minutes.

    python scripts/bench_dual.py                             # everything, full length
    python scripts/bench_dual.py --quick
    python scripts/bench_dual.py --nets cnn4 --parts speed --rounds 5
"""
import argparse
import dataclasses
import math
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from bench_common import (THREAD_VARIABLES, Children, RunFailed, command_line, display_times,  # noqa: E402
                          exit_on_signals, markdown_table, read_glog, tail, thread_environment)
from interleave import median, spread  # noqa: E402

ACCURACY_TOLERANCE = 0.5        # points, both ADMM schedules against the single net
SPEED_TARGET = {"cnn4": 1.6}    # PIPELINED pair / single net with one thread
MEMORY_TARGET = 0.6             # larger role's peak RSS / single net's
WIRE_TARGET = 16.0              # FORWARD bytes FLOAT32 / SIGN_BITS
STUDY_BATCH_RATIO = 1.57        # the original dual-net study: batches that fit, pair / single
PARTS = ("accuracy", "speed", "memory", "wire")
ENCODINGS = ("FLOAT32", "FLOAT16", "SIGN_BITS")


@dataclass
class NetCase:
    name: str
    solver: str          # the single net's solver, relative to ROOT
    cut: str             # the cut --suggest names as balancing the FLOPs
    memory_cut: str      # the cut --suggest names as balancing the activation bytes


NETS = {
    "lenet": NetCase("lenet", "solvers/lenet_solver.prototxt", "pool1", "pool1"),
    "cnn4": NetCase("cnn4", "solvers/cnn4_solver.prototxt", "pool2", "pool1"),
}

# The dual runs: (key, row label, dual_param fields)
LOCKSTEP = ("lockstep", "ADMM LOCKSTEP", dict(mode="ADMM", schedule="LOCKSTEP"))
PIPELINED = ("pipelined", "ADMM PIPELINED (staleness 1)", dict(mode="ADMM", schedule="PIPELINED", max_staleness=1))
DUAL_LAYER = ("dual_layer", "DUAL_LAYER (w 0.01, LOCKSTEP)",
              dict(mode="DUAL_LAYER", schedule="LOCKSTEP", consistency_weight=0.01))
DUAL_LAYER_NORMALIZED = ("dual_layer_normalized", "DUAL_LAYER normalised (w 0.01, LOCKSTEP)",
                         dict(DUAL_LAYER[2], normalize_consistency=True))
SINGLE = ("single", "single net", None)
ACCURACY_VARIANTS = {variant[0]: variant for variant in (SINGLE, LOCKSTEP, PIPELINED, DUAL_LAYER, DUAL_LAYER_NORMALIZED)}

QUICK = dict(iterations=300, rounds=1, speed_window="20,120", memory_batch=256, search_resolution=0.25)
FULL = dict(iterations=10000, rounds=3, speed_window="100,600", memory_batch=1024, search_resolution=1 / 16)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Default: everything at full length, which takes well over "
        "an hour on two cores (--quick: a few minutes).",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", default="lenet,cnn4", help="comma-separated, of: lenet, cnn4 (default both)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of: {', '.join(PARTS)} (default all)")
    parser.add_argument("--quick", action="store_true",
                        help="check the script: 300 iterations, 1 round, speed window 20..120, memory batch 256, "
                             "coarse batch search (options given explicitly still win)")
    parser.add_argument("--iterations", type=int, help="accuracy runs: training iterations (default 10000)")
    parser.add_argument("--variants", default=",".join(ACCURACY_VARIANTS),
                        help=f"accuracy runs: comma-separated, of: {', '.join(ACCURACY_VARIANTS)} (default all)")
    parser.add_argument("--init", choices=("shared", "seed"), default="shared",
                        help="accuracy runs: start every run from the single net's initial weights (shared, "
                             "default), or let each run fill its own from the solver's random_seed (seed)")
    parser.add_argument("--rounds", type=int, help="speed: interleaved rounds, medians reported (default 3)")
    parser.add_argument("--speed-window", help="speed: iterations LO,HI timed (default 100,600)")
    parser.add_argument("--memory-batch", type=int, help="memory: training batch for the peak RSS (default 1024)")
    parser.add_argument("--memory-cap", type=float,
                        help="memory: MB cap for the largest-batch search (default: the single net's peak RSS "
                             "at --memory-batch)")
    parser.add_argument("--search-resolution", type=float,
                        help="memory: stop bisecting when the bracket is within this fraction (default 1/16)")
    parser.add_argument("--workdir", help="solvers and logs of every run (default <repo>/runs/bench_dual)")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.nets = _choices(args.nets, NETS, "--nets", parser)
    args.parts = _choices(args.parts, PARTS, "--parts", parser)
    args.variants = _choices(args.variants, ACCURACY_VARIANTS, "--variants", parser)
    try:
        args.window = tuple(int(v) for v in args.speed_window.split(","))
    except ValueError:
        args.window = ()
    if len(args.window) != 2 or not 0 < args.window[0] < args.window[1]:
        parser.error(f"--speed-window takes LO,HI with 0 < LO < HI, not {args.speed_window!r}")
    if args.iterations < 1 or args.rounds < 1 or args.memory_batch < 1:
        parser.error("--iterations, --rounds and --memory-batch must be positive")
    args.workdir = os.path.abspath(args.workdir or os.path.join(ROOT, "runs", "bench_dual"))
    return args


def _choices(text, known, option, parser):
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in known]
    if unknown or not chosen:
        parser.error(f"{option}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(known)}")
    return chosen


def shown(path):
    """A path as the report shows it: relative to the working directory when under it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def progress(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- solvers and runs
class Runs:
    """Writes the solvers, runs them through `python -m dualnet train`, reads their logs."""

    def __init__(self, workdir, children):
        import dualnet  # noqa: F401  (before NumPy, as the command does)
        from dualnet import dualnet_pb2
        from dualnet.io.text import read_net_param, read_solver_param

        self.pb, self.read_net_param, self.read_solver_param = dualnet_pb2, read_net_param, read_solver_param
        self.workdir, self.children = workdir, children
        self.commands = []

    def solver(self, case, run_dir, *, max_iter, display, dual=None, batch=None, test=False, save_final=False):
        """A copy of `case`'s single-net solver for one run, written to run_dir/solver.prototxt.

        test=False removes the test nets (no test pass, nothing built for them);
        test=True tests at the last iteration (and every test_interval that divides max_iter).
        """
        from google.protobuf import text_format
        from dualnet.solver import resolve_path

        source = os.path.join(ROOT, case.solver)
        param = self.read_solver_param(source)
        net_path = os.path.abspath(resolve_path(param.net, source, "net"))
        if batch is not None:
            net, _ = self.read_net_param(net_path)
            for layer in net.layer:
                if layer.type == "Data" and any(rule.phase == self.pb.TRAIN for rule in layer.include):
                    layer.data_param.batch_size = batch
            net_path = os.path.join(run_dir, "net.prototxt")
            with open(net_path, "w") as f:
                f.write(text_format.MessageToString(net))
        param.net = net_path
        param.max_iter = max_iter
        param.display = display
        param.snapshot = 0
        param.snapshot_after_train = save_final
        param.snapshot_prefix = os.path.join(run_dir, "snap")
        param.test_initialization = False
        if test:
            if not param.test_interval or max_iter % param.test_interval:
                param.test_interval = max_iter
        else:
            del param.test_iter[:]
            param.test_interval = 0
        if dual is not None:
            dual_param = param.dual_param
            dual_param.split_at = case.cut
            for field, value in dual.items():
                if isinstance(value, str):
                    value = getattr(self.pb.DualParameter, value)
                setattr(dual_param, field, value)
        path = os.path.join(run_dir, "solver.prototxt")
        with open(path, "w") as f:
            f.write(f"# bench_dual.py: a copy of {case.solver} for one run\n")
            f.write(text_format.MessageToString(param))
        return path

    def fresh_dir(self, *parts):
        path = os.path.join(self.workdir, *parts)
        shutil.rmtree(path, ignore_errors=True)     # the role logs append: start clean
        os.makedirs(path)
        return path

    def train(self, label, run_dir, solver, threads=None, timeout=None, weights=None):
        """Run `dualnet train --solver S [--weights W]`; its output goes to run_dir/out.log."""
        command = [sys.executable, "-m", "dualnet", "train", "--solver", solver]
        if weights:
            command += ["--weights", weights]
        env = thread_environment(threads) if threads else None
        threads_text = " ".join(f"{name}={threads}" for name in THREAD_VARIABLES) + " " if threads else ""
        self.commands.append((label, threads_text + shlex.join(["python", *command[1:]])))
        started = time.monotonic()
        result = self.children.run(command, os.path.join(run_dir, "out.log"), label, env=env, timeout=timeout)
        progress(f"  {label}: {time.monotonic() - started:.1f} s")
        return result

    @staticmethod
    def role_log(run_dir, role):
        return os.path.join(run_dir, f"snap_{role}.log")


def case_net(case):
    """(NetParameter, origin) of the case's single-net solver's net."""
    from dualnet.io.text import read_net_param, read_solver_param
    from dualnet.solver import resolve_path

    source = os.path.join(ROOT, case.solver)
    return read_net_param(resolve_path(read_solver_param(source).net, source, "net"))


def cut_payload(case):
    """(samples, values per sample) at the cut in the TRAIN net, for the expected wire bytes."""
    from dualnet import dualnet_pb2 as pb
    from dualnet.dual.split import split_net

    net, origin = case_net(case)
    shape = split_net(net, case.cut, origin=origin).cut_shapes[pb.TRAIN]
    return int(shape[0]), int(math.prod(shape[1:]))


def larger_half_shares(case, cuts):
    """{cut: the larger half's activation bytes / the unsplit net's}, as `dualnet split --suggest`
    counts them (data and diff of every blob; the ratio does not depend on the batch)."""
    from dualnet.dual.split import candidate_cuts, unsplit_activation_bytes

    net, origin = case_net(case)
    rows = {row.blob: row for row in candidate_cuts(net, origin)}
    whole = unsplit_activation_bytes(net, origin)
    return {cut: max(rows[cut].net1_bytes, rows[cut].net2_bytes) / whole for cut in cuts}


# ---------------------------------------------------------------- log readers
def test_accuracies(path, last_iteration, label):
    """{iteration: accuracy} of every `Iteration N, Testing net (#0)` in the log; RunFailed without
    one at `last_iteration`."""
    testing, values = None, {}
    for _, _, text in read_glog(path):
        match = re.match(r"Iteration (\d+), Testing net \(#0\)", text)
        if match:
            testing = int(match.group(1))
            continue
        match = re.match(r"\s*Test net output #\d+: accuracy = (\S+)", text)
        if match and testing is not None:
            values[testing] = float(match.group(1))
    if last_iteration not in values:
        raise RunFailed(label, path, f"has no test accuracy at iteration {last_iteration}")
    return values


def window_rate(paths, window, batch, label):
    """Samples/s between the display lines of iterations window[0] and window[1]; the slowest log counts."""
    rates = []
    for path in paths:
        times = display_times(read_glog(path))
        if window[0] not in times or window[1] not in times:
            raise RunFailed(label, path, f"has no display lines for iterations {window[0]} and {window[1]}")
        rates.append(batch * (window[1] - window[0]) / (times[window[1]] - times[window[0]]))
    return min(rates)


def role_peaks(run_dir, label):
    peaks = {}
    for role in ("net1", "net2"):
        path = Runs.role_log(run_dir, role)
        for _, _, text in read_glog(path):
            match = re.match(r"Peak memory \(RSS\) of (net[12]): ([\d.]+) MB", text)
            if match:
                peaks[match.group(1)] = float(match.group(2))
        if role not in peaks:
            raise RunFailed(label, path, f"has no 'Peak memory (RSS) of {role}' line")
    return peaks


def wire_bytes(path, label):
    """(sent, received, iterations averaged) of the last `Wire:` line."""
    found = None
    for _, _, text in read_glog(path):
        match = re.match(r"\s*Wire: (\S+) bytes sent, (\S+) bytes received per iteration \(mean over (\d+)\)", text)
        if match:
            found = (float(match.group(1)), float(match.group(2)), int(match.group(3)))
    if found is None:
        raise RunFailed(label, path, "has no 'Wire: ... bytes sent' line")
    return found


# ---------------------------------------------------------------- formatting
def pct(value):
    return f"{100 * value:.2f} %"


def verdict(ok):
    return "PASS" if ok else "MISS"


def failed_row(measure, error):
    return [measure, "failed", f"see {shown(error.log_path)}", "—", "—", "FAILED"]


class Report:
    def __init__(self):
        self.rows, self.details, self.failures = {}, {}, []

    def row(self, net, *cells):
        self.rows.setdefault(net, []).append(list(cells))

    def detail(self, net, text):
        self.details.setdefault(net, []).append(text)

    def failure(self, net, measure, error):
        self.failures.append(error)
        self.row(net, *failed_row(measure, error))
        progress(f"  FAILED: {error}\n{tail(error.log_path)}")


# ---------------------------------------------------------------- the four parts
def initial_weights(case, runs):
    """The single net's weights at iteration 0 (its fillers, its random_seed), as a .caffemodel."""
    run_dir = runs.fresh_dir(case.name, "accuracy", "init")
    solver = runs.solver(case, run_dir, max_iter=0, display=0, save_final=True)
    runs.train(f"{case.name} initial weights", run_dir, solver, timeout=600)
    path = os.path.join(run_dir, "snap_iter_0.caffemodel")
    if not os.path.exists(path):
        raise RunFailed(f"{case.name} initial weights", os.path.join(run_dir, "out.log"), f"did not write {path}")
    return path


def bench_accuracy(case, args, runs, report):
    n = args.iterations
    variants = [ACCURACY_VARIANTS[key] for key in args.variants]
    accuracy = {}
    weights = None
    if args.init == "shared":
        try:
            weights = initial_weights(case, runs)
        except RunFailed as error:
            report.failure(case.name, "accuracy: initial weights", error)
            return
        report.detail(case.name, f"accuracy: every run starts from the single net's initial weights "
                                 f"({shown(weights)}, `--weights`); --init seed lets each run fill its own")
    for key, label, dual in variants:
        run_dir = runs.fresh_dir(case.name, "accuracy", key)
        solver = runs.solver(case, run_dir, max_iter=n, display=100, dual=dual, test=True)
        what = f"{case.name} accuracy {label}"
        measure = f"accuracy @{n} it, {label}"
        try:
            # one BLAS thread per process, as each role has: the same summation order
            runs.train(what, run_dir, solver, threads=1, timeout=600 + 1.0 * n, weights=weights)
            log = os.path.join(run_dir, "out.log") if dual is None else runs.role_log(run_dir, "net2")
            tests = test_accuracies(log, n, what)
            accuracy[key] = tests[n]
            last = sorted(tests)[-3:]
            report.detail(case.name, f"accuracy {label}: last tests " + ", ".join(
                f"{100 * tests[i]:.2f} % @{i}" for i in last)
                + f" (mean {100 * sum(tests[i] for i in last) / len(last):.2f} %)")
        except RunFailed as error:
            report.failure(case.name, measure, error)
            continue
        if key == "single":
            report.row(case.name, measure, pct(accuracy[key]), "—", "—", "—", "—")
            continue
        if "single" not in accuracy:
            missing = "single net failed" if "single" in args.variants else "single net not run"
            report.row(case.name, measure, pct(accuracy[key]), missing, "—", "—", "—")
            continue
        diff = 100 * (accuracy[key] - accuracy["single"])
        target = key in ("lockstep", "pipelined")
        # the split must not cost accuracy: ending higher than the single net passes
        report.row(case.name, measure, pct(accuracy[key]), f"single {pct(accuracy['single'])}", f"{diff:+.2f} pt",
                   f">= −{ACCURACY_TOLERANCE} pt" if target else "— (study: −0.4…−3 pt)",
                   verdict(diff >= -ACCURACY_TOLERANCE) if target else "—")


def bench_speed(case, args, runs, report):
    lo, hi = args.window
    display = math.gcd(lo, hi)
    batch = None
    configs = [("single1", "single net, 1 thread", None, 1), ("single2", "single net, 2 threads", None, 2),
               ("pipelined", "pair PIPELINED, 1+1 threads", PIPELINED[2], 1),
               ("lockstep", "pair LOCKSTEP, 1+1 threads", LOCKSTEP[2], 1)]
    rates = {key: [] for key, *_ in configs}
    broken = {}
    for r in range(args.rounds):
        for key, label, dual, threads in (configs if r % 2 == 0 else configs[::-1]):
            if key in broken:
                continue
            run_dir = runs.fresh_dir(case.name, "speed", f"{key}_round{r + 1}")
            solver = runs.solver(case, run_dir, max_iter=hi + 1, display=display, dual=dual)
            batch = batch or _train_batch(runs, solver)
            what = f"{case.name} speed {label} (round {r + 1})"
            try:
                runs.train(what, run_dir, solver, threads=threads, timeout=600 + 5.0 * hi)
                logs = ([os.path.join(run_dir, "out.log")] if dual is None
                        else [runs.role_log(run_dir, role) for role in ("net1", "net2")])
                rates[key].append(window_rate(logs, (lo, hi), batch, what))
            except RunFailed as error:
                broken[key] = error
                report.failures.append(error)
                progress(f"  FAILED: {error}\n{tail(error.log_path)}")
    med = {key: median(values) for key, values in rates.items() if values}
    window = f"it {lo}..{hi}, batch {batch}, median of {args.rounds}"
    for key, label, dual, threads in configs:
        measure = f"samples/s, {label}"
        if key in broken:
            report.row(case.name, *failed_row(measure, broken[key]))
            continue
        value = f"{med[key]:.0f}"
        if key == "single1":
            report.row(case.name, measure, value, f"({window})", "—", "—", "—")
        elif key == "single2":
            ref = f"single 1 thread {med['single1']:.0f}" if "single1" in med else "—"
            ratio = f"{med[key] / med['single1']:.2f}x" if "single1" in med else "—"
            report.row(case.name, measure, value, ref, ratio, "—", "—")
        else:
            target = SPEED_TARGET.get(case.name) if key == "pipelined" else None
            if "single1" in med:
                ratio = med[key] / med["single1"]
                report.row(case.name, measure, value, f"single 1 thread {med['single1']:.0f}", f"{ratio:.2f}x",
                           f">= {target}x" if target else "—", verdict(ratio >= target) if target else "—")
            if "single2" in med:
                report.row(case.name, f"samples/s, {label} vs 2 threads", value,
                           f"single 2 threads {med['single2']:.0f}", f"{med[key] / med['single2']:.2f}x", "—", "—")
    for key, label, *_ in configs:
        if rates[key]:
            report.detail(case.name, f"speed {label}: rounds {', '.join(f'{v:.0f}' for v in rates[key])} samples/s "
                                     f"(spread {spread(rates[key])})")


def _train_batch(runs, solver_path):
    param = runs.read_solver_param(solver_path)
    net, _ = runs.read_net_param(param.net)
    for layer in net.layer:
        if layer.type == "Data" and any(rule.phase == runs.pb.TRAIN for rule in layer.include):
            return layer.data_param.batch_size
    raise SystemExit(f"bench_dual: {param.net} has no TRAIN Data layer")


MAX_GROWTH = 16      # the batch search doubles up to this factor of its start


class MemoryProbe:
    """Peak RSS (MB) of the single net or each role at a batch; 3 iterations, no test net; cached."""

    def __init__(self, case, runs):
        self.case, self.runs, self.cache = case, runs, {}

    def peaks(self, kind, batch, cut=None):
        """{'single': MB} or {'net1': MB, 'net2': MB} of the pair cut at `cut` (default: the case's);
        RunFailed if the run fails."""
        cut = None if kind == "single" else cut or self.case.cut
        if (kind, batch, cut) not in self.cache:
            dual = {"single": None, "lockstep": LOCKSTEP[2], "pipelined": PIPELINED[2]}[kind]
            name = f"{kind}_batch{batch}" if cut is None else f"{kind}_{cut}_batch{batch}"
            run_dir = self.runs.fresh_dir(self.case.name, "memory", name)
            case = self.case if cut is None else dataclasses.replace(self.case, cut=cut)
            solver = self.runs.solver(case, run_dir, max_iter=3, display=0, dual=dual, batch=batch)
            what = f"{self.case.name} memory {name}"
            result = self.runs.train(what, run_dir, solver, threads=1, timeout=1800)
            self.cache[(kind, batch, cut)] = ({"single": result.max_rss_mb} if dual is None
                                              else role_peaks(run_dir, what))
        return self.cache[(kind, batch, cut)]

    def largest_batch(self, kind, start, cap, resolution, cut=None):
        """The largest batch whose every process stays under `cap` MB, as text ("1536", or ">= 16384"
        when it still fits at MAX_GROWTH times `start`): double from `start`, then bisect."""
        def fits(batch):
            return max(self.peaks(kind, batch, cut).values()) <= cap
        if fits(start):
            low, high = start, None
            while high is None:
                if low * 2 > start * MAX_GROWTH:
                    return low, f">= {low}"
                if fits(low * 2):
                    low *= 2
                else:
                    high = low * 2
        else:
            high, low = start, start // 2
            while low >= 1 and not fits(low):
                high, low = low, low // 2
            if low < 1:
                return 0, "0 (batch 1 is over the cap)"
        while high - low > max(1, int(resolution * low)):
            middle = (low + high) // 2
            if fits(middle):
                low = middle
            else:
                high = middle
        return low, str(low)


def bench_memory(case, args, runs, report):
    batch = args.memory_batch
    probe = MemoryProbe(case, runs)
    try:
        single = probe.peaks("single", batch)["single"]
    except RunFailed as error:
        report.failure(case.name, f"peak RSS @ batch {batch}, single net", error)
        return
    report.row(case.name, f"peak RSS @ batch {batch}, single net", f"{single:.0f} MB", "—", "—", "—", "—")
    cuts = list(dict.fromkeys((case.cut, case.memory_cut)))
    for cut, share in larger_half_shares(case, cuts).items():
        # what the target asks of RSS, asked of the activations alone: the bound the cut sets
        report.row(case.name, f"activation bytes at {cut}, larger half / unsplit net (split --suggest)",
                   f"{share:.2f}", "—", "—", f"<= {MEMORY_TARGET}", verdict(share <= MEMORY_TARGET))
    pairs = [(cut, kind, f"{label} at {cut}") for cut in cuts
             for kind, label in (("lockstep", "LOCKSTEP"), ("pipelined", "PIPELINED"))]
    for cut, kind, label in pairs:
        try:
            peaks = probe.peaks(kind, batch, cut)
        except RunFailed as error:
            report.failure(case.name, f"peak RSS @ batch {batch}, pair {label}", error)
            continue
        for role in ("net1", "net2"):
            report.row(case.name, f"peak RSS @ batch {batch}, {label} {role}", f"{peaks[role]:.0f} MB",
                       f"single {single:.0f} MB", f"{peaks[role] / single:.2f}", "—", "—")
        larger = max(peaks.values())
        report.row(case.name, f"peak RSS @ batch {batch}, {label} larger role", f"{larger:.0f} MB",
                   f"single {single:.0f} MB", f"{larger / single:.2f}", f"<= {MEMORY_TARGET}",
                   verdict(larger / single <= MEMORY_TARGET))
    cap = args.memory_cap or single
    try:
        single_max, single_text = probe.largest_batch("single", batch, cap, args.search_resolution)
    except RunFailed as error:
        report.failure(case.name, f"largest batch under {cap:.0f} MB, single net", error)
        return
    report.row(case.name, f"largest batch under {cap:.0f} MB, single net", single_text, "—", "—", "—", "—")
    for cut, kind, label in pairs:
        measure = f"largest batch under {cap:.0f} MB, pair {label}"
        try:
            pair_max, pair_text = probe.largest_batch(kind, max(1, single_max), cap, args.search_resolution, cut)
        except RunFailed as error:
            report.failure(case.name, measure, error)
            continue
        ratio = f"{pair_max / single_max:.2f}x" if single_max else "—"
        report.row(case.name, measure, pair_text, f"single {single_text}", ratio,
                   f"— (study: {STUDY_BATCH_RATIO}x)", "—")
    probes = sorted(probe.cache.items(), key=lambda item: (item[0][0], item[0][2] or "", item[0][1]))
    report.detail(case.name, "memory probes (batch: peak MB): " + "; ".join(
        f"{kind}{' at ' + cut if cut else ''} {b}: " + "/".join(f"{v:.0f}" for v in peaks.values())
        for (kind, b, cut), peaks in probes))


def bench_wire(case, args, runs, report):
    samples, values = cut_payload(case)
    # the arrays of one FORWARD: the cut in its encoding, labels (float32) and sample ids (int64)
    cut_bytes = {"FLOAT32": 4 * values, "FLOAT16": 2 * values, "SIGN_BITS": 8 * math.ceil(values / 64) + 4}
    forward, target = {}, {}
    for encoding in ENCODINGS:
        run_dir = runs.fresh_dir(case.name, "wire", encoding.lower())
        solver = runs.solver(case, run_dir, max_iter=21, display=20, dual=dict(LOCKSTEP[2], encoding=encoding))
        what = f"{case.name} wire {encoding}"
        try:
            runs.train(what, run_dir, solver, threads=1, timeout=900)
            sent1, received1, count1 = wire_bytes(runs.role_log(run_dir, "net1"), what)
            sent2, received2, count2 = wire_bytes(runs.role_log(run_dir, "net2"), what)
        except RunFailed as error:
            report.failure(case.name, f"FORWARD bytes/it, {encoding}", error)
            continue
        forward[encoding], target[encoding] = sent1, received1
        expected = samples * (cut_bytes[encoding] + 4 + 8)
        report.detail(case.name, f"wire {encoding}: net1 sent {sent1:.0f} / received {received1:.0f} (mean over "
                                 f"{count1}); net2 sent {sent2:.0f} / received {received2:.0f} (mean over {count2}); "
                                 f"FORWARD arrays alone {expected} bytes")
        for name, mine, theirs in (("FORWARD", sent1, received2), ("TARGET", received1, sent2)):
            if abs(mine - theirs) > 0.01 * max(mine, theirs):
                report.detail(case.name, f"NOTE: {encoding} {name}: net1 counts {mine:.0f} bytes, "
                                         f"net2 {theirs:.0f}")
        if sent1 < expected:
            report.detail(case.name, f"NOTE: {encoding} FORWARD {sent1:.0f} bytes is less than its arrays "
                                     f"({expected})")
    for encoding in ENCODINGS:
        if encoding not in forward:
            continue
        ratio = forward["FLOAT32"] / forward[encoding] if "FLOAT32" in forward else None
        is_target = encoding == "SIGN_BITS"
        report.row(case.name, f"FORWARD bytes/it, {encoding}", f"{forward[encoding]:,.0f}",
                   f"FLOAT32 {forward['FLOAT32']:,.0f}" if ratio else "—", f"{ratio:.1f}x" if ratio else "—",
                   f">= {WIRE_TARGET:.0f}x" if is_target else "—",
                   verdict(ratio >= WIRE_TARGET) if is_target and ratio else "—")
    for encoding in ENCODINGS:
        if encoding in target:
            report.row(case.name, f"TARGET bytes/it, {encoding} run", f"{target[encoding]:,.0f}",
                       f"FLOAT32 run {target['FLOAT32']:,.0f}" if "FLOAT32" in target else "—",
                       f"{target['FLOAT32'] / target[encoding]:.1f}x" if "FLOAT32" in target else "—", "—", "—")


BENCHES = {"accuracy": bench_accuracy, "speed": bench_speed, "memory": bench_memory, "wire": bench_wire}


def reproduce(args, net, part=None):
    line = ["python scripts/bench_dual.py", f"--nets {net}", f"--parts {part or ','.join(args.parts)}"]
    if args.quick:
        line.append("--quick")
    if "accuracy" in (part or args.parts):
        line.append(f"--iterations {args.iterations}" + (" --init seed" if args.init == "seed" else ""))
        if args.variants != list(ACCURACY_VARIANTS):
            line.append(f"--variants {','.join(args.variants)}")
    if "speed" in (part or args.parts):
        line.append(f"--rounds {args.rounds} --speed-window {args.window[0]},{args.window[1]}")
    if "memory" in (part or args.parts):
        line.append(f"--memory-batch {args.memory_batch}" + (f" --memory-cap {args.memory_cap:g}"
                                                             if args.memory_cap else ""))
    return " ".join(line)


def main(argv=None):
    args = parse_args(argv)
    exit_on_signals()
    children = Children(cwd=ROOT)
    os.makedirs(args.workdir, exist_ok=True)
    runs = Runs(args.workdir, children)
    report = Report()
    header = [f"Command: `{command_line()}`",
              f"Work folder (solvers and logs of every run): {args.workdir}",
              f"Host: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}; "
              f"started {time.strftime('%Y-%m-%d %H:%M')}"]
    print("\n".join(header), flush=True)
    started = time.monotonic()
    interrupted = False
    try:
        for net in args.nets:
            for part in args.parts:
                progress(f"{net}: {part}")
                BENCHES[part](NETS[net], args, runs, report)
    except (KeyboardInterrupt, SystemExit):       # Ctrl-C, or SIGTERM / SIGHUP (exit_on_signals)
        interrupted = True
        progress("interrupted: stopping the runs; the tables below hold what was measured")
    finally:
        children.stop_all()
    lines = list(header) + [f"Took {(time.monotonic() - started) / 60:.1f} min; load average at end "
                            f"{os.getloadavg()[0]:.2f}", ""]
    for net in args.nets:
        case = NETS[net]
        lines += [f"### {net} cut at {case.cut} ({case.solver}, Fashion-MNIST)", "",
                  f"Reproduce: `{reproduce(args, net)}`", ""]
        lines.append(markdown_table(["Measurement", "Value", "Reference", "Ratio", "Target", "Result"],
                                    report.rows.get(net, [])))
        if report.details.get(net):
            lines += [""] + [f"- {text}" for text in report.details[net]]
        lines.append("")
    lines += [f"Each run is `python -m dualnet train --solver <run folder>/solver.prototxt` (output in out.log, "
              f"the roles' own logs in snap_net1.log / snap_net2.log); the list: "
              f"{os.path.join(args.workdir, 'commands.txt')}"]
    with open(os.path.join(args.workdir, "commands.txt"), "w") as f:
        f.writelines(f"{label}: {command}\n" for label, command in runs.commands)
    text = "\n".join(lines[len(header):])
    print(text)
    with open(os.path.join(args.workdir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if report.failures:
        print(f"\nbench_dual: {len(report.failures)} run(s) failed:", file=sys.stderr)
        for error in report.failures:
            print(f"  {error}", file=sys.stderr)
        return 1
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
