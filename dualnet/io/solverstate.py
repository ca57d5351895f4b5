"""Binary .solverstate files (Caffe's SolverState) and snapshot file naming.

A snapshot is a pair written atomically: `<prefix>_iter_N.caffemodel` (the
weights) and `<prefix>_iter_N.solverstate` (iter, learned_net, history,
current_step, plus dualnet's extensions: solver type, random generator and
data cursors, so that a resume continues exactly).
"""
import os

from google.protobuf.message import DecodeError

from .. import dualnet_pb2 as pb
from ..errors import SolverError
from .atomic import atomic_write


def snapshot_paths(prefix, iteration):
    base = f"{prefix}_iter_{iteration}"
    return base + ".caffemodel", base + ".solverstate"


def write_state(path, state):
    atomic_write(path, state.SerializeToString())


def _looks_like_text(payload):
    head = payload[:256]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return any(word in text for word in ("layer", "net", "base_lr", "name:", "{"))


_PASS_A_STATE = "--snapshot takes a .solverstate written by a snapshot (<prefix>_iter_N.solverstate)"


def read_state(path):
    """The SolverState in `path`; a wrong kind of file gets a message saying what to pass."""
    try:
        with open(path, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise SolverError(f"{path}: no such snapshot file") from None
    if path.endswith(".caffemodel"):
        raise SolverError(
            f"{path}: is a .caffemodel (weights only); pass its .solverstate to --snapshot "
            "to resume, or the .caffemodel to --weights to fine-tune"
        )
    if _looks_like_text(payload):
        raise SolverError(f"{path}: is a text file (a prototxt?); {_PASS_A_STATE}")
    state = pb.SolverState()
    try:
        state.ParseFromString(payload)
    except DecodeError:
        raise SolverError(f"{path}: not a .solverstate (it does not parse as a SolverState message); "
                          f"{_PASS_A_STATE}") from None
    if not state.HasField("iter") and not state.history:
        raise SolverError(f"{path}: does not look like a .solverstate (no iteration, no history); {_PASS_A_STATE}")
    return state


def resolve_snapshot_argument(path):
    """Accept either file of a snapshot pair: returns the .solverstate path."""
    if path.endswith(".caffemodel"):
        candidate = path[: -len(".caffemodel")] + ".solverstate"
        if os.path.exists(candidate):
            return candidate
        raise SolverError(
            f"{path}: is a .caffemodel and no {os.path.basename(candidate)} lies beside it; "
            "--snapshot needs the .solverstate of the pair (use --weights to start from these weights)"
        )
    return path


def locate_learned_net(state, state_path):
    """The weights file named in the state, also when the pair was moved together."""
    if not state.learned_net:
        return None
    if os.path.exists(state.learned_net):
        return state.learned_net
    beside = os.path.join(os.path.dirname(os.path.abspath(state_path)), os.path.basename(state.learned_net))
    if os.path.exists(beside):
        return beside
    raise SolverError(
        f"{state_path}: its weights file {state.learned_net} is missing (looked there and beside the "
        ".solverstate); keep each snapshot's .caffemodel with its .solverstate"
    )
