#!/usr/bin/env python
"""LeNet training throughput (samples/s), data layer included: dualnet vs PyTorch CPU.

dualnet: `Solver.step` of solvers/lenet_solver.prototxt as shipped — the
Data layer reads the Fashion-MNIST IDX files (decoded into memory at set-up,
as dualnet's IDX source does), in file order without shuffling, scaled by
1/256, batch 64; display every 100 iterations with the log at warning level;
testing and snapshots off (they are not training throughput). PyTorch: the
same net and solver (scripts/torch_lenet.py) reading the same IDX arrays
from memory in the same order, wrapping around as Caffe's cursor does: per
iteration one gather of 64 images, conversion to float32, the same scale,
then zero_grad, forward, backward, step.

Each framework runs in its own worker process per thread count and the
rounds interleave (scripts/interleave.py); rates are medians over rounds.

    python scripts/bench_train.py                        # every core, 5 rounds x 500 iterations
    python scripts/bench_train.py --threads 2,1 --rounds 7
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOLVER = os.path.join(ROOT, "solvers", "lenet_solver.prototxt")
TRAIN_SET = "/usr/share/datasets/fashion-mnist/train"
BATCH, SCALE = 64, 0.00390625  # models/lenet_train_test.prototxt's TRAIN data layer
TARGET = 0.8  # dualnet's rate / PyTorch's


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default=str(os.cpu_count()),
                        help=f"comma-separated thread counts (default: the machine's {os.cpu_count()} cores)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per thread count (default 5)")
    parser.add_argument("--iterations", type=int, default=500, help="training iterations per round (default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed iterations per worker (default 20)")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds between requests, while the last worker's BLAS threads stop spinning")
    parser.add_argument("--max-foreign-load", type=float, default=0.05,
                        help="redo a round in which other processes used more than this fraction of the "
                             "machine's CPU (default 0.05)")
    parser.add_argument("--max-retries", type=int, default=None,
                        help="rounds redone at most, per thread count (default: twice --rounds)")
    parser.add_argument("--openblas-coretype", default="auto",
                        help="OPENBLAS_CORETYPE for the workers; 'auto' (default) unsets it, so that dualnet "
                             "picks the AVX-512 kernels where the CPU has them, as for a user who set none")
    parser.add_argument("--worker", choices=("dualnet", "pytorch"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- workers
def dualnet_worker(args):
    import dualnet  # before NumPy: lets OpenBLAS pick its AVX-512 kernels (dualnet/__init__.py)
    import numpy as np

    from dualnet.io.text import read_solver_param
    from dualnet.log import setup_logging
    from dualnet.solver import resolve_path

    setup_logging(level=30)  # warnings only
    param = read_solver_param(SOLVER)
    param.net = resolve_path(param.net, SOLVER, "net")
    del param.test_iter[:]
    param.test_interval = 0
    param.snapshot = 0
    snapshots = tempfile.TemporaryDirectory(prefix="bench_train_")  # removed when the worker ends
    param.snapshot_prefix = os.path.join(snapshots.name, "lenet")  # made by the solver, never written
    solver = dualnet.get_solver(param)
    solver.step(args.warmup)

    def run_round(iterations):
        start = time.perf_counter()
        solver.step(iterations)
        seconds = time.perf_counter() - start
        return {"samples_per_s": iterations * BATCH / seconds, "loss": float(solver.smoothed_loss)}

    from interleave import serve
    serve({"round": run_round}, {"numpy": np.__version__, "dualnet": os.path.dirname(dualnet.__file__),
                                 "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)")})


def pytorch_worker(args):
    import torch

    from dualnet.data.idx import find_idx_pair, read_idx
    from torch_lenet import LeNet, caffe_sgd, train_step

    torch.set_num_threads(args.threads)
    images_path, labels_path = find_idx_pair(TRAIN_SET)
    images = torch.from_numpy(read_idx(images_path).copy()).unsqueeze(1)  # uint8 N x 1 x H x W
    labels = torch.from_numpy(read_idx(labels_path).astype("int64"))
    count = len(images)
    model = LeNet()
    optimizer = caffe_sgd(model)
    state = {"iter": 0, "cursor": 0}
    offsets = torch.arange(BATCH)

    def steps(iterations):
        loss = None
        for _ in range(iterations):
            index = (offsets + state["cursor"]) % count  # file order, wrapping like Caffe's cursor
            state["cursor"] = (state["cursor"] + BATCH) % count
            x = images.index_select(0, index).float().mul_(SCALE)
            y = labels.index_select(0, index)
            loss = train_step(model, optimizer, x, y, state["iter"])
            state["iter"] += 1
        return loss

    steps(args.warmup)

    def run_round(iterations):
        start = time.perf_counter()
        loss = steps(iterations)
        seconds = time.perf_counter() - start
        return {"samples_per_s": iterations * BATCH / seconds, "loss": loss}

    from interleave import serve
    serve({"round": run_round}, {"torch": torch.__version__, "threads": torch.get_num_threads()})


# ---------------------------------------------------------------- controller
def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return "CPU"


def main():
    args = parse_args()
    if args.worker:
        from interleave import set_thread_variables

        args.threads = int(args.threads)
        set_thread_variables(args.threads)
        sys.path.insert(0, ROOT)
        (dualnet_worker if args.worker == "dualnet" else pytorch_worker)(args)
        return
    from interleave import Worker, describe_rounds, median, openblas_environment, run_rounds, spread

    print(__doc__.split("\n\n")[0])
    print(f"batch {BATCH}, {args.rounds} rounds x {args.iterations} iterations, interleaved, medians over rounds; "
          f"load average {os.getloadavg()[0]:.2f}")
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        extra = ["--warmup", str(args.warmup)]
        environment = openblas_environment(args.openblas_coretype)
        workers = []
        try:
            workers = [Worker(__file__, name, threads, extra, environment) for name in ("dualnet", "pytorch")]
            if not results:
                print("dualnet worker:", workers[0].info, "| pytorch worker:", workers[1].info)
                versions = {"torch": "PyTorch " + workers[1].info["torch"].split("+")[0]}
            retries = 2 * args.rounds if args.max_retries is None else args.max_retries
            replies, redone = run_rounds(workers, args.rounds, args.settle, args.max_foreign_load, retries,
                                         do="round", iterations=args.iterations)
        finally:
            for worker in workers:
                worker.close()
        rates = {name: [r["samples_per_s"] for r in rs] for name, rs in replies.items()}
        d, t = median(rates["dualnet"]), median(rates["pytorch"])
        ratio = d / t
        print(f"\nthreads {threads}: {describe_rounds(replies, redone, args.max_foreign_load)}")
        print(f"  dualnet  {d:8.0f} samples/s  ({spread(rates['dualnet'])} over rounds)")
        print(f"  pytorch  {t:8.0f} samples/s  ({spread(rates['pytorch'])} over rounds)")
        print(f"  ratio dualnet/pytorch {ratio:.3f}  (target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'})")
        quiet = all(r["foreign_load"] <= args.max_foreign_load for rs in replies.values() for r in rs)
        results.append((threads, d, t, ratio, quiet))
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    print("README table row(s):")
    print("| Benchmark | CPU, threads | dualnet | PyTorch CPU | dualnet / PyTorch |")
    print("|---|---|---|---|---|")
    if not all(quiet for *_, quiet in results):
        print("(other processes were busy during some rounds: repeat on a quieter machine before quoting)")
    for threads, d, t, ratio, _ in results:
        print(f"| LeNet training on Fashion-MNIST, batch {BATCH}, data layer included (`scripts/bench_train.py`) "
              f"| {cpu_model()}, {threads} | {d:,.0f} samples/s | {t:,.0f} samples/s ({versions['torch']}) "
              f"| {ratio:.2f} |")


if __name__ == "__main__":
    main()
