"""The HBNN GEMM: signs packed 64 to a uint64 word, XOR + popcount, scaled per segment.

Math. For y = X W^T with X (M x K) and W (N x K), both binarised along K,
    W~[n, k] = alpha[n, seg(k)] * sign(W[n, k]),   alpha = mean |W| over each segment of
               `segment_size` consecutive weights (0: one segment for the whole row),
    X~[m, k] = beta[m] * sign(X[m, k]),            beta[m] = mean |X[m, :]| over the K entries
               of GEMM input row m: one beta per sample in HBNNInnerProduct, one per im2col
               patch (sample, output position, group) in HBNNConvolution,
with sign(0) = +1 and a shorter last segment when segment_size does not divide K:
    y[m, n] = beta[m] * sum_seg alpha[n, seg] * (len(seg) - 2 * popcount(wbits XOR xbits over seg)).

Bit layout (the C kernel, the NumPy path and the PackedSigns message share it): a packed row
is ceil(K/64) uint64 words, element k is bit k % 64 of word k // 64 (least significant
first), bit = 1 for x >= 0 (so -0.0 -> 1) and 0 for x < 0 or NaN; bits past K are 0.

API for the HBNN layers (all arrays C-contiguous; a bad argument raises KernelError):
    pack_rows(A)                          float32/64 (R, K) -> uint64 (R, n_words(K))
    row_scales(A, segment_size)           -> float32 (R, n_segments(K, segment_size))
    pack_with_scales(A, segment_size)     -> (bits, scales) in one pass (X: segment_size 0)
    binary_gemm(xbits, xscale, wbits, wscale, K, segment_size, threads=None, out=None)
                                          -> float32 (M, N); xscale (M,) or (M, 1)
    segment_counts(xbits, wbits, K, segment_size, threads=None, path=None)
                                          -> int32 (M, N, n_segments): the popcounts, read
                                          back from that path's GEMM
    binarize(W, segment_size)             -> (W~, alpha) in W's dtype, rows = first axis
    unpack_rows(bits, K)                  -> float32 (R, K) of +-1
    reference_gemm(X, W, segment_size, binarize_input=True) -> X~ @ W~.T in float math
    n_words(K), n_segments(K, segment_size), segment_lengths(K, segment_size)
A binary-input layer's forward (float32 X (M, K), W (N, K)) is
    xbits, beta = pack_with_scales(X, 0); wbits, alpha = pack_with_scales(W, segment_size)
    Y = binary_gemm(xbits, beta, wbits, alpha, K, segment_size)
With float inputs and binary weights the product is just X @ binarize(W, s)[0].T (np.matmul);
in float64 (gradient checks) use reference_gemm, since the packed path is float32.

Paths: "avx512" (VPOPCNTDQ + BITALG), "avx2", "portable" (the C library, dispatched at run
time) and "numpy" (np.bitwise_count; always there). DUALNET_HBNN_KERNEL=auto|numpy|portable|
avx2|avx512 forces one; a value that is not a path, or a path this machine lacks, falls back
to the best available one with a warning, as does a missing or unloadable C library (to
"numpy"). active_path() says which is used, kernel_info() gives the details for `dualnet info`.
Threads: a `threads` argument is honoured; without one, DUALNET_HBNN_THREADS or else the CPUs
this process may run on, fewer for small products (~50 us of work each).
Counts are identical on every path; scaled results agree to float rounding (the SIMD paths sum
weighted segment counts in float lanes; the portable path evaluates NumPy's double formula in
the same order, and for s = 0 every path does).
"""
import ctypes
import importlib.machinery
import numbers
import os
import warnings

import numpy as np

from ..errors import KernelError

SEGMENT_SIZES = (0, 8, 16, 32, 64)
PATHS = ("avx512", "avx2", "portable", "numpy")  # best first
C_PATH_IDS = {"portable": 0, "avx2": 1, "avx512": 2}
ENV_PATH = "DUALNET_HBNN_KERNEL"
ENV_THREADS = "DUALNET_HBNN_THREADS"
LIBRARY_NAME = "_hbnn_kernel"
ABI_VERSION = 1

