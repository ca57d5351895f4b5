#!/usr/bin/env python
"""Benchmark the HBNN XOR/popcount GEMM against np.matmul on float32, in the same run.

For each shape and segment size, every dispatch path is timed interleaved with np.matmul of
X (M, K) @ W.T (K, N) in float32 (OPENBLAS_NUM_THREADS=--threads, set before NumPy is
imported; the kernel gets DUALNET_HBNN_THREADS=--threads and, like the layers' calls, starts
fewer threads for small products); the table shows medians over the rounds, with a busy pause
after each matmul sample while OpenBLAS's idle workers stop spinning. GOPS counts 2 * M * N * K
operations, as a float GEMM's FLOPs. Run it on an otherwise idle machine: with another busy
process, a 2-thread OpenBLAS call waits for its second thread's time slice. Three columns:
  "excl. packing"   binary_gemm on packed operands;
  "W pre-packed"    packing X (signs, one scale per row) + binary_gemm with W packed beforehand:
                    inference, where the weights are fixed and only the input is packed per call;
  "incl. packing"   packing X and W (signs, per-segment scales) + binary_gemm: what a training
                    forward pays, since W changes at every step (and what the HBNN layers pay
                    today at every forward, as they do not keep packed weights across calls).

    python scripts/bench_hbnn.py                       # all shapes, segment_size 64, 2 threads
    python scripts/bench_hbnn.py --shapes lenet-ip1,conv2 --segment-sizes 0,8,16,32,64
"""
import argparse
import os
import statistics
import sys
import time

SHAPES = {  # name: (M, K, N)
    "lenet-ip1": (64, 800, 500),     # LeNet ip1, batch 64
    "square-1024": (1024, 1024, 1024),
    "square-4096": (4096, 4096, 4096),
    "conv2": (4096, 500, 50),        # LeNet conv2 as a GEMM: 64 images x 8 x 8 outputs, 20 x 5 x 5 inputs
}
MODES = ("excl", "W pre-packed", "incl")  # packing excluded; X packed per call; X and W packed per call
TARGETS = {"square-4096": 8.0, "lenet-ip1": 2.0}  # x np.matmul, packing excluded


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for OpenBLAS, and at most as many for the kernel, which starts fewer "
                             "for small products as the HBNN layers' calls do (default 2)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--segment-sizes", default="64", help="comma-separated, from 0, 8, 16, 32, 64 (default 64)")
    parser.add_argument("--paths", default=None,
                        help="comma-separated dispatch paths (default: every path this machine has, "
                             "the scalar ones only where they finish quickly)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per shape (default 7; 3 for square-4096)")
    parser.add_argument("--min-time", type=float, default=0.02,
                        help="seconds each timed sample lasts at least (short calls are repeated)")
    parser.add_argument("--openblas-coretype", default="auto",
                        help="OPENBLAS_CORETYPE for np.matmul; 'auto' (default) unsets it, so that dualnet "
                             "chooses as for a user who set none (its AVX-512 kernels where the CPU has them)")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds to pause after the matmul samples: OpenBLAS's idle workers spin "
                             "for ~0.1 s and would steal the CPU from the next measurement (default 0.2)")
    return parser.parse_args()


