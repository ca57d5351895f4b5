"""The HBNN XOR/popcount GEMM: every dispatch path against independent integer and float math.

Paths the CPU or the build lacks are skipped with the reason (a machine limitation).
"""
import warnings

import numpy as np
import pytest

from dualnet.errors import KernelError
from dualnet.hbnn import kernel
from layer_harness import optional_packages_required

SEGMENT_SIZES = (0, 8, 16, 32, 64)
C_PATHS = ("avx512", "avx2", "portable")
# (M, N, K): odd M and N, K below, at and past one word, not a multiple of 64 or of the segment;
# the last two have enough rows or columns for 2 threads to split the rows or the columns
FIXED_SHAPES = [(1, 1, 1), (3, 5, 7), (7, 9, 130), (5, 3, 64), (13, 11, 800), (9, 17, 1000), (31, 33, 577),
                (67, 9, 300), (5, 71, 200)]


def random_shapes(count, seed=20240917):
    """Seeded random (M, N, K): M and N odd in 1..69, K in 1..1215 and never a multiple of 64."""
    rng = np.random.default_rng(seed)
    return [(int(2 * rng.integers(0, 35) + 1), int(2 * rng.integers(0, 35) + 1),
             int(64 * rng.integers(0, 19) + rng.integers(1, 64))) for _ in range(count)]


SHAPES = FIXED_SHAPES + random_shapes(6)


# Without the C library the compiled paths' tests skip, except where optional parts are required
# (CI), where they run and fail; a SIMD path this CPU lacks always skips.
LIBRARY_MISSING = kernel.unavailable_reason("portable") is not None
SKIP_WITHOUT_LIBRARY = LIBRARY_MISSING and not optional_packages_required()
needs_library = pytest.mark.skipif(SKIP_WITHOUT_LIBRARY, reason="the C kernel is not built here")


def on(path):
    reason = kernel.unavailable_reason(path)
    skip = reason is not None and (not LIBRARY_MISSING or SKIP_WITHOUT_LIBRARY)
    return pytest.param(path, id=path, marks=pytest.mark.skipif(skip, reason=reason or ""))


ALL_PATHS = [on(p) for p in C_PATHS + ("numpy",)]
COMPILED_PATHS = [on(p) for p in C_PATHS]


def random_rows(rng, rows, K):
    """Gaussian rows with exact zeros and negative zeros sprinkled in (sign(0) = +1)."""
    A = rng.standard_normal((rows, K)).astype(np.float32)
    A[rng.random((rows, K)) < 0.05] = 0.0
    A[rng.random((rows, K)) < 0.05] = -0.0
    return A


def signs(A):
    return np.where(A >= 0, 1, -1).astype(np.int64)


def segment_bounds(K, s):
    """[(begin, end)] of each segment, written out independently of the kernel."""
    step = K if s == 0 else s
    return [(b, min(b + step, K)) for b in range(0, K, step)]


def integer_product(X, W, alpha_int, s):
    """sum_seg alpha * (sum_k sign(x) sign(w)) with integer alphas: exact int64 math."""
    sx, sw = signs(X), signs(W)
    y = np.zeros((X.shape[0], W.shape[0]), dtype=np.int64)
    for j, (b, e) in enumerate(segment_bounds(X.shape[1], s)):
        y += (sx[:, b:e] @ sw[:, b:e].T) * alpha_int[:, j][None, :]
    return y


def float_product(X, W, s):
    """beta * sign(X) @ (alpha * sign(W)).T in float64, alpha/beta = mean |.| per segment/row."""
    K = X.shape[1]
    beta = np.abs(X.astype(np.float64)).mean(axis=1)
    W_binary = np.empty(W.shape, dtype=np.float64)
    for b, e in segment_bounds(K, s):
        alpha = np.abs(W[:, b:e].astype(np.float64)).mean(axis=1, keepdims=True)
        W_binary[:, b:e] = alpha * signs(W[:, b:e])
    return (beta[:, None] * signs(X)) @ W_binary.T