_STATUS = {
    -1: "a required array was not passed (NULL pointer)",
    -2: "a dimension is smaller than 1",
    -3: "segment_size must be one of 0, 8, 16, 32, 64",
    -4: "threads must be at least 1",
    -5: "the requested code path is not supported by this CPU or build",
    -6: "out of memory for the kernel's scratch space",
}
_PATH_NEEDS = {
    "avx512": "AVX-512 F/BW/DQ with VPOPCNTDQ and BITALG",
    "avx2": "AVX2 and FMA",
    "portable": "the compiled C library",
}
# NumPy path: bound the (rows, N, words) temporaries to about this many bytes.
_NUMPY_CHUNK_BYTES = 32 << 20
# Automatic thread counts start a thread only for about 50 us of work (on a current core),
# below which starting and joining it costs more than it saves: GEMM work in word pairs
# (M * N * words) times the relative cost of the segment size, packing work in floats.
_GEMM_WORK_PER_THREAD = 1 << 20
_SEGMENT_COST = {0: 1.0, 64: 1.3, 32: 1.6, 16: 3.0, 8: 4.6}  # measured on the AVX-512 path
_PACK_WORK_PER_THREAD = 1 << 18


# ----------------------------------------------------------------------------------------
# Shapes


def n_words(K):
    """uint64 words per packed row of K signs."""
    return (int(K) + 63) // 64


def n_segments(K, segment_size):
    """Scales per row: ceil(K / segment_size), or 1 for segment_size 0."""
    return 1 if segment_size == 0 else (int(K) + segment_size - 1) // segment_size


def segment_lengths(K, segment_size):
    """The true length of each segment (the last one may be short)."""
    count = n_segments(K, segment_size)
    if segment_size == 0:
        return np.array([K], dtype=np.int64)
    lengths = np.full(count, segment_size, dtype=np.int64)
    lengths[-1] = K - segment_size * (count - 1)
    return lengths


# ----------------------------------------------------------------------------------------
# Loading the C library


def _ndpointer(dtype, ndim, writeable=False, nullable=False):
    """numpy.ctypeslib.ndpointer(dtype, ndim, C_CONTIGUOUS|ALIGNED[|WRITEABLE]) with a leaner
    from_param: the same checks, but the pointer is handed over as a c_void_p (numpy's own
    route through arr.ctypes and a cast costs ~4 us per array, a third of a small call).
    `nullable` also accepts None, passed to C as NULL."""
    flags = "C_CONTIGUOUS,ALIGNED" + (",WRITEABLE" if writeable else "")
    base = np.ctypeslib.ndpointer(dtype, ndim=ndim, flags=flags)
    wanted = np.dtype(dtype)

    class Checked(base):
        @classmethod
        def from_param(cls, obj):
            if obj is None and nullable:
                return None
            if not isinstance(obj, np.ndarray):
                raise TypeError(f"argument must be an ndarray, not {type(obj).__name__}")
            state = obj.flags
            if obj.dtype != wanted or obj.ndim != ndim or not (state.c_contiguous and state.aligned) \
                    or (writeable and not state.writeable):
                raise TypeError(f"array must be {ndim}-D {wanted} with flags {flags}")
            return ctypes.c_void_p(obj.ctypes.data)

    return Checked


