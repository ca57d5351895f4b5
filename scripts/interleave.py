"""Interleaved timing rounds in one worker subprocess per framework, on a shared machine.

Each framework runs in its own Python process, started once per thread
count with the thread variables set before NumPy or PyTorch is imported
(in one process PyTorch's idle thread pool distorts OpenBLAS's 2-thread
timings). The controller tells the workers in turn to run a round, so both
see the same machine load, and takes medians over the rounds:

    round 1: dualnet worker runs K iterations, then the torch worker does
    round 2: torch first, then dualnet (the order alternates) ...

Protocol: one JSON object per line, controller -> worker on stdin, reply
on the worker's original stdout (the worker points fd 1 at stderr so that
nothing else can write into the channel). A worker answers {"ready": ...}
after its set-up and warm-up, then one reply per request.

On a machine shared with other work, a round during which other processes
took a noticeable share of the CPU is redone (up to a limit): the controller
compares the machine's busy time (/proc/stat) with the worker's own CPU time.
"""
import json
import os
import statistics
import subprocess
import sys
import time

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def set_thread_variables(threads):
    """Thread counts for OpenBLAS, OpenMP and MKL: call before importing numpy or torch."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)


class Worker:
    """A worker subprocess: `python script --worker NAME --threads N [extra...]`.

    `environment` overrides variables of ours (None removes one).
    """

    def __init__(self, script, name, threads, extra=(), environment=None):
        self.name = name
        command = [sys.executable, script, "--worker", name, "--threads", str(threads), *extra]
        env = dict(os.environ)
        for variable in THREAD_VARIABLES:
            env[variable] = str(threads)
        for variable, value in (environment or {}).items():
            if value is None:
                env.pop(variable, None)
            else:
                env[variable] = value
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.info = self._reply()["ready"]

    def _reply(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker exited (code {self.process.wait()}); see its stderr above")
        return json.loads(line)

    def request(self, **message):
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


def cpu_busy_seconds():
    """CPU seconds spent by every process on the machine so far (all cores, from /proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def run_rounds(workers, rounds, settle, max_foreign=None, max_retries=0, **message):
    """Send `message` to every worker once per round, alternating who goes first.

    Returns ({worker name: [reply, ...]}, number of rounds discarded). Each
    reply gets "foreign_load": the CPU time other processes took during the
    request, as a fraction of all cores (the machine's busy time minus the
    worker's own CPU time). A round in which any request saw more than
    `max_foreign` is redone, up to `max_retries` times in all; after that the
    disturbed rounds are kept (their foreign_load says so). `settle` seconds
    pass after each request so that the finished worker's BLAS threads stop
    spinning before the other one starts.
    """
    cores = os.cpu_count()
    replies = {w.name: [] for w in workers}
    done = discarded = 0
    while done < rounds:
        round_replies = {}
        for worker in (workers if done % 2 == 0 else workers[::-1]):
            busy, start = cpu_busy_seconds(), time.perf_counter()
            reply = worker.request(**message)
            elapsed, busy = time.perf_counter() - start, cpu_busy_seconds() - busy
            reply["foreign_load"] = max(0.0, busy - reply["cpu_s"]) / (elapsed * cores)
            round_replies[worker.name] = reply
            time.sleep(settle)
        disturbed = max_foreign is not None and any(r["foreign_load"] > max_foreign for r in round_replies.values())
        if disturbed and discarded < max_retries:
            discarded += 1
            time.sleep(1.0)  # let the other process finish its burst
            continue
        for name, reply in round_replies.items():
            replies[name].append(reply)
        done += 1
    return replies, discarded


def serve(handlers, ready_info):
    """The worker side: answer requests {"do": name, ...} with handlers[name](**rest) until stdin closes."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints (ours or a library's) go to stderr, not into the channel
    sys.stdout = sys.stderr

    def send(obj):
        channel.write(json.dumps(obj) + "\n")
        channel.flush()

    send({"ready": ready_info})
    for line in sys.stdin:
        message = json.loads(line)
        start = time.process_time()
        reply = handlers[message.pop("do")](**message)
        reply["cpu_s"] = time.process_time() - start  # this process's CPU time, every thread
        send(reply)


def openblas_environment(coretype):
    """OPENBLAS_CORETYPE for the workers: "auto" leaves the choice to dualnet (as for a user who set none)."""
    return {"OPENBLAS_CORETYPE": None if coretype == "auto" else coretype}


def describe_rounds(replies, redone, max_foreign):
    """One line on the rounds kept: how many were redone, and how busy the rest of the machine was."""
    loads = [r["foreign_load"] for rs in replies.values() for r in rs]
    disturbed = sum(load > max_foreign for load in loads)
    text = (f"{len(next(iter(replies.values())))} rounds kept, {redone} redone; CPU used by other processes "
            f"during the kept requests: median {statistics.median(loads):.1%}, max {max(loads):.1%}")
    if disturbed:
        text += f" ({disturbed} requests above {max_foreign:.0%}: retries exhausted, treat with care)"
    return text


def median(values):
    return statistics.median(values)


def spread(values):
    """(min, max) as a percentage around the median, e.g. '-2%/+5%'."""
    m = statistics.median(values)
    return f"-{(m - min(values)) / m * 100:.0f}%/+{(max(values) - m) / m * 100:.0f}%"
