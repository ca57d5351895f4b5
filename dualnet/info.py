"""`dualnet info`: what this installation runs with."""
import importlib
import os
import platform
import sys

from . import __version__

DATA_FOLDERS = ("/usr/share/datasets/fashion-mnist",)


def _version(module):
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except ImportError:
        return "not installed"


def blas_description():
    import numpy as np

    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def lines():
    import numexpr

    out = [
        f"dualnet {__version__}",
        f"python {platform.python_version()} ({sys.executable})",
        f"numpy {_version('numpy')}, BLAS: {blas_description()}",
        f"protobuf {_version('google.protobuf')}, pyzmq {_version('zmq')}, numexpr {_version('numexpr')}, "
        f"tqdm {_version('tqdm')}",
        f"optional: lmdb {_version('lmdb')}, matplotlib {_version('matplotlib')}",
        f"cpus: {os.cpu_count()}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, numexpr threads {numexpr.get_num_threads()}",
    ]
    try:
        from .hbnn import kernel

        out.append(kernel.describe())
    except Exception as error:  # the kernel module reports its own state; never fail info
        out.append(f"HBNN kernel: unavailable ({error})")
    for folder in DATA_FOLDERS:
        found = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        out.append(f"data {folder}: {', '.join(found) if found else 'not found'}")
    return out


def print_info():
    for line in lines():
        print(line)