def _declare(lib):
    """argtypes/restype of every exported function, in one place."""
    c_int, c_int64 = ctypes.c_int, ctypes.c_int64
    u64_2d = _ndpointer(np.uint64, 2)
    f32_1d = _ndpointer(np.float32, 1)
    f32_2d = _ndpointer(np.float32, 2)
    f32_2d_out = _ndpointer(np.float32, 2, writeable=True)
    f32_2d_out_or_null = _ndpointer(np.float32, 2, writeable=True, nullable=True)
    u64_2d_out = _ndpointer(np.uint64, 2, writeable=True)

    lib.hbnn_abi_version.argtypes = []
    lib.hbnn_abi_version.restype = c_int
    lib.hbnn_supported_paths.argtypes = []
    lib.hbnn_supported_paths.restype = c_int
    # path, a (R, K), R, K, segment_size, bits (R, KW), scales (R, nseg) or None, threads
    lib.hbnn_pack_rows.argtypes = [c_int, f32_2d, c_int64, c_int64, c_int, u64_2d_out, f32_2d_out_or_null, c_int]
    lib.hbnn_pack_rows.restype = c_int
    # path, xbits, xscale (M,), wbits, wscale (N, nseg), M, N, K, segment_size, out, threads
    lib.hbnn_gemm.argtypes = [c_int, u64_2d, f32_1d, u64_2d, f32_2d, c_int64, c_int64, c_int64,
                              c_int, f32_2d_out, c_int]
    lib.hbnn_gemm.restype = c_int


def _find_library():
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = os.path.join(here, LIBRARY_NAME + suffix)
        if os.path.exists(candidate):
            return candidate
    return None


def _load():
    """(library or None, its file, why it is not usable or None)."""
    path = _find_library()
    if path is None:
        return None, None, ("the C kernel was not built (no %s* next to %s); reinstall with a C "
                            "compiler: pip install -e ." % (LIBRARY_NAME, os.path.dirname(__file__)))
    try:
        lib = ctypes.CDLL(path)
        _declare(lib)
    except (OSError, AttributeError) as exc:
        return None, path, f"cannot load {path}: {exc}"
    version = lib.hbnn_abi_version()
    if version != ABI_VERSION:
        return None, path, (f"{path} is a stale build (ABI {version}, expected {ABI_VERSION}); "
                            "rebuild it: pip install -e .")
    return lib, path, None


def _probe():
    """Load the library and list the paths this machine can run (at import; tests call it again)."""
    global _LIB, _LIB_FILE, _LIB_ERROR, _AVAILABLE
    _LIB, _LIB_FILE, _LIB_ERROR = _load()
    mask = _LIB.hbnn_supported_paths() if _LIB is not None else 0
    _AVAILABLE = tuple(p for p in PATHS if p == "numpy" or (p in C_PATH_IDS and mask >> C_PATH_IDS[p] & 1))
    _warned.clear()


_LIB = _LIB_FILE = _LIB_ERROR = None
_AVAILABLE = ("numpy",)
_warned = set()  # the fallback messages already given as warnings
_probe()


# ----------------------------------------------------------------------------------------
# Paths and threads


def available_paths():
    """The paths this machine can run, best first ("numpy" is always there)."""
    return list(_AVAILABLE)


def unavailable_reason(path):
    """Why `path` cannot run here, or None when it can."""
    if path in _AVAILABLE:
        return None
    if path not in PATHS:
        return f"unknown HBNN kernel path {path!r}; known: {', '.join(PATHS)}"
    if _LIB is None:
        return _LIB_ERROR
    return f"this CPU (or this build of the C kernel) lacks {_PATH_NEEDS[path]}"


def _choose_path():
    """(the path used when none is given, why it is not the one asked for or None)."""
    wanted = os.environ.get(ENV_PATH, "auto").strip().lower() or "auto"
    best = _AVAILABLE[0]
    if wanted == "auto":
        if _LIB is None:
            return best, f"the HBNN C kernel is unavailable ({_LIB_ERROR}); using the {best} path"
        return best, None
    if wanted not in PATHS:
        return best, f"{ENV_PATH}={wanted!r} is not one of auto, {', '.join(PATHS)}; using {best}"
    reason = unavailable_reason(wanted)
    if reason is None:
        return wanted, None
    return best, f"{ENV_PATH}={wanted} cannot run here ({reason}); using {best}"


