"""The `dualnet` command: train, test, time, split, keys, plot, info, pack.

Caffe's spellings are accepted too (`-solver x`, `--solver=x`,
`-sigint_effect stop`). A user error prints one line on stderr and exits 1;
a traceback means a bug.
"""
import argparse
import logging
import os
import signal
import sys

from . import __version__
from .hbnn.pack_command import add_pack_parser, pack_main


def _caffe_style(argv):
    """`-solver` -> `--solver`, `--sigint_effect` -> `--sigint-effect` (values untouched)."""
    out = []
    for token in argv:
        if token.startswith("-") and len(token) > 2 and token[1] != "-" and token[1].isalpha():
            token = "-" + token
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            token = name.replace("_", "-") + eq + value
        out.append(token)
    return out


class ArgumentParser(argparse.ArgumentParser):
    """argparse with dualnet's user-error form: one line on stderr and exit status 1 (not usage and 2).

    Sub-parsers are made with the same class, so `self.prog` names the verb.
    """

    def error(self, message):
        self.exit(1, f"dualnet: error: {message}; see '{self.prog} --help'\n")


def _parser():
    parser = ArgumentParser(prog="dualnet", description="Train Caffe-format nets on NumPy, "
                            "on one machine or split across two.")
    parser.add_argument("--version", action="version", version=f"dualnet {__version__}")
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(sub):
        sub.add_argument("--log", metavar="FILE", help="also write the log to FILE")
        sub.add_argument("--quiet", action="store_true", help="only warnings and errors; no progress bar")
        sub.add_argument("--gpu", help=argparse.SUPPRESS)

    train = verbs.add_parser("train", help="train with a solver prototxt (single or dual net)")
    train.add_argument("--solver", required=True, metavar="S", help="solver prototxt")
    train.add_argument("--weights", metavar="W[,W2]", help="initialise from .caffemodel file(s)")
    train.add_argument("--snapshot", metavar="S", help="resume from a snapshot (.solverstate or its .caffemodel)")
    train.add_argument("--sigint-effect", choices=("stop", "snapshot", "none"), default="stop",
                       help="on Ctrl-C: snapshot and stop (default), snapshot and go on, or ignore")
    train.add_argument("--sighup-effect", choices=("stop", "snapshot", "none"), default="snapshot",
                       help="on SIGHUP: snapshot and go on (default), snapshot and stop, or ignore")
    train.add_argument("--role", choices=("net1", "net2"), help="dual net: run only this role")
    train.add_argument("--bind", metavar="ADDR", help="dual net, role net2: address to bind (tcp://0.0.0.0:PORT)")
    train.add_argument("--connect", metavar="ADDR", help="dual net, role net1: net2's address (tcp://HOST:PORT)")
    train.add_argument("--insecure", action="store_true", help="dual net: allow an unencrypted link off loopback")
    train.add_argument("--keys", metavar="DIR", help="dual net: CurveZMQ key folder made by `dualnet keys`")
    common(train)

    test = verbs.add_parser("test", help="score a trained model on its TEST phase")
    test.add_argument("--model", required=True, metavar="M", help="net prototxt")
    test.add_argument("--weights", required=True, metavar="W", help=".caffemodel")
    how = test.add_mutually_exclusive_group()
    how.add_argument("--iterations", type=int, default=50, metavar="N", help="batches to score (default 50)")
    how.add_argument("--epoch", action="store_true", help="score exactly one pass over the test set")
    test.add_argument("--phase", choices=("TRAIN", "TEST"), default="TEST")
    common(test)

    timer = verbs.add_parser("time", help="time forward and backward per layer")
    timer.add_argument("--model", required=True, metavar="M")
    timer.add_argument("--weights", metavar="W")
    timer.add_argument("--iterations", type=int, default=50, metavar="N")
    timer.add_argument("--phase", choices=("TRAIN", "TEST"), default="TRAIN")
    common(timer)

    split = verbs.add_parser("split", help="cut a net into net1/net2 prototxts, or suggest a cut")
    split.add_argument("--model", required=True, metavar="M")
    split.add_argument("--at", metavar="BLOB", help="the blob to cut at")
    split.add_argument("--out", metavar="DIR", help="folder for net1.prototxt / net2.prototxt")
    split.add_argument("--mode", choices=("ADMM", "DUAL_LAYER"), default="ADMM")
    split.add_argument("--suggest", action="store_true", help="print every candidate cut's cost and the best")
    common(split)

    keys = verbs.add_parser("keys", help="make CurveZMQ certificates for a dual-net pair")
    keys.add_argument("--out", required=True, metavar="DIR")
    common(keys)

    plot = verbs.add_parser("plot", help="plot train loss and test accuracy from training logs")
    plot.add_argument("logs", nargs="+", metavar="LOG")
    plot.add_argument("-o", "--output", default="curves.png", metavar="PNG")
    common(plot)

    info = verbs.add_parser("info", help="versions, BLAS, threads, HBNN kernel, data found")
    common(info)
    common(add_pack_parser(verbs))
    parser.verb_parsers = verbs.choices
    return parser


