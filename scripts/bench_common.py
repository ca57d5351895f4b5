"""What the benchmarks that run `dualnet` as a command share: child processes, log parsing, tables.

Children: every `dualnet` run is a child process in a session of its own,
its stdout and stderr streamed to a log file that starts with the command
line. `Children.run` waits for it with wait4, so the child's own peak RSS
(ru_maxrss) comes back with its exit status. `Children.stop_all` ends every
child still running and the processes it started (the dual-net launcher
starts its two roles in sessions of their own, so they are found through
/proc by parent pid): SIGTERM first, SIGKILL after a grace period. Call it in
a `finally`, and turn SIGTERM / SIGHUP into SystemExit with
`exit_on_signals`, so that no run outlives the benchmark.

Logs: glog lines `I1121 12:00:00.000000  1234 file.py:12] [net1] text`,
parsed into (seconds, role, text).
"""
import datetime
import os
import re
import shlex
import signal
import subprocess
import sys
import time

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
GRACE_SECONDS = 5.0
SCAN_SECONDS = 1.0      # how often a running child's descendants are listed (a /proc walk, ~1 ms)


class RunFailed(Exception):
    """A child exited non-zero or ran out of time; the message names its log."""

    def __init__(self, label, log_path, reason):
        self.label, self.log_path, self.reason = label, log_path, reason
        super().__init__(f"{label} {reason}; see {log_path}")


class Finished:
    def __init__(self, code, seconds, max_rss_mb):
        self.code, self.seconds, self.max_rss_mb = code, seconds, max_rss_mb


def thread_environment(threads, base=None):
    """The environment with every BLAS / OpenMP / numexpr thread count set to `threads`."""
    env = dict(os.environ if base is None else base)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def _parents():
    """{pid: parent pid} of every process (Linux /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return parents


def descendants(pid):
    """Pids of the processes `pid` started, and theirs, and so on."""
    children = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal_group_and_pid(pid, signum):
    for send in (os.killpg, os.kill):
        try:
            send(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class Children:
    """The child processes of one benchmark run (see the module docstring)."""

    def __init__(self, cwd=None):
        self.cwd = cwd
        self.running = {}            # pid -> (Popen, pids of its descendants seen so far)

    def run(self, command, log_path, label, env=None, timeout=None):
        """Run `command` to the end with its output in `log_path`; RunFailed unless it exits 0."""
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        with open(log_path, "w") as out:
            out.write("$ " + shlex.join(command) + "\n")
            out.flush()
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, cwd=self.cwd, start_new_session=True)
        self.running[process.pid] = (process, set())
        start = last_scan = time.monotonic()
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                now = time.monotonic()
                if now - last_scan >= SCAN_SECONDS:
                    # remember the grandchildren while their parent lives, to end them if it dies
                    self.running[process.pid][1].update(descendants(process.pid))
                    last_scan = now
                if timeout and now - start > timeout:
                    self.stop(process.pid)
                    raise RunFailed(label, log_path, f"did not finish within {timeout:.0f} s (stopped)")
                time.sleep(0.1)
        except BaseException:
            self.stop(process.pid)
            raise
        seconds = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        _, seen = self.running.pop(process.pid)
        strays = [p for p in seen if _alive(p)]
        for pid in strays:
            _signal_group_and_pid(pid, signal.SIGKILL)
        if process.returncode != 0:
            raise RunFailed(label, log_path, f"exited with status {process.returncode}")
        if strays:
            raise RunFailed(label, log_path, f"left {len(strays)} process(es) running (killed: {strays})")
        return Finished(process.returncode, seconds, usage.ru_maxrss / 1024.0)

    def stop(self, pid):
        """End child `pid` and everything it started: SIGTERM, then SIGKILL after GRACE_SECONDS."""
        process, seen = self.running.pop(pid, (None, set()))
        if process is None:
            return
        tree = seen | set(descendants(pid))
        for target in [pid, *tree]:
            _signal_group_and_pid(target, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline and (process.poll() is None or any(_alive(p) for p in tree)):
            time.sleep(0.1)
        for target in [pid, *tree]:
            if target == pid and process.poll() is not None:
                continue
            if target != pid and not _alive(target):
                continue
            _signal_group_and_pid(target, signal.SIGKILL)
        try:
            process.wait(timeout=GRACE_SECONDS)
        except (subprocess.TimeoutExpired, ChildProcessError):
            pass

    def stop_all(self):
        """Stop every child; a second Ctrl-C or SIGTERM meanwhile does not cut the clean-up short."""
        names = [name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
        previous = {name: signal.signal(getattr(signal, name), signal.SIG_IGN) for name in names}
        try:
            for pid in list(self.running):
                self.stop(pid)
        finally:
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), handler)


def exit_on_signals(signals=("SIGTERM", "SIGHUP")):
    """SIGTERM / SIGHUP raise SystemExit, so `finally` blocks end the children."""
    def leave(signum, _frame):
        raise SystemExit(128 + signum)
    for name in signals:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), leave)


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(cannot read {path})\n"


# ---------------------------------------------------------------- glog lines
GLOG = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})\s+\d+ \S+:\d+\] (?:\[(net[12])\] )?(.*)$")


def read_glog(path):
    """[(seconds, role or None, text)] for each glog line of `path` (seconds since an arbitrary origin)."""
    year = datetime.date.today().year
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            match = GLOG.match(line.rstrip("\n"))
            if not match:
                continue
            month, day, hour, minute, second, micros = (int(g) for g in match.groups()[:6])
            stamp = datetime.datetime(year, month, day, hour, minute, second, micros).timestamp()
            out.append((stamp, match.group(7), match.group(8)))
    return out


def display_times(lines):
    """{iteration: seconds} of the solver's `Iteration N (x iter/s, ...)` display lines."""
    times = {}
    for stamp, _, text in lines:
        match = re.match(r"Iteration (\d+) \(", text)
        if match:
            times[int(match.group(1))] = stamp
    return times


# ---------------------------------------------------------------- tables
def markdown_table(header, rows):
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells[1:]]
    return "\n".join(lines)


def command_line(argv=None):
    """How this script was started, as a shell line."""
    argv = sys.argv if argv is None else argv
    script = os.path.relpath(argv[0]) if os.path.exists(argv[0]) else argv[0]
    return shlex.join(["python", script, *argv[1:]])