def active_path():
    """The path used when none is given: DUALNET_HBNN_KERNEL if it can run here, else the best
    available one, with a warning (once) when that is not what was asked for or the C kernel
    is missing."""
    path, fallback = _choose_path()
    if fallback is not None and fallback not in _warned:
        _warned.add(fallback)
        warnings.warn(fallback, RuntimeWarning, stacklevel=2)
    return path


def _resolve_path(path):
    if path is None:
        return active_path()
    reason = unavailable_reason(path)
    if reason is not None:
        raise KernelError(f"HBNN kernel path {path!r} is not available: {reason}")
    return path


def _usable_cpus():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_CPUS = _usable_cpus()


def default_threads():
    """DUALNET_HBNN_THREADS, else the number of CPUs this process may use."""
    value = os.environ.get(ENV_THREADS, "").strip()
    if not value:
        return _CPUS
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise KernelError(f"{ENV_THREADS}={value!r} must be a whole number >= 1")
    return count


def kernel_info():
    """What `dualnet info` prints about the HBNN kernel: the path in use and why it is a fallback."""
    path, fallback = _choose_path()
    info = {
        "library": _LIB_FILE,
        "library_error": _LIB_ERROR,
        "available_paths": available_paths(),
        "forced": os.environ.get(ENV_PATH),
        "active_path": path,
        "fallback": fallback,
        "threads": None,
    }
    try:
        info["threads"] = default_threads()
    except KernelError as exc:
        info["error"] = str(exc)
    return info


def describe():
    """One line for `dualnet info`."""
    info = kernel_info()
    threads = info["threads"] if info["threads"] is not None else "invalid"
    line = f"HBNN kernel: {info['active_path']} (available: {', '.join(info['available_paths'])}; threads {threads})"
    if info["fallback"]:
        line += f"; warning: {info['fallback']}"
    if info["library_error"] and info["library_error"] not in (info["fallback"] or ""):
        line += f"; C kernel unavailable: {info['library_error']}"
    if info.get("error"):
        line += f"; {info['error']}"
    return line


# ----------------------------------------------------------------------------------------
# Argument checks: everything the C code relies on is verified here, before the call.


def _check_array(name, array, dtypes, ndim):
    if not isinstance(array, np.ndarray):
        raise KernelError(f"{name} must be a NumPy array, got {type(array).__name__}")
    if array.dtype not in dtypes:
        wanted = " or ".join(np.dtype(d).name for d in dtypes)
        raise KernelError(f"{name} must be {wanted}, got {array.dtype}")
    if array.ndim != ndim:
        raise KernelError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if not (array.flags.c_contiguous and array.flags.aligned):
        raise KernelError(f"{name} must be C-contiguous and aligned (use np.ascontiguousarray)")


def _check_segment_size(segment_size):
    if isinstance(segment_size, bool) or not isinstance(segment_size, numbers.Integral) \
            or int(segment_size) not in SEGMENT_SIZES:
        raise KernelError(f"segment_size must be one of {SEGMENT_SIZES}, got {segment_size!r}")
    return int(segment_size)


def _check_K(K):
    if isinstance(K, bool) or not isinstance(K, numbers.Integral) or K < 1:
        raise KernelError(f"K (the length of the rows) must be an integer >= 1, got {K!r}")
    return int(K)


