"""Per-layer forward/backward timing: what `dualnet time` prints (Caffe's table)."""
import time

import numpy as np

from .log import get_logger

log = get_logger("dualnet.time")


def time_net(net, iterations=50, warmup=1):
    """Median and mean per-layer times over `iterations` forward+backward passes.

    Returns a dict with 'layers' [(name, type, forward_ms, backward_ms)], mean
    'forward_ms', 'backward_ms', 'total_ms', and the per-iteration totals.
    """
    count = len(net.layers)
    for _ in range(warmup):
        net.forward_backward()
    forward = np.zeros((iterations, count))
    backward = np.zeros((iterations, count))
    totals = []
    for it in range(iterations):
        start = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            net.forward_layers(i, i)
            forward[it, i] = time.perf_counter() - t0
        for i in range(count - 1, -1, -1):
            t0 = time.perf_counter()
            net.backward_layers(i, i)
            backward[it, i] = time.perf_counter() - t0
        totals.append((time.perf_counter() - start) * 1e3)
        log.info("Iteration: %d forward-backward time: %.3f ms.", it + 1, totals[-1])
    layers = [(name, layer.type, forward[:, i].mean() * 1e3, backward[:, i].mean() * 1e3)
              for i, (name, layer) in enumerate(zip(net._layer_names, net.layers))]
    return {
        "layers": layers,
        "forward_ms": forward.sum(axis=1).mean() * 1e3,
        "backward_ms": backward.sum(axis=1).mean() * 1e3,
        "total_ms": float(np.mean(totals)),
        "median_ms": float(np.median(totals)),
        "iterations": iterations,
        "sum_ms": float(np.sum(totals)),
    }


def log_table(result):
    log.info("Average time per layer: ")
    for name, _type, fwd, bwd in result["layers"]:
        log.info("%10s\tforward: %.5g ms.", name, fwd)
        log.info("%10s\tbackward: %.5g ms.", name, bwd)
    log.info("Average Forward pass: %.5g ms.", result["forward_ms"])
    log.info("Average Backward pass: %.5g ms.", result["backward_ms"])
    log.info("Average Forward-Backward: %.5g ms.", result["total_ms"])
    log.info("Total Time: %.5g ms.", result["sum_ms"])
    log.info("*** Benchmark ends ***")
