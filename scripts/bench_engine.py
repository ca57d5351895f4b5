#!/usr/bin/env python
"""One LeNet training iteration in dualnet vs PyTorch CPU, at equal thread counts.

The iteration (batch 64): forward, backward and the SGD-with-momentum update
of every parameter (weight_decay 0.0005, biases at lr_mult 2, the "inv"
rate). dualnet: `Solver.step` of solvers/lenet_solver.prototxt on
models/lenet_train_test.prototxt with the Data layer replaced by an Input
layer that holds one fixed Fashion-MNIST batch (the first 64 training
images, scaled by 1/256 as the transform_param says), testing, display and
snapshots off. PyTorch: the same net, batch and solver (scripts/torch_lenet.py):
zero_grad, forward, cross entropy, backward, step.

Each framework runs in its own worker process per thread count and the
rounds interleave (scripts/interleave.py); the table shows medians over the
rounds of the mean time per iteration, then both per-layer breakdowns
(dualnet's from dualnet.timing.time_net, PyTorch's by timing each layer on a
detached input).

    python scripts/bench_engine.py                          # 1 and 2 threads, 9 rounds x 40 iterations
    python scripts/bench_engine.py --threads 2 --rounds 15 --iterations 50
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOLVER = os.path.join(ROOT, "solvers", "lenet_solver.prototxt")
TRAIN_IMAGES = "/usr/share/datasets/fashion-mnist/train"
TARGET = 1.25  # dualnet / PyTorch time per iteration


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per thread count (default 9)")
    parser.add_argument("--iterations", type=int, default=40, help="iterations per round (default 40)")
    parser.add_argument("--layer-iterations", type=int, default=40,
                        help="iterations of the per-layer breakdown (default 40; 0 skips it)")
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


def fashion_batch(size=64):
    """The first `size` Fashion-MNIST training images scaled by 1/256 (float32, N x 1 x 28 x 28) and labels."""
    import numpy as np

    from dualnet.data.idx import find_idx_pair, read_idx

    images_path, labels_path = find_idx_pair(TRAIN_IMAGES)
    images, labels = read_idx(images_path)[:size], read_idx(labels_path)[:size]
    x = images.reshape(size, 1, *images.shape[-2:]).astype(np.float32) * np.float32(0.00390625)
    return x, labels.astype(np.int64)


# ---------------------------------------------------------------- workers
def dualnet_solver_on_fixed_batch(x, labels, snapshot_folder):
    """The LeNet solver with its Data layers replaced by an Input layer holding (x, labels)."""
    from dualnet import dualnet_pb2 as pb
    from dualnet import get_solver
    from dualnet.io.text import read_net_param, read_solver_param
    from dualnet.solver import resolve_path

    param = read_solver_param(SOLVER)
    net_param, _ = read_net_param(resolve_path(param.net, SOLVER, "net"))
    for layer in list(net_param.layer):
        if layer.type != "Data":
            continue
        if any(rule.phase == pb.TEST for rule in layer.include):
            net_param.layer.remove(layer)
            continue
        layer.type = "Input"
        layer.ClearField("data_param")
        layer.ClearField("transform_param")
        layer.input_param.shape.add(dim=x.shape)
        layer.input_param.shape.add(dim=labels.shape)
    param.ClearField("net")
    param.net_param.CopyFrom(net_param)
    del param.test_iter[:]
    param.test_interval = 0
    param.display = 0
    param.snapshot = 0
    param.snapshot_prefix = os.path.join(snapshot_folder, "lenet")  # made by the solver, never written
    solver = get_solver(param)
    solver.net.blobs["data"].data[...] = x
    solver.net.blobs["label"].data[...] = labels
    return solver


def dualnet_worker(args):
    import dualnet  # before NumPy: lets OpenBLAS pick its AVX-512 kernels (dualnet/__init__.py)
    import numpy as np

    from dualnet.log import setup_logging
    from dualnet.timing import time_net

    setup_logging(level=30)  # warnings only
    snapshots = tempfile.TemporaryDirectory(prefix="bench_engine_")  # removed when the worker ends
    solver = dualnet_solver_on_fixed_batch(*fashion_batch(), snapshots.name)
    solver.step(args.warmup)

    def run_round(iterations):
        start = time.perf_counter()
        solver.step(iterations)
        return {"ms": (time.perf_counter() - start) * 1e3 / iterations, "loss": float(solver.net.loss)}

    def layers(iterations):
        result = time_net(solver.net, iterations)
        rows = [(name, fwd, bwd) for name, _, fwd, bwd in result["layers"]]
        update = 0.0
        for _ in range(iterations):
            solver.forward_backward()
            start = time.perf_counter()
            solver.apply_update()
            update += time.perf_counter() - start
        return {"layers": rows + [("update", 0.0, update * 1e3 / iterations)]}

    from interleave import serve
    serve({"round": run_round, "layers": layers},
          {"numpy": np.__version__, "dualnet": os.path.dirname(dualnet.__file__),
           "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)")})


def pytorch_worker(args):
    import torch

    from torch_lenet import LeNet, caffe_sgd, layer_times, train_step

    torch.set_num_threads(args.threads)
    x, labels = fashion_batch()
    x, y = torch.from_numpy(x), torch.from_numpy(labels)
    model = LeNet()
    optimizer = caffe_sgd(model)
    state = {"iter": 0}

    def steps(iterations):
        loss = None
        for _ in range(iterations):
            loss = train_step(model, optimizer, x, y, state["iter"])
            state["iter"] += 1
        return loss

    steps(args.warmup)

    def run_round(iterations):
        start = time.perf_counter()
        loss = steps(iterations)
        return {"ms": (time.perf_counter() - start) * 1e3 / iterations, "loss": loss}

    def layers(iterations):
        return {"layers": layer_times(model, optimizer, x, y, iterations, time.perf_counter)}

    from interleave import serve
    serve({"round": run_round, "layers": layers},
          {"torch": torch.__version__, "threads": torch.get_num_threads()})


# ---------------------------------------------------------------- controller
def print_layers(dualnet_rows, torch_rows):
    torch_by_name = {name: (fwd, bwd) for name, fwd, bwd in torch_rows}
    print(f"    {'layer':<8}{'dualnet fwd':>12}{'bwd':>8}{'pytorch fwd':>13}{'bwd':>8}{'ratio':>7}")
    totals = [0.0, 0.0, 0.0, 0.0]
    for name, fwd, bwd in dualnet_rows:
        tf, tb = torch_by_name.get(name, (None, None))
        if tf is None:
            print(f"    {name:<8}{fwd:12.3f}{bwd:8.3f}{'-':>13}{'-':>8}")
            totals[0] += fwd
            totals[1] += bwd
            continue
        ratio = (fwd + bwd) / (tf + tb) if tf + tb else float("nan")
        print(f"    {name:<8}{fwd:12.3f}{bwd:8.3f}{tf:13.3f}{tb:8.3f}{ratio:7.2f}")
        totals = [a + b for a, b in zip(totals, (fwd, bwd, tf, tb))]
    ratio = sum(totals[:2]) / sum(totals[2:])
    print(f"    {'sum':<8}{totals[0]:12.3f}{totals[1]:8.3f}{totals[2]:13.3f}{totals[3]:8.3f}{ratio:7.2f}")


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
    print(f"batch 64, fixed in memory (dualnet: Data layer -> Input); {args.rounds} rounds x {args.iterations} "
          f"iterations, interleaved, medians of the per-round means; load average {os.getloadavg()[0]:.2f}")
    verdicts = []
    for threads in (int(t) for t in args.threads.split(",")):
        extra = ["--warmup", str(args.warmup)]
        environment = openblas_environment(args.openblas_coretype)
        workers = []
        try:
            workers = [Worker(__file__, name, threads, extra, environment) for name in ("dualnet", "pytorch")]
            if threads == int(args.threads.split(",")[0]):
                print("dualnet worker:", workers[0].info, "| pytorch worker:", workers[1].info)
            retries = 2 * args.rounds if args.max_retries is None else args.max_retries
            replies, redone = run_rounds(workers, args.rounds, args.settle, args.max_foreign_load, retries,
                                         do="round", iterations=args.iterations)
            ms = {name: [r["ms"] for r in rs] for name, rs in replies.items()}
            d, t = median(ms["dualnet"]), median(ms["pytorch"])
            ratio = d / t
            print(f"\nthreads {threads}: {describe_rounds(replies, redone, args.max_foreign_load)}")
            print(f"  dualnet  {d:7.3f} ms/iteration  ({spread(ms['dualnet'])} over rounds)")
            print(f"  pytorch  {t:7.3f} ms/iteration  ({spread(ms['pytorch'])} over rounds)")
            met = "met" if ratio <= TARGET else "MISSED"
            print(f"  ratio dualnet/pytorch {ratio:.3f}  (target <= {TARGET}: {met})")
            quiet = all(r["foreign_load"] <= args.max_foreign_load for rs in replies.values() for r in rs)
            verdicts.append((threads, d, t, ratio, quiet))
            if args.layer_iterations:
                layers, _ = run_rounds(workers, 1, args.settle, args.max_foreign_load, retries,
                                       do="layers", iterations=args.layer_iterations)
                foreign = max(rs[0]["foreign_load"] for rs in layers.values())
                print(f"  per layer, mean ms over {args.layer_iterations} iterations (each layer timed alone, "
                      f"so the sums exceed the iteration; 'update' = the solver step, torch: step + zero_grad; "
                      f"other processes {foreign:.1%}):")
                print_layers(layers["dualnet"][0]["layers"], layers["pytorch"][0]["layers"])
        finally:
            for worker in workers:
                worker.close()
    print(f"\nsummary (load average {os.getloadavg()[0]:.2f}):")
    for threads, d, t, ratio, quiet in verdicts:
        print(f"  {threads} thread{'s' if threads > 1 else ' '}: dualnet {d:.3f} ms, pytorch {t:.3f} ms, "
              f"ratio {ratio:.3f} ({'met' if ratio <= TARGET else 'MISSED'}, target <= {TARGET})"
              + ("" if quiet else "  [other processes were busy: repeat on a quieter machine]"))


if __name__ == "__main__":
    main()