def magnitude_bound(xscale, wscale, K, s):
    """beta * sum_seg alpha * len: the largest |y| can be, the scale of rounding errors."""
    return xscale.reshape(-1, 1).astype(np.float64) * (wscale.astype(np.float64) @ kernel.segment_lengths(K, s))[None, :]


# ---------------------------------------------------------------------------------------
# Packing


@pytest.mark.parametrize("path", ALL_PATHS)
def test_pack_rows_sets_bit_k_of_word_k_div_64_for_nonnegative_values(path):
    K = 70
    A = np.full((2, K), -1.0, dtype=np.float32)
    A[0, [0, 3, 63, 64, 69]] = [0.0, 2.5, -0.0, 1e-30, 7.0]
    A[1, 1] = np.nan  # NaN is not >= 0: bit 0
    bits = kernel.pack_rows(A, path=path)
    assert bits.dtype == np.uint64 and bits.shape == (2, 2)
    assert int(bits[0, 0]) == (1 << 0) | (1 << 3) | (1 << 63)
    assert int(bits[0, 1]) == (1 << 0) | (1 << 5)
    assert int(bits[1, 0]) == 0 and int(bits[1, 1]) == 0


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("K", [1, 63, 64, 65, 200, 577])
def test_pack_rows_agrees_with_a_bit_by_bit_loop(path, K):
    A = random_rows(np.random.default_rng(K), 5, K)
    expected = np.zeros((5, kernel.n_words(K)), dtype=np.uint64)
    for r in range(5):
        for k in range(K):
            if A[r, k] >= 0:
                expected[r, k // 64] |= np.uint64(1) << np.uint64(k % 64)
    assert np.array_equal(kernel.pack_rows(A, path=path), expected)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_row_scales_are_mean_abs_per_segment_with_a_short_last_segment(path):
    A = np.arange(1, 21, dtype=np.float32).reshape(1, 20) * np.where(np.arange(20) % 2, -1, 1)
    assert np.allclose(kernel.row_scales(A, 8, path=path), [[4.5, 12.5, 18.5]], rtol=1e-7)
    assert np.allclose(kernel.row_scales(A, 0, path=path), [[10.5]], rtol=1e-7)
    assert np.allclose(kernel.row_scales(A, 64, path=path), [[10.5]], rtol=1e-7)


@pytest.mark.parametrize("path", COMPILED_PATHS)
@pytest.mark.parametrize("s", SEGMENT_SIZES)
def test_pack_with_scales_matches_the_numpy_path(path, s):
    A = random_rows(np.random.default_rng(s), 11, 577)
    bits, scales = kernel.pack_with_scales(A, s, threads=2, path=path)
    ref_bits, ref_scales = kernel.pack_with_scales(A, s, path="numpy")
    assert np.array_equal(bits, ref_bits)
    assert np.allclose(scales, ref_scales, rtol=1e-7, atol=0)


def test_float64_rows_keep_their_own_signs():
    A = np.array([[-1e-60, 1e-60]])  # both round to +-0.0 in float32
    assert int(kernel.pack_rows(A)[0, 0]) == 0b10


@pytest.mark.parametrize("K", [1, 64, 130])
def test_unpack_rows_inverts_pack_rows(K):
    A = random_rows(np.random.default_rng(K), 4, K)
    assert np.array_equal(kernel.unpack_rows(kernel.pack_rows(A), K), signs(A).astype(np.float32))


# ---------------------------------------------------------------------------------------
# The integer core: counts and integer-weighted products, exact on every path


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("s", SEGMENT_SIZES)
@pytest.mark.parametrize("threads", [1, 2])
def test_segment_counts_of_every_path_are_the_sign_mismatches_per_segment(path, s, threads):
    # segment_counts reads each count back from `path`'s own GEMM (one segment weighted at a time)
    rng = np.random.default_rng(200 + s + threads)
    for M, N, K in SHAPES:
        X, W = random_rows(rng, M, K), random_rows(rng, N, K)
        counts = kernel.segment_counts(kernel.pack_rows(X), kernel.pack_rows(W), K, s, threads=threads, path=path)
        mismatch = signs(X)[:, None, :] != signs(W)[None, :, :]
        expected = np.stack([mismatch[..., b:e].sum(axis=2) for b, e in segment_bounds(K, s)], axis=2)
        assert counts.dtype == np.int32
        assert np.array_equal(counts, expected), (M, N, K)


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("s", SEGMENT_SIZES)
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_with_integer_scales_is_exact(path, s, threads):
    # Integer alphas and beta = 1 keep every partial sum an exact float, so any summation
    # order must give the integer answer: this checks each segment's count bit for bit.
    rng = np.random.default_rng(s + threads)
    for M, N, K in SHAPES:
        X, W = random_rows(rng, M, K), random_rows(rng, N, K)
        alpha = rng.integers(1, 5, size=(N, kernel.n_segments(K, s)))
        y = kernel.binary_gemm(kernel.pack_rows(X), np.ones(M, np.float32), kernel.pack_rows(W),
                               alpha.astype(np.float32), K, s, threads=threads, path=path)
        assert np.array_equal(y, integer_product(X, W, alpha, s).astype(np.float32)), (M, N, K)


@pytest.mark.parametrize("path", COMPILED_PATHS)
@pytest.mark.parametrize("s", SEGMENT_SIZES)
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_matches_the_numpy_path_to_float_rounding(path, s, threads):
    rng = np.random.default_rng(100 + s)
    for M, N, K in SHAPES:
        xbits, xscale = kernel.pack_with_scales(random_rows(rng, M, K), 0, path="numpy")
        wbits, wscale = kernel.pack_with_scales(random_rows(rng, N, K), s, path="numpy")
        y = kernel.binary_gemm(xbits, xscale, wbits, wscale, K, s, threads=threads, path=path)
        ref = kernel.binary_gemm(xbits, xscale, wbits, wscale, K, s, path="numpy")
        bound = magnitude_bound(xscale, wscale, K, s)
        assert y.dtype == np.float32 and y.shape == (M, N)
        assert np.all(np.abs(y - ref) <= 1e-6 * bound + 1e-37), (M, N, K)


@pytest.mark.parametrize("s", [0, 64])
def test_paths_give_identical_floats_when_segment_sums_stay_in_double(s):
    # s = 0 is an integer count and s = 64 sums in double on the portable path: the same
    # formula in the same order as the NumPy path, so the floats agree exactly.
    rng = np.random.default_rng(3)
    xbits, xscale = kernel.pack_with_scales(random_rows(rng, 9, 577), 0)
    wbits, wscale = kernel.pack_with_scales(random_rows(rng, 17, 577), s)
    ref = kernel.binary_gemm(xbits, xscale, wbits, wscale, 577, s, path="numpy")
    paths = ["portable"] if s else [p for p in C_PATHS if kernel.unavailable_reason(p) is None]
    for path in paths:
        if kernel.unavailable_reason(path) is None:
            assert np.array_equal(kernel.binary_gemm(xbits, xscale, wbits, wscale, 577, s, path=path), ref)


# ---------------------------------------------------------------------------------------
# The float math, independently


@pytest.mark.parametrize("s", SEGMENT_SIZES)
def test_numpy_path_equals_sign_alpha_beta_matmul(s):
    rng = np.random.default_rng(11 + s)
    for M, N, K in SHAPES:
        X, W = random_rows(rng, M, K), random_rows(rng, N, K)
        xbits, xscale = kernel.pack_with_scales(X, 0, path="numpy")
        wbits, wscale = kernel.pack_with_scales(W, s, path="numpy")
        y = kernel.binary_gemm(xbits, xscale, wbits, wscale, K, s, path="numpy")
        bound = magnitude_bound(xscale, wscale, K, s)
        assert np.all(np.abs(y - float_product(X, W, s)) <= 1e-6 * bound + 1e-37), (M, N, K)


def test_hand_computed_product_with_two_segments_of_8_and_2():
    X = np.array([[1, -2, 3, -4, 1, 1, 1, 1, -1, 1]], dtype=np.float32)  # beta = 16 / 10
    W = np.array([[2, 2, 2, 2, -2, -2, -2, -2, 5, -1]], dtype=np.float32)  # alpha = 2, 3
    # sign(x) . sign(w): first 8 -> (1 -1 1 -1) - (1 1 1 1) = -4; last 2 -> -1 - 1 = -2
    expected = 1.6 * (2 * -4 + 3 * -2)
    assert np.allclose(kernel.reference_gemm(X, W, 8), [[expected]], rtol=1e-6)
    xbits, xscale = kernel.pack_with_scales(X, 0)
    wbits, wscale = kernel.pack_with_scales(W, 8)
    assert np.allclose(kernel.binary_gemm(xbits, xscale, wbits, wscale, 10, 8), [[expected]], rtol=1e-6)


def test_reference_gemm_with_float_inputs_is_x_times_binarized_w():
    rng = np.random.default_rng(5)
    X, W = rng.standard_normal((4, 40)), rng.standard_normal((3, 40))
    W_binary, _ = kernel.binarize(W, 16)
    assert np.allclose(kernel.reference_gemm(X, W, 16, binarize_input=False), X @ W_binary.T)


def test_binarize_is_alpha_times_sign_per_segment_in_the_weights_dtype():
    W = np.array([[1.0, -3.0, 0.0, -0.5, 2.0]])
    W_binary, alpha = kernel.binarize(W, 8)
    assert W_binary.dtype == np.float64 and alpha.shape == (1, 1)
    assert np.allclose(alpha, [[6.5 / 5]])
    assert np.allclose(W_binary, [[1.3, -1.3, 1.3, -1.3, 1.3]])
    conv = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    conv_binary, conv_alpha = kernel.binarize(conv, 16)
    assert conv_binary.shape == conv.shape and conv_alpha.shape == (4, 5) and conv_binary.dtype == np.float32


# ---------------------------------------------------------------------------------------
# The call contract


def test_empty_batches_give_empty_results():
    wbits, wscale = kernel.pack_with_scales(np.ones((3, 10), np.float32), 8)
    xbits = np.zeros((0, 1), np.uint64)
    y = kernel.binary_gemm(xbits, np.zeros(0, np.float32), wbits, wscale, 10, 8)
    assert y.shape == (0, 3)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_out_is_written_in_place_and_xscale_may_be_a_column(path):
    rng = np.random.default_rng(2)
    xbits, xscale = kernel.pack_with_scales(random_rows(rng, 5, 90), 0)
    wbits, wscale = kernel.pack_with_scales(random_rows(rng, 6, 90), 32)
    out = np.full((5, 6), np.nan, dtype=np.float32)
    result = kernel.binary_gemm(xbits, xscale, wbits, wscale, 90, 32, out=out, path=path)
    assert result is out and np.isfinite(out).all()
    assert xscale.shape == (5, 1)
    np.testing.assert_allclose(out, kernel.binary_gemm(xbits, xscale.ravel(), wbits, wscale, 90, 32, path="numpy"),
                               rtol=1e-5, atol=1e-5)


def good_arguments():
    rng = np.random.default_rng(0)
    xbits, xscale = kernel.pack_with_scales(random_rows(rng, 3, 100), 0)
    wbits, wscale = kernel.pack_with_scales(random_rows(rng, 4, 100), 16)
    return dict(xbits=xbits, xscale=xscale.ravel(), wbits=wbits, wscale=wscale, K=100, segment_size=16)


def padded(bits):
    bits = bits.copy()
    bits[0, -1] |= np.uint64(1) << np.uint64(63)
    return bits


BAD_ARGUMENTS = {
    "xbits int64": lambda a: {"xbits": a["xbits"].astype(np.int64)},
    "xbits a list": lambda a: {"xbits": a["xbits"].tolist()},
    "xbits 1-D": lambda a: {"xbits": a["xbits"].ravel()},
    "wbits not contiguous": lambda a: {"wbits": np.repeat(a["wbits"], 2, axis=1)[:, ::2]},
    "wbits too few words": lambda a: {"wbits": np.ascontiguousarray(a["wbits"][:, :1])},
    "bits past K set": lambda a: {"wbits": padded(a["wbits"])},
    "xscale float64": lambda a: {"xscale": a["xscale"].astype(np.float64)},
    "xscale wrong length": lambda a: {"xscale": a["xscale"][:2].copy()},
    "wscale not contiguous": lambda a: {"wscale": np.asfortranarray(a["wscale"])},
    "wscale wrong segments": lambda a: {"wscale": np.ones((4, 3), np.float32)},
    "K zero": lambda a: {"K": 0},
    "K float": lambda a: {"K": 100.0},
    "segment 12": lambda a: {"segment_size": 12},
    "segment -8": lambda a: {"segment_size": -8},
    "segment True": lambda a: {"segment_size": True},
    "threads zero": lambda a: {"threads": 0},
    "threads negative": lambda a: {"threads": -2},
    "threads float": lambda a: {"threads": 1.5},
    "out wrong shape": lambda a: {"out": np.empty((4, 3), np.float32)},
    "out float64": lambda a: {"out": np.empty((3, 4))},
    "out read-only": lambda a: {"out": np.lib.stride_tricks.as_strided(np.empty((3, 4), np.float32), writeable=False)},
    "unknown path": lambda a: {"path": "sse2"},
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_raise_kernel_error(case):
    arguments = good_arguments()
    arguments.update(BAD_ARGUMENTS[case](arguments))
    with pytest.raises(KernelError):
        kernel.binary_gemm(**arguments)


@pytest.mark.parametrize("bad", [np.ones((2, 3), np.int32), np.ones((2, 3), np.float32)[:, ::2], np.ones(3, np.float32),
                                 np.ones((2, 0), np.float32)])
def test_bad_rows_to_pack_raise_kernel_error(bad):
    with pytest.raises(KernelError):
        kernel.pack_rows(bad)


@needs_library
def test_the_c_library_refuses_bad_arguments_with_status_codes():
    a = good_arguments()
    out = np.empty((3, 4), np.float32)
    gemm = kernel._LIB.hbnn_gemm
    call = [0, a["xbits"], a["xscale"], a["wbits"], a["wscale"], 3, 4, 100, 16, out, 1]
    assert gemm(*call) == 0
    for position, value, status in [(10, 0, -4), (8, 12, -3), (5, 0, -2), (7, -1, -2), (0, 7, -5)]:
        bad = list(call)
        bad[position] = value
        assert gemm(*bad) == status


def test_the_environment_variable_forces_a_path(monkeypatch):
    monkeypatch.setenv(kernel.ENV_PATH, "numpy")
    assert kernel.active_path() == "numpy"
    monkeypatch.setenv(kernel.ENV_PATH, "auto")
    assert kernel.active_path() == kernel.available_paths()[0]


def test_a_value_that_is_not_a_path_falls_back_to_the_best_with_a_warning(monkeypatch):
    monkeypatch.setattr(kernel, "_warned", set())
    monkeypatch.setenv(kernel.ENV_PATH, "avx51")
    with pytest.warns(RuntimeWarning, match="DUALNET_HBNN_KERNEL='avx51' is not one of auto"):
        assert kernel.active_path() == kernel.available_paths()[0]


def test_a_forced_path_the_machine_lacks_falls_back_to_the_best_with_a_warning(monkeypatch):
    monkeypatch.setattr(kernel, "_AVAILABLE", ("numpy",))
    monkeypatch.setattr(kernel, "_warned", set())
    monkeypatch.setenv(kernel.ENV_PATH, "avx512")
    with pytest.warns(RuntimeWarning, match="avx512"):
        assert kernel.active_path() == "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernel.active_path() == "numpy"  # warned once
    with pytest.raises(KernelError, match="not available"):
        kernel.pack_rows(np.ones((1, 3), np.float32), path="avx512")


def test_thread_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(kernel.ENV_THREADS, "3")
    assert kernel.default_threads() == 3
    monkeypatch.setenv(kernel.ENV_THREADS, "zero")
    with pytest.raises(KernelError, match=kernel.ENV_THREADS):
        kernel.default_threads()


@pytest.fixture
def drop_the_library(monkeypatch):
    """A function that runs the loader again with no library to find; the module's state is
    restored after the test."""
    def drop():
        for name in ("_LIB", "_LIB_FILE", "_LIB_ERROR", "_AVAILABLE"):
            monkeypatch.setattr(kernel, name, getattr(kernel, name))
        monkeypatch.setattr(kernel, "_warned", set())
        monkeypatch.setattr(kernel, "_find_library", lambda: None)
        monkeypatch.delenv(kernel.ENV_PATH, raising=False)
        kernel._probe()
    return drop


@needs_library
def test_without_the_library_the_numpy_path_runs_with_a_clear_message_and_the_same_results(drop_the_library):
    # s = 0: every path evaluates the same double formula, so the floats agree bit for bit
    rng = np.random.default_rng(9)
    xbits, xscale = kernel.pack_with_scales(random_rows(rng, 9, 577), 0, path="numpy")
    wbits, wscale = kernel.pack_with_scales(random_rows(rng, 17, 577), 0, path="numpy")
    compiled = kernel.binary_gemm(xbits, xscale, wbits, wscale, 577, 0, path=kernel.available_paths()[0])
    drop_the_library()
    assert kernel.available_paths() == ["numpy"]
    with pytest.warns(RuntimeWarning, match=r"C kernel is unavailable \(the C kernel was not built .*pip install"):
        assert kernel.active_path() == "numpy"
    assert "was not built" in kernel.describe() and kernel.describe().startswith("HBNN kernel: numpy ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        assert np.array_equal(kernel.binary_gemm(xbits, xscale, wbits, wscale, 577, 0), compiled)
    with pytest.raises(KernelError, match="not available: the C kernel was not built"):
        kernel.binary_gemm(xbits, xscale, wbits, wscale, 577, 0, path="portable")


def test_info_names_the_fallback_path_and_the_warning_for_a_bad_environment_value(monkeypatch):
    from dualnet import info

    monkeypatch.setenv(kernel.ENV_PATH, "avx51")
    (line,) = [line for line in info.lines() if line.startswith("HBNN kernel:")]
    best = kernel.available_paths()[0]
    assert line.startswith(f"HBNN kernel: {best} (available: {', '.join(kernel.available_paths())}; "
                           f"threads {kernel.default_threads()})")
    assert (f"warning: DUALNET_HBNN_KERNEL='avx51' is not one of auto, avx512, avx2, portable, numpy; "
            f"using {best}") in line
    assert "None" not in line


def test_info_says_when_the_thread_count_is_invalid(monkeypatch):
    monkeypatch.setenv(kernel.ENV_THREADS, "zero")
    assert "threads invalid" in kernel.describe() and "DUALNET_HBNN_THREADS='zero' must be" in kernel.describe()


def test_kernel_info_names_the_active_path_and_the_available_ones():
    info = kernel.kernel_info()
    assert info["active_path"] in info["available_paths"]
    assert "numpy" in info["available_paths"]
    assert info["active_path"] in kernel.describe()
