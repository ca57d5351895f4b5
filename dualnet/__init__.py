"""dualnet: Caffe-format networks on a NumPy engine, split across two machines.

The pycaffe-shaped surface:

    net = dualnet.Net("lenet.prototxt", dualnet.TEST, weights="lenet.caffemodel")
    out = net.forward(data=batch)
    solver = dualnet.get_solver("solver.prototxt"); solver.step(100)
"""
__version__ = "0.1.0"


def _prefer_avx512_blas():
    """Let OpenBLAS use its AVX-512 GEMM kernels where the CPU has them.

    NumPy's OpenBLAS picks its kernels at load time and takes some AVX-512 CPUs
    (e.g. AMD Zen 4) for AVX2 ones; its SkylakeX kernels measured 1.4-1.9x
    faster there. Only when the user has not chosen (OPENBLAS_CORETYPE unset)
    and NumPy is not loaded yet; a CPU without AVX-512 is left alone.
    """
    import os
    import sys

    if "OPENBLAS_CORETYPE" in os.environ or "numpy" in sys.modules:
        return
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= set(flags):
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"


_prefer_avx512_blas()

from . import dualnet_pb2 as proto  # noqa: E402
from .blob import Blob  # noqa: E402
from .errors import DualnetError  # noqa: E402
from .layer import Layer  # noqa: E402
from .net import TEST, TRAIN, Net  # noqa: E402
from .random import seed as set_random_seed  # noqa: E402


def get_solver(solver_file, **options):
    """The solver a solver.prototxt describes (SGD, Nesterov, AdaGrad, ...)."""
    from .solver import get_solver as _get_solver

    return _get_solver(solver_file, **options)


def set_mode_cpu():
    """pycaffe compatibility: dualnet always runs on the CPU."""


def set_device(_device_id):
    """pycaffe compatibility: there is no GPU to select."""


__all__ = [
    "Blob", "DualnetError", "Layer", "Net", "TEST", "TRAIN", "get_solver", "proto",
    "set_random_seed", "set_mode_cpu", "set_device", "__version__",
]