def settle(seconds):
    """Busy-wait (a sleep would let the core clock down) while OpenBLAS's workers stop spinning."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def main():
    args = parse_args()
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "DUALNET_HBNN_THREADS"):
        os.environ[variable] = str(args.threads)
    if args.openblas_coretype == "auto":
        os.environ.pop("OPENBLAS_CORETYPE", None)
    else:
        os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import dualnet  # noqa: F401  (before NumPy: it picks OpenBLAS's kernels for this CPU)
    import numpy as np  # after the thread variables, so OpenBLAS sees them
    from dualnet.hbnn import kernel

    print(kernel.describe())
    print(f"threads: {args.threads} for OpenBLAS, up to {args.threads} for the kernel; numpy {np.__version__}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset: OpenBLAS detects)')}")
    header = f"{'shape':<12} {'M':>5} {'K':>5} {'N':>5} {'s':>3} {'path':<9}" + "".join(
        f"{mode + ' ms':>16} {'GOPS':>6} {'x matmul':>9}" for mode in MODES)
    verdicts = []
    for name in args.shapes.split(","):
        M, K, N = SHAPES[name]
        rng = np.random.default_rng(0)
        X = rng.standard_normal((M, K)).astype(np.float32)
        W = rng.standard_normal((N, K)).astype(np.float32)
        ops = 2.0 * M * N * K
        word_pairs = M * N * kernel.n_words(K)
        if args.paths:
            paths = args.paths.split(",")
        else:  # the scalar paths would take minutes on the largest shapes
            limit = {"numpy": 2e7, "portable": 2e8}
            paths = [p for p in kernel.available_paths() if word_pairs <= limit.get(p, float("inf"))]
        rounds = args.rounds if name != "square-4096" else min(args.rounds, 3)

        def matmul():
            return X @ W.T

        warm_until = time.perf_counter() + 0.3  # start OpenBLAS's threads, fault in the pages
        while time.perf_counter() < warm_until:
            matmul()
        one_call = []
        for _ in range(5):
            start = time.perf_counter()
            matmul()
            one_call.append(time.perf_counter() - start)
        repeat = max(1, int(args.min_time / max(min(one_call), 1e-7)))

        def timed(function):
            start = time.perf_counter()
            for _ in range(repeat):
                function()
            return (time.perf_counter() - start) / repeat

        print(f"\n{name}: M={M} K={K} N={N}, {rounds} rounds x {repeat} calls")
        print(header)
        for s in (int(v) for v in args.segment_sizes.split(",")):
            xbits, xscale = kernel.pack_with_scales(X, 0)
            wbits, wscale = kernel.pack_with_scales(W, s)
            out = np.empty((M, N), dtype=np.float32)
            reference = None
            calls = {}
            for path in paths:
                def excluded(path=path):
                    return kernel.binary_gemm(xbits, xscale, wbits, wscale, K, s, out=out, path=path)

                def prepacked(path=path):
                    xb, xs = kernel.pack_with_scales(X, 0, path=path)
                    return kernel.binary_gemm(xb, xs, wbits, wscale, K, s, out=out, path=path)

                def included(path=path):
                    xb, xs = kernel.pack_with_scales(X, 0, path=path)
                    wb, ws = kernel.pack_with_scales(W, s, path=path)
                    return kernel.binary_gemm(xb, xs, wb, ws, K, s, out=out, path=path)

                result = excluded().copy()
                if reference is None:
                    reference = result
                elif not np.allclose(result, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max()):
                    print(f"WARNING: path {path} disagrees with {paths[0]} at s={s}")
                calls[path] = dict(zip(MODES, (excluded, prepacked, included)))
            samples = {"matmul": []}
            samples.update({(p, mode): [] for p in paths for mode in MODES})
            for _ in range(rounds):  # interleaved, so drifting load hits every column alike
                samples["matmul"].append(timed(matmul))
                settle(args.settle)
                for path, functions in calls.items():
                    for mode, function in functions.items():
                        samples[(path, mode)].append(timed(function))
            t_matmul = statistics.median(samples["matmul"])
            print(f"{name:<12} {M:>5} {K:>5} {N:>5} {'':>3} {'matmul':<9}{t_matmul * 1e3:>16.3f} "
                  f"{ops / t_matmul / 1e9:>6.0f} {1.0:>9.2f}")
            for path in paths:
                row = f"{name:<12} {M:>5} {K:>5} {N:>5} {s:>3} {path:<9}"
                for mode in MODES:
                    t = statistics.median(samples[(path, mode)])
                    row += f"{t * 1e3:>16.3f} {ops / t / 1e9:>6.0f} {t_matmul / t:>9.2f}"
                    if name in TARGETS and path == paths[0]:
                        verdict = f"{name} s={s} {path} {mode}: {t_matmul / t:.1f}x np.matmul"
                        if mode == "excl":
                            target = TARGETS[name]
                            verdict += f" (target >= {target:g}x: {'met' if t_matmul / t >= target else 'NOT met'})"
                        verdicts.append(verdict)
                print(row)
    if verdicts:
        print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