class SignalActions:
    """Turns SIGINT / SIGHUP into the solver's requested action (Caffe's SignalHandler)."""

    def __init__(self, sigint_effect, sighup_effect):
        self.effects = {signal.SIGINT: sigint_effect}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup_effect
        self.pending = None
        for sig in self.effects:
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        effect = self.effects.get(signum, "none")
        if effect != "none":
            self.pending = effect

    def __call__(self):
        request, self.pending = self.pending, None
        return request

    @staticmethod
    def release():
        """Ignore SIGINT / SIGHUP from here on, if they were ours. Called as the command returns:
        its work is saved, and Python's shutdown would otherwise reset the handlers to the default,
        so a Ctrl-C arriving while the process exits (a second one, or one sent to both roles of a
        pair after they agreed to stop) would kill it and turn a clean exit into status 130."""
        for sig in (signal.SIGINT, getattr(signal, "SIGHUP", None)):
            if sig is not None and isinstance(getattr(signal.getsignal(sig), "__self__", None), SignalActions):
                signal.signal(sig, signal.SIG_IGN)


def _setup_logging(args):
    from .log import setup_logging

    level = logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logger = setup_logging(level=level)
    if getattr(args, "log", None):
        from .errors import DualnetError
        from .log import GlogFormatter

        folder = os.path.dirname(os.path.abspath(args.log))
        try:
            os.makedirs(folder, exist_ok=True)
            handler = logging.FileHandler(args.log)
        except OSError as error:
            raise DualnetError(f"--log {args.log}: cannot write there ({error.strerror})") from None
        handler.setFormatter(GlogFormatter())
        handler.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        for other in logger.handlers[:-1]:
            other.setLevel(level)
    if getattr(args, "gpu", None):
        logger.warning("--gpu is ignored: dualnet runs on the CPU")
    return logger


def cmd_train(args):
    from .errors import DualnetError
    from .io.text import read_solver_param

    if args.weights and args.snapshot:
        raise DualnetError("give --snapshot to resume training or --weights to fine-tune, not both")
    param = read_solver_param(args.solver)
    if args.snapshot and param.weights:
        # As Caffe's `caffe train`: a resume takes its weights from the snapshot, so the
        # solver's initial weights are neither loaded nor required to exist.
        from .log import get_logger

        get_logger("dualnet.train").info("Resuming from %s: not loading the solver's weights (%s)",
                                         args.snapshot, ", ".join(param.weights))
        param.ClearField("weights")
    if param.HasField("dual_param") or args.role:
        from .dual.launch import train_dual

        return train_dual(args, param)
    for flag in ("bind", "connect", "keys"):
        if getattr(args, flag):
            raise DualnetError(f"--{flag} is for dual-net training; {args.solver} has no dual_param "
                               f"(add a dual_param block to the solver, or drop --{flag})")
    from .memory import keep_small_nets_on_the_heap, map_large_arrays
    from .solver import Solver

    map_large_arrays()

    actions = SignalActions(args.sigint_effect, args.sighup_effect)
    interactive = sys.stderr.isatty() and not args.quiet
    snapshot = None
    if args.snapshot:
        from .io.solverstate import read_state, resolve_snapshot_argument

        snapshot = resolve_snapshot_argument(args.snapshot)
        read_state(snapshot)            # a wrong kind of file is reported before the nets are built
    solver = Solver(param, args.solver, weights=None if snapshot else args.weights, action_request=actions,
                    progress=interactive)
    keep_small_nets_on_the_heap(solver.net)
    solver.solve(resume_file=snapshot)
    return 0


def cmd_test(args):
    from .evaluate import test_model

    test_model(args.model, args.weights, iterations=None if args.epoch else args.iterations,
               phase=args.phase)
    return 0


def cmd_time(args):
    from . import dualnet_pb2 as pb
    from .log import get_logger
    from .net import Net
    from .timing import log_table, time_net

    log = get_logger("dualnet.time")
    phase = pb.TRAIN if args.phase == "TRAIN" else pb.TEST
    net = Net(args.model, phase, weights=args.weights)
    log.info("Performing Forward")
    loss = net.forward_layers()
    log.info("Initial loss: %.6g", loss)
    log.info("Performing Backward")
    net.backward_layers()
    log.info("*** Benchmark begins ***")
    log.info("Testing for %d iterations.", args.iterations)
    log_table(time_net(net, args.iterations, warmup=0))
    return 0


def cmd_split(args):
    from .dual.split_command import run_split

    return run_split(args)


def cmd_keys(args):
    from .dual.keys import make_keys

    make_keys(args.out)
    return 0


def cmd_plot(args):
    from .plot import plot_logs

    plot_logs(args.logs, args.output)
    return 0


def cmd_info(_args):
    from .info import print_info

    print_info()
    return 0


COMMANDS = {"train": cmd_train, "test": cmd_test, "time": cmd_time, "split": cmd_split,
            "keys": cmd_keys, "plot": cmd_plot, "info": cmd_info, "pack": pack_main}


def main(argv=None):
    argv = _caffe_style(sys.argv[1:] if argv is None else list(argv))
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if not args.command:
        parser.error(f"give a command: {', '.join(COMMANDS)}")
    if unknown:
        parser.verb_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    from .errors import DualnetError

    try:
        _setup_logging(args)
        try:
            return COMMANDS[args.command](args) or 0
        finally:
            SignalActions.release()
    except DualnetError as error:
        print(f"dualnet: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dualnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as error:
        if error.filename:
            print(f"dualnet: error: {error.filename}: {error.strerror}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