def _check_threads(threads, work=None, work_per_thread=1):
    """An explicit count is honoured; None means default_threads(), fewer for small `work`."""
    if threads is None:
        count = default_threads()
        if work is not None:
            count = min(count, 1 + int(work // work_per_thread))
        return max(1, min(count, 256))
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise KernelError(f"threads must be an integer >= 1, got {threads!r}")
    return int(min(threads, 256))


def _check_bits(name, bits, K):
    _check_array(name, bits, [np.uint64], 2)
    if bits.shape[1] != n_words(K):
        raise KernelError(f"{name} has {bits.shape[1]} words per row; K={K} packs into {n_words(K)}")
    if K % 64 and bits.shape[0]:
        padding = bits[:, -1] >> np.uint64(K % 64)
        if padding.any():
            raise KernelError(f"{name} has bits set past K={K} in its last word; pack rows with pack_rows()")


def _raise_status(status, what):
    if status != 0:
        raise KernelError(f"{what} failed: {_STATUS.get(status, f'status {status}')}")


# ----------------------------------------------------------------------------------------
# Packing


def _pack_numpy(A):
    rows, K = A.shape
    packed = np.packbits(A >= 0, axis=1, bitorder="little")
    words = np.zeros((rows, n_words(K) * 8), dtype=np.uint8)
    words[:, :packed.shape[1]] = packed
    return words.view("<u8").astype(np.uint64, copy=False)


def _segment_means(A, segment_size):
    """Mean |A| per segment of each row, in float64 (rounded once by the callers)."""
    rows, K = A.shape
    magnitude = np.abs(A).astype(np.float64)
    if segment_size == 0:
        return magnitude.sum(axis=1, keepdims=True) / K
    count = n_segments(K, segment_size)
    padded = np.zeros((rows, count * segment_size), dtype=np.float64)
    padded[:, :K] = magnitude
    return padded.reshape(rows, count, segment_size).sum(axis=2) / segment_lengths(K, segment_size)


def _row_scales_numpy(A, segment_size):
    return _segment_means(A, segment_size).astype(np.float32)


def _check_rows(A):
    _check_array("A", A, [np.float32, np.float64], 2)
    if A.shape[1] < 1:
        raise KernelError(f"A must have at least one column, got shape {A.shape}")


def pack_with_scales(A, segment_size, threads=None, path=None):
    """(bits (R, n_words(K)) uint64, scales (R, n_segments) float32) of the rows of A."""
    _check_rows(A)
    segment_size = _check_segment_size(segment_size)
    threads = _check_threads(threads, A.size, _PACK_WORK_PER_THREAD)
    path = _resolve_path(path)
    rows, K = A.shape
    if path == "numpy" or A.dtype != np.float32 or rows == 0:
        # float64 rows keep their own signs (a tiny negative double may round to -0.0 in float32)
        return _pack_numpy(A), _row_scales_numpy(A, segment_size)
    bits = np.empty((rows, n_words(K)), dtype=np.uint64)
    scales = np.empty((rows, n_segments(K, segment_size)), dtype=np.float32)
    status = _LIB.hbnn_pack_rows(C_PATH_IDS[path], A, rows, K, segment_size, bits, scales, threads)
    _raise_status(status, "hbnn_pack_rows")
    return bits, scales


def pack_rows(A, threads=None, path=None):
    """The sign bits of the rows of A (R, K) as uint64 (R, n_words(K)); bit = 1 for a >= 0."""
    _check_rows(A)
    threads = _check_threads(threads, A.size, _PACK_WORK_PER_THREAD)
    path = _resolve_path(path)
    rows, K = A.shape
    if path == "numpy" or A.dtype != np.float32 or rows == 0:
        return _pack_numpy(A)
    bits = np.empty((rows, n_words(K)), dtype=np.uint64)
    status = _LIB.hbnn_pack_rows(C_PATH_IDS[path], A, rows, K, 0, bits, None, threads)
    _raise_status(status, "hbnn_pack_rows")
    return bits


def row_scales(A, segment_size, threads=None, path=None):
    """Mean |A| over each segment of each row, float32 (R, n_segments(K, segment_size))."""
    return pack_with_scales(A, segment_size, threads=threads, path=path)[1]


def unpack_rows(bits, K, dtype=np.float32):
    """The +-1 signs of packed rows: (R, K) in `dtype`."""
    K = _check_K(K)
    _check_bits("bits", bits, K)
    ones = np.unpackbits(bits.astype("<u8", copy=False).view(np.uint8), axis=1, count=K, bitorder="little")
    return (ones.astype(dtype) * 2 - 1).astype(dtype, copy=False)


# ----------------------------------------------------------------------------------------
# The GEMM


def _counts_numpy(xbits, wbits, K, segment_size):
    """popcount(x XOR w) per segment: (rows, N, n_segments), integer."""
    diff = xbits[:, None, :] ^ wbits[None, :, :]
    if segment_size == 0:
        return np.bitwise_count(diff).sum(axis=2, dtype=np.int64)[..., None]
    if segment_size == 64:
        return np.bitwise_count(diff)
    # segments of 8/16/32 bits are the little-endian sub-words of each word
    lanes = diff.astype("<u8", copy=False).view(f"<u{segment_size // 8}")
    return np.bitwise_count(lanes)[..., :n_segments(K, segment_size)]


def _chunk_rows(N, K, segment_size):
    width = max(n_words(K), n_segments(K, segment_size))
    return max(1, _NUMPY_CHUNK_BYTES // (16 * N * width))


def _gemm_numpy(xbits, xscale, wbits, wscale, K, segment_size, out):
    M, N = xbits.shape[0], wbits.shape[0]
    beta = xscale.astype(np.float64).reshape(M, 1)
    alpha = wscale.astype(np.float64)
    # Same formula and order as the C kernel: y = beta * (A - 2 * sum alpha * pc),
    # A = sum alpha * len; for one segment y = beta * (alpha * (K - 2 * pc)).
    A = (alpha * segment_lengths(K, segment_size)).sum(axis=1)
    step = _chunk_rows(N, K, segment_size)
    for m0 in range(0, M, step):
        m1 = min(M, m0 + step)
        counts = _counts_numpy(xbits[m0:m1], wbits, K, segment_size)
        if segment_size == 0:
            y = beta[m0:m1] * (alpha[:, 0] * (K - 2 * counts[..., 0]).astype(np.float64))
        else:
            weighted = (counts * alpha).sum(axis=2)
            y = beta[m0:m1] * (A - 2.0 * weighted)
        out[m0:m1] = y
    return out


def binary_gemm(xbits, xscale, wbits, wscale, K, segment_size, threads=None, out=None, path=None):
    """y (M, N) float32 = X~ W~^T from packed rows and their scales (see the module docstring).

    xbits (M, n_words(K)) uint64 and xscale (M,) or (M, 1) float32: the binarised inputs;
    wbits (N, n_words(K)) uint64 and wscale (N, n_segments(K, segment_size)) float32: the
    binarised weights. `out`, if given, is a float32 (M, N) array written in place.
    """
    K = _check_K(K)
    segment_size = _check_segment_size(segment_size)
    _check_bits("xbits", xbits, K)
    _check_bits("wbits", wbits, K)
    M, N = xbits.shape[0], wbits.shape[0]
    if not isinstance(xscale, np.ndarray) or xscale.shape not in ((M,), (M, 1)):
        raise KernelError(f"xscale must be an array of shape ({M},) or ({M}, 1) for {M} input rows, "
                          f"got {getattr(xscale, 'shape', type(xscale).__name__)}")
    _check_array("xscale", xscale, [np.float32], xscale.ndim)
    _check_array("wscale", wscale, [np.float32], 2)
    if wscale.shape != (N, n_segments(K, segment_size)):
        raise KernelError(f"wscale must have shape ({N}, {n_segments(K, segment_size)}) for {N} rows, "
                          f"K={K} and segment_size={segment_size}, got {wscale.shape}")
    threads = _check_threads(threads, M * N * n_words(K) * _SEGMENT_COST[segment_size], _GEMM_WORK_PER_THREAD)
    if out is None:
        out = np.empty((M, N), dtype=np.float32)
    else:
        _check_array("out", out, [np.float32], 2)
        if out.shape != (M, N):
            raise KernelError(f"out must have shape ({M}, {N}), got {out.shape}")
        if not out.flags.writeable:
            raise KernelError("out must be writeable")
        if any(np.may_share_memory(out, a) for a in (xbits, xscale, wbits, wscale)):
            raise KernelError("out must not overlap the inputs")
    path = _resolve_path(path)
    if M == 0 or N == 0:
        return out
    if path == "numpy":
        return _gemm_numpy(xbits, xscale, wbits, wscale, K, segment_size, out)
    status = _LIB.hbnn_gemm(C_PATH_IDS[path], xbits, xscale.reshape(M), wbits, wscale, M, N, K,
                            segment_size, out, threads)
    _raise_status(status, "hbnn_gemm")
    return out


def segment_counts(xbits, wbits, K, segment_size, threads=None, path=None):
    """popcount(xbits XOR wbits) per segment, int32 (M, N, n_segments): the integer core of the
    GEMM, read back from `path`'s own GEMM (for tests and debugging; n_segments GEMM calls).

    Call j weighs segment j alone: alpha[n] = 1 on segment j and 0 elsewhere, beta = 1, so
    y[m, n] = len(j) - 2 * count[m, n, j]. Every partial sum is then a small integer or 0, exact
    in float32 lanes and in double, whatever the path's order of summation.
    """
    K = _check_K(K)
    segment_size = _check_segment_size(segment_size)
    _check_bits("xbits", xbits, K)
    _check_bits("wbits", wbits, K)
    path = _resolve_path(path)
    M, N = xbits.shape[0], wbits.shape[0]
    lengths = segment_lengths(K, segment_size)
    counts = np.zeros((M, N, len(lengths)), dtype=np.int32)
    if M == 0 or N == 0:
        return counts
    beta = np.ones(M, dtype=np.float32)
    alpha = np.zeros((N, len(lengths)), dtype=np.float32)
    y = np.empty((M, N), dtype=np.float32)
    for j, length in enumerate(lengths):
        alpha[:, j - 1] = 0
        alpha[:, j] = 1
        binary_gemm(xbits, beta, wbits, alpha, K, segment_size, threads=threads, out=y, path=path)
        twice = length - y.astype(np.float64)
        if not np.array_equal(twice, 2 * np.floor(twice / 2)):
            raise KernelError(f"the {path} GEMM gave a non-integer count for segment {j} (a kernel bug)")
        counts[:, :, j] = twice / 2
    return counts


# ----------------------------------------------------------------------------------------
# Float reference: the same math with sign/alpha/beta as float arrays


def binarize(W, segment_size):
    """(W~, alpha): W~ = alpha (.) sign(W) along the rows of W (first axis; the other axes are
    flattened into K, Caffe's weight layout), alpha (R, n_segments) = mean |W| per segment.

    Works in W's float dtype (float64 for gradient checks); for float32 W, alpha equals
    row_scales(W) and W~ equals what packing.unpack_blob gives back.
    """
    segment_size = _check_segment_size(segment_size)
    if not isinstance(W, np.ndarray) or W.dtype.kind != "f" or W.ndim < 1 or W.size == 0:
        raise KernelError(f"binarize needs a non-empty float array, got {getattr(W, 'dtype', type(W))}")
    rows = W.reshape(W.shape[0], -1) if W.ndim > 1 else W.reshape(1, -1)
    K = rows.shape[1]
    alpha = _segment_means(rows, segment_size).astype(W.dtype)
    expanded = np.repeat(alpha, segment_lengths(K, segment_size), axis=1)
    binary = np.where(rows >= 0, expanded, -expanded).astype(W.dtype, copy=False)
    return binary.reshape(W.shape), alpha


def reference_gemm(X, W, segment_size, binarize_input=True):
    """X~ @ W~.T computed with float arrays (X (M, K), W (N, K)): the independent check of
    binary_gemm, and the forward a layer can use in float64."""
    W_binary, _ = binarize(W, segment_size)
    if binarize_input:
        X, _ = binarize(X, 0)
    return X @ W_binary.reshape(W.shape[0], -1).T
