"""`dualnet train` with a dual solver: one role over a link, or both locally.

    dualnet train --solver S                          both roles here, two processes,
                                                      one merged log tagged [net1]/[net2]
    dualnet train --solver S --role net2 --bind tcp://0.0.0.0:PORT
    dualnet train --solver S --role net1 --connect tcp://HOST:PORT

Each role writes its own Caffe-format log beside its snapshots
(<prefix>_net1.log, <prefix>_net2.log). When the peer dies or goes silent,
the survivor snapshots, names the last iteration both sides saved, prints the
command that resumes from it, and exits 1.

Both roles here: they run in sessions of their own, and the launcher passes
each signal on once: Ctrl-C / SIGINT and SIGHUP to net1 (which agrees the
iteration of the stop or snapshot with net2), SIGTERM to both. --log FILE gets
both roles' tagged lines.
"""
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from .. import dualnet_pb2 as pb
from ..errors import DualnetError, NumericalError, PeerError
from ..io.solverstate import resolve_snapshot_argument
from ..io.text import read_net_param
from ..layer import canonical_axis
from ..log import GlogFormatter, get_logger
from ..memory import keep_small_nets_on_the_heap, map_large_arrays, peak_rss_mb
from ..solver import resolve_path
from .protocol import Expectations, frame_limit, make_hello
from .roles import Net1Role, Net2Role, Wire
from .split import PHASES, split_from_pair, split_net
from .transport import Link, PeerStopped

log = get_logger("dualnet.dual")
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
HANDSHAKE_SECONDS = 300.0
FAREWELL_SECONDS = 1.0


def snapshot_prefix(param, solver_path):
    return param.snapshot_prefix or os.path.splitext(solver_path)[0]


def build_split(param, solver_path):
    """The Split a dual solver describes: an automatic cut, or a hand-written pair."""
    dual = param.dual_param
    if not dual.split_at:
        raise DualnetError(f"{solver_path}: dual_param needs split_at (the blob to cut at); "
                           "`dualnet split --model M --suggest` lists the candidates")
    if dual.net1 or dual.net2:
        if not (dual.net1 and dual.net2):
            raise DualnetError(f"{solver_path}: give both dual_param.net1 and dual_param.net2, or neither")
        net1, origin1 = read_net_param(resolve_path(dual.net1, solver_path, "net1"))
        net2, origin2 = read_net_param(resolve_path(dual.net2, solver_path, "net2"))
        return split_from_pair(net1, net2, dual.split_at, dual.mode, origin1, origin2,
                               dual.consistency_weight, dual.normalize_consistency)
    field = "net" if param.HasField("net") else ("net_param" if param.HasField("net_param") else None)
    if field is None:
        raise DualnetError(f"{solver_path}: a dual solver names one net with `net:` (train and test phases) "
                           "or gives dual_param.net1 / net2")
    if field == "net":
        net_param, origin = read_net_param(resolve_path(param.net, solver_path, "net"))
    else:
        from ..io.text import Origin

        net_param, origin = param.net_param, Origin(solver_path)
    return split_net(net_param, dual.split_at, dual.mode, origin, dual.consistency_weight,
                     dual.normalize_consistency)


def hello_for(role, param, split, resume_iter):
    dual = param.dual_param
    label_shape = next(iter(split.label_shapes[pb.TRAIN].values()), ())
    test_label_shape = next(iter(split.label_shapes[pb.TEST].values()), ())
    return make_hello(
        role, split_at=split.cut, cut_shape=list(split.cut_shapes[pb.TRAIN]),
        test_cut_shape=list(split.cut_shapes[pb.TEST]), batch_size=split.cut_shapes[pb.TRAIN][0],
        label_shape=list(label_shape), test_label_shape=list(test_label_shape),
        target_shape=list(split.target_shapes[pb.TRAIN]), mode=dual.mode, encoding=dual.encoding,
        schedule=dual.schedule, max_staleness=dual.max_staleness if dual.schedule == pb.DualParameter.PIPELINED else 0,
        k1=dual.k1, k2=dual.k2, resume_iter=resume_iter)


