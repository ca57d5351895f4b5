"""`dualnet plot`: training curves from Caffe-format logs (matplotlib, optional).

Reads the lines Caffe's parse_log.py reads — `Iteration N (...), loss = L`,
`Iteration N, Testing net (#0)`, `Test net output #k: name = v` — with their
glog timestamps, per role when a dual-net log tags lines with [net1] /
[net2] after the prefix, and draws train loss and test accuracy against iterations and seconds.
"""
import datetime
import os
import re

from .errors import DualnetError

_PREFIX = re.compile(r"^[IWEF](?P<month>\d\d)(?P<day>\d\d)\s+(?P<time>\d\d:\d\d:\d\d\.\d+)\s+\d+\s+\S+\]\s"
                     r"(?:\[(?P<role>[\w-]+)\]\s)?(?P<text>.*)$")
_TRAIN = re.compile(r"Iteration (\d+) \(.*\), loss = ([-+\w.]+)")
_TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = ([-+\w.]+)")


def _seconds(match, year=2000):
    hours, minutes, seconds = match.group("time").split(":")
    stamp = datetime.datetime(year, int(match.group("month")), int(match.group("day")),
                              int(hours), int(minutes), int(float(seconds)),
                              int(round((float(seconds) % 1) * 1e6)) % 1000000)
    return stamp.timestamp()


def parse_log(path):
    """{role: {'train': [(iter, seconds, loss)], 'test': [(iter, seconds, {output: value})]}}."""
    runs, start = {}, None
    testing = {}
    try:
        handle = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise DualnetError(f"{path}: no such log file") from None
    with handle:
        for line in handle:
            match = _PREFIX.match(line.rstrip("\n"))
            if not match:
                continue
            role = match.group("role") or "net"
            seconds = _seconds(match)
            start = seconds if start is None else start
            elapsed = seconds - start
            run = runs.setdefault(role, {"train": [], "test": []})
            text = match.group("text")
            found = _TRAIN.search(text)
            if found:
                run["train"].append((int(found.group(1)), elapsed, float(found.group(2))))
                continue
            found = _TESTING.search(text)
            if found:
                testing[role] = {"iter": int(found.group(1)), "seconds": elapsed, "values": {}}
                run["test"].append((testing[role]["iter"], elapsed, testing[role]["values"]))
                continue
            found = _TEST_OUTPUT.search(text)
            if found and role in testing:
                testing[role]["values"][found.group(1)] = float(found.group(2))
    return runs


def plot_logs(paths, output):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DualnetError("plotting needs matplotlib: pip install 'dualnet[plot]' (or pip install matplotlib)") from None
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    drew = False
    for path in paths:
        runs = parse_log(path)
        for role, run in runs.items():
            label = os.path.basename(path) if len(runs) == 1 else f"{os.path.basename(path)} [{role}]"
            if run["train"]:
                its, secs, losses = zip(*run["train"])
                axes[0][0].plot(its, losses, label=label)
                axes[1][0].plot(secs, losses, label=label)
                drew = True
            accuracy = [(i, s, next((v for k, v in values.items() if "acc" in k.lower()), None))
                        for i, s, values in run["test"]]
            accuracy = [a for a in accuracy if a[2] is not None]
            if accuracy:
                its, secs, values = zip(*accuracy)
                axes[0][1].plot(its, values, marker=".", label=label)
                axes[1][1].plot(secs, values, marker=".", label=label)
                drew = True
    if not drew:
        raise DualnetError(f"no training or test lines found in {', '.join(paths)} (is it a dualnet/Caffe log?)")
    for ax, (x, y) in zip([a for row in axes for a in row],
                          [("iterations", "train loss"), ("iterations", "test accuracy"),
                           ("seconds", "train loss"), ("seconds", "test accuracy")]):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)
    return output