def _role_logging(role, prefix, quiet):
    """Tag this process's log lines with the role; also write the role's own log file."""
    logger = logging.getLogger("dualnet")
    for handler in logger.handlers:
        if isinstance(handler.formatter, GlogFormatter):
            handler.setFormatter(GlogFormatter(role))
    path = f"{prefix}_{role}.log"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(GlogFormatter())
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if not quiet else logging.WARNING)
    if quiet:
        handler.setLevel(logging.INFO)
        logger.setLevel(logging.INFO)
        for other in logger.handlers:
            if other is not handler and not isinstance(other, logging.FileHandler):   # --log keeps INFO
                other.setLevel(logging.WARNING)
    return path


def sign_bits_exact(split):
    """True when SIGN_BITS loses nothing: net2's one first layer is an HBNNInnerProduct that binarises
    its input with one scale per sample, i.e. over inner_product_param.axis 1 (with axis 2, say, each
    (n, c) row has its own scale, which one scale per sample cannot give)."""
    if len(split.first_layers) != 1:
        return False
    layer = next((l for l in split.net2.layer if l.name == split.first_layers[0]), None)
    if layer is None or layer.type != "HBNNInnerProduct" or not layer.hbnn_param.binarize_input:
        return False
    ndim = len(split.cut_shapes[pb.TRAIN])
    axis = layer.inner_product_param.axis
    return -ndim <= axis < ndim and canonical_axis(axis, ndim) == 1


def _lossy_warning(split, param):
    if param.dual_param.encoding != pb.DualParameter.SIGN_BITS:
        return
    if sign_bits_exact(split):
        log.info("SIGN_BITS at the cut is exact: net2's first layer '%s' binarises its input with one scale "
                 "per sample", split.first_layers[0])
    else:
        log.warning("SIGN_BITS at the cut is lossy here: net2's first layer (%s) does not binarise its input "
                    "with one scale per sample (an HBNNInnerProduct with binarize_input and axis 1 does); the "
                    "activations net2 sees are sign(a) * mean|a|", ", ".join(split.first_layers))


def run_role(args, param, role):
    from ..cli import SignalActions

    map_large_arrays()
    dual = param.dual_param
    prefix = snapshot_prefix(param, args.solver)
    param.snapshot_prefix = prefix
    log_path = _role_logging(role, prefix, args.quiet)
    split = build_split(param, args.solver)
    if role == "net2":
        _lossy_warning(split, param)
    actions = SignalActions(args.sigint_effect, args.sighup_effect)
    address = (args.bind or dual.bind) if role == "net2" else (args.connect or dual.connect)
    encoding = dual.encoding
    wire = Wire(split, encoding, role)
    cls = Net1Role if role == "net1" else Net2Role
    weights = None if args.snapshot else args.weights
    # The link comes after the nets (building them may fail on bad input) and
    # before the solver's own set-up logging finishes; a placeholder until then.
    solver = cls(param, args.solver, split, None, wire, weights=weights, action_request=actions,
                 progress=False)
    keep_small_nets_on_the_heap(solver.net)
    if args.snapshot:
        solver.restore(resolve_snapshot_argument(args.snapshot))
    hello = hello_for(role, param, split, solver.iter)
    options = dict(peer_timeout=dual.peer_timeout, heartbeat_interval=dual.heartbeat_interval,
                   max_message_bytes=dual.max_message_bytes or frame_limit(hello),
                   keys=args.keys or dual.keys or None, insecure=args.insecure)
    log.info("%s: %s %s (log: %s)", role, "binding" if role == "net2" else "connecting to", address, log_path)
    wait = max(HANDSHAKE_SECONDS, dual.peer_timeout)
    if role == "net1":
        log.info("net1: waiting up to %.0f s for net2 to answer at %s (start it with --role net2 --bind ...)",
                 wait, address)
    else:
        log.info("net2: waiting up to %.0f s for net1 (start it with --role net1 --connect <this host>:<port>)",
                 wait)
    link = Link.bind(address, role="net2", **options) if role == "net2" else Link.connect(address, role="net1", **options)
    solver.link = link
    try:
        agreed = link.handshake(hello, timeout=wait,
                                expectations=Expectations.from_hello(hello, label_names=split.label_blobs))
        log.info("Paired with %s (dualnet %s) at iteration %d", agreed.role or "the peer", agreed.dualnet_version,
                 solver.iter)
        return _train(solver, link, role, args, prefix)
    finally:
        link.close()


def _last_common_snapshot(solver):
    """The newest iteration both roles have saved (they snapshot at the same iterations)."""
    every = solver.param.snapshot
    confirmed = getattr(solver, "peer_progress", solver.iter)
    candidates = [solver.start_iter] if solver.start_iter else []
    if every:
        candidates.append((min(confirmed, solver.iter) // every) * every)
    candidates = [c for c in candidates if c > 0]
    return max(candidates) if candidates else None


def _resume_text(args, prefix, iteration):
    if iteration is None:
        return "no snapshot was written by both sides yet: start again without --snapshot"
    return (f"resume both sides from iteration {iteration}: dualnet train --solver {args.solver} "
            f"--snapshot {prefix}_net1_iter_{iteration}.solverstate (with --role, give each role its own "
            f"{prefix}_<role>_iter_{iteration}.solverstate)")


def _train(solver, link, role, args, prefix):
    solver.start_iter = solver.iter
    try:
        return _train_until_stop(solver, link, role, args, prefix)
    finally:
        solver.finish()            # peak memory, however the role stops


def _train_until_stop(solver, link, role, args, prefix):
    try:
        solver.solve()
    except PeerStopped as stopped:
        if stopped.clean:
            log.info("%s stopped at iteration %d (%s); snapshotting here too", stopped.peer, stopped.iteration,
                     stopped.reason)
            if stopped.iteration != solver.iter:
                log.warning("%s is at iteration %d, %s at %d: resume from a common snapshot", role, solver.iter,
                            stopped.peer, stopped.iteration)
            solver.snapshot()
            return 0
        solver.snapshot()
        raise DualnetError(f"{stopped.peer} stopped with an error at iteration {stopped.iteration}: "
                           f"{stopped.reason.rstrip('.')}. This side saved {solver.last_snapshot[1]}; "
                           f"{_resume_text(args, prefix, _last_common_snapshot(solver))}") from None
    except PeerError as error:
        _model, state = solver.snapshot()
        raise DualnetError(f"{str(error).rstrip('.')}. This side saved {state} (iteration {solver.iter}); "
                           f"{_resume_text(args, prefix, _last_common_snapshot(solver))}") from None
    except NumericalError as error:
        try:
            link.send(pb.WireHeader.ERROR, solver.iter, reason=str(error), timeout=FAREWELL_SECONDS)
        except DualnetError:
            pass
        raise
    if role == "net1":
        # net1 drives the end (max_iter or an agreed stop); net2 has nothing to add.
        reason = "stopped on request" if solver.requested_early_exit else "training done"
        try:
            link.send(pb.WireHeader.BYE, solver.iter, reason=f"{role} {reason} at iteration {solver.iter}",
                      timeout=FAREWELL_SECONDS)
        except DualnetError:
            pass            # net2 has finished and closed its end already
    return 0


# ---------------------------------------------------------------- both roles here

def _free_address():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def _pair_snapshots(path):
    """Both roles' .solverstate for one given file of either role."""
    state = resolve_snapshot_argument(path)
    match = re.search(r"_(net1|net2)_iter_(\d+)\.solverstate$", state)
    if not match:
        raise DualnetError(f"{path}: a dual-net snapshot is named <prefix>_net1_iter_N.solverstate "
                           "(or _net2_); pass one of those")
    other = "net2" if match.group(1) == "net1" else "net1"
    pair = {match.group(1): state, other: state[: match.start(1)] + other + state[match.end(1):]}
    if not os.path.exists(pair[other]):
        raise DualnetError(f"{path}: its partner {pair[other]} is missing; both roles resume from the same iteration")
    return pair


def run_pair(args, param):
    dual = param.dual_param
    address = dual.bind if dual.bind != DEFAULT_ADDRESS else _free_address()
    connect = dual.connect if dual.bind != DEFAULT_ADDRESS else address
    snapshots = _pair_snapshots(args.snapshot) if args.snapshot else {}
    base = [sys.executable, "-m", "dualnet", "train", "--solver", args.solver,
            "--sigint-effect", args.sigint_effect, "--sighup-effect", args.sighup_effect]
    if args.weights:
        base += ["--weights", args.weights]
    if args.quiet:
        base += ["--quiet"]
    if args.keys:
        base += ["--keys", args.keys]
    if args.insecure:
        base += ["--insecure"]
    if args.log:
        base += ["--log", args.log]        # each role appends its tagged lines: one merged file
    commands = {
        "net2": base + ["--role", "net2", "--bind", address] + (["--snapshot", snapshots["net2"]] if snapshots else []),
        "net1": base + ["--role", "net1", "--connect", connect] + (["--snapshot", snapshots["net1"]] if snapshots else []),
    }
    log.info("Running net1 and net2 here: net2 at %s", address)
    env = dict(os.environ)
    # Two processes share this machine's cores: split the BLAS threads between them.
    threads = str(max(1, (os.cpu_count() or 2) // 2))
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env.setdefault(name, threads)
    processes, pumps = {}, []
    # The roles run in sessions of their own, so a terminal's Ctrl-C reaches only this
    # launcher, which passes each signal on once (handlers, unlike SIG_IGN, reset on exec).
    previous = {signum: signal.signal(signum, _forwarder(processes)) for signum in FORWARDED}
    try:
        for role in ("net2", "net1"):
            processes[role] = subprocess.Popen(commands[role], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                               text=True, bufsize=1, env=env, start_new_session=True)
            for stream, sink in ((processes[role].stderr, sys.stderr), (processes[role].stdout, sys.stdout)):
                pump = threading.Thread(target=_pump, args=(stream, sink), daemon=True)
                pump.start()
                pumps.append(pump)
        codes = _wait_pair(processes, dual.peer_timeout)
    except BaseException:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for pump in pumps:
        pump.join(timeout=5)
    worst = max(codes.values(), key=lambda c: (c != 0, abs(c)))
    if worst != 0:
        failed = [role for role, code in codes.items() if code != 0]
        print(f"dualnet: error: {' and '.join(failed)} exited with status "
              f"{', '.join(str(codes[r]) for r in failed)} (see the lines above)", file=sys.stderr)
        return 1
    return 0


FORWARDED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGHUP", "SIGTERM") if hasattr(signal, name))


def _forwarder(processes):
    """The launcher's signal handler. Ctrl-C and SIGHUP go to net1, which agrees the iteration
    of the stop or snapshot with net2 (to net2 once net1 has exited); SIGTERM ends both."""
    def forward(signum, _frame):
        alive = [processes[role] for role in ("net1", "net2") if role in processes
                 and processes[role].poll() is None]
        for process in (alive if signum == getattr(signal, "SIGTERM", None) else alive[:1]):
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass
    return forward


def _pump(stream, sink):
    for line in stream:
        sink.write(line)
        sink.flush()


def _wait_pair(processes, peer_timeout):
    """Wait for both; once one has exited, give the other peer_timeout + 30 s before stopping it."""
    codes, first_exit = {}, None
    while len(codes) < len(processes):
        for role, process in processes.items():
            if role not in codes and process.poll() is not None:
                codes[role] = process.returncode
                first_exit = first_exit or time.monotonic()
        if first_exit and len(codes) < len(processes) and time.monotonic() - first_exit > peer_timeout + 30:
            for role, process in processes.items():
                if role not in codes:
                    process.terminate()
                    try:
                        codes[role] = process.wait(10)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        codes[role] = process.wait()
        time.sleep(0.05)
    return codes


def train_dual(args, param):
    if args.role:
        if not param.HasField("dual_param"):
            raise DualnetError(f"--role needs a solver with dual_param; {args.solver} has none")
        if args.role == "net2" and args.connect or args.role == "net1" and args.bind:
            raise DualnetError("net2 binds (--bind) and net1 connects (--connect)")
        return run_role(args, param, args.role)
    return run_pair(args, param)
