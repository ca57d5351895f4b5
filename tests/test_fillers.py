"""Caffe's fillers against their formulas, on seeded draws large enough for 5-sigma bounds.

For n draws of a distribution with mean m, variance v and fourth central
moment m4, the sample mean is within 5 sqrt(v/n) of m and the sample variance
within 5 sqrt((m4 - v^2)/n) of v, except with probability ~1e-6; the seeds
are fixed, so the tests are deterministic.
"""
import numpy as np
import pytest

import dualnet.random
from dualnet import dualnet_pb2 as pb
from dualnet.errors import LayerError
from dualnet.fillers import fill, filler

FAN_IN, FAN_OUT, AVERAGE = pb.FillerParameter.FAN_IN, pb.FillerParameter.FAN_OUT, pb.FillerParameter.AVERAGE
CONV_SHAPE = (256, 128, 3, 3)           # fan_in = 128*9 = 1152, fan_out = 256*9 = 2304
CONV_N = {FAN_IN: 1152.0, FAN_OUT: 2304.0, AVERAGE: (1152 + 2304) / 2}


def draw(shape, param, seed=0, dtype=np.float32):
    dualnet.random.seed(seed)
    return fill(np.empty(shape, dtype=dtype), param)


def assert_moments(x, mean, var, fourth):
    """Sample mean and variance of x within 5 standard errors of (mean, var)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    assert abs(x.mean() - mean) <= 5 * np.sqrt(var / n), f"mean {x.mean()} vs {mean}"
    assert abs(x.var() - var) <= 5 * np.sqrt((fourth - var**2) / n), f"variance {x.var()} vs {var}"


def uniform_moments(a, b):
    width = b - a
    return (a + b) / 2, width**2 / 12, width**4 / 80


def gaussian_moments(mean, std):
    return mean, std**2, 3 * std**4


def assert_fraction(hits, n, p):
    assert abs(hits / n - p) <= 5 * np.sqrt(p * (1 - p) / n), f"fraction {hits / n} vs {p}"


# ---------------------------------------------------------------- constant, uniform, gaussian

def test_constant_sets_every_value():
    x = draw((3, 4), filler("constant", value=0.3))
    np.testing.assert_array_equal(x, np.full((3, 4), np.float32(0.3)))


def test_constant_default_is_zero():
    assert not draw((5,), pb.FillerParameter()).any()


def test_uniform_range_and_moments():
    x = draw((400, 500), filler("uniform", min=-2.0, max=3.0))
    assert x.min() >= -2.0 and x.max() <= 3.0
    assert x.min() < -1.99 and x.max() > 2.99
    assert_moments(x, *uniform_moments(-2.0, 3.0))


def test_uniform_default_is_zero_to_one():
    x = draw((100000,), filler("uniform"))
    assert x.min() >= 0 and x.max() <= 1
    assert_moments(x, *uniform_moments(0.0, 1.0))


def test_gaussian_moments_and_shape():
    x = draw((400, 500), filler("gaussian", mean=1.5, std=0.7))
    assert_moments(x, *gaussian_moments(1.5, 0.7))
    # a normal distribution puts 68.27% of its mass within one std of the mean
    assert_fraction(int((np.abs(x - 1.5) < 0.7).sum()), x.size, 0.682689)


def test_sparse_gaussian_keeps_sparse_over_num_outputs_of_the_weights():
    x = draw((40, 5000), filler("gaussian", std=0.5, sparse=10))   # keep probability 10/40
    nonzero = x[x != 0]
    assert_fraction(nonzero.size, x.size, 0.25)
    assert_moments(nonzero, *gaussian_moments(0.0, 0.5))


def test_sparse_gaussian_at_least_num_outputs_is_dense():
    assert np.count_nonzero(draw((8, 1000), filler("gaussian", sparse=8))) == 8000


def test_sparse_zero_gives_zeros():
    assert not draw((8, 100), filler("gaussian", sparse=0)).any()


# ---------------------------------------------------------------- positive_unitball

def test_positive_unitball_rows_are_positive_and_sum_to_one():
    x = draw((500, 3, 4, 5), filler("positive_unitball"))
    assert (x >= 0).all()
    np.testing.assert_allclose(x.reshape(500, -1).sum(axis=1), 1.0, rtol=1e-5)


def test_positive_unitball_rows_are_normalised_uniform_draws():
    x = draw((500, 60), filler("positive_unitball")).astype(np.float64)
    # x = u / sum(u) with u ~ U(0, 1): 60 x has mean 1 and a spread close to
    # that of u / E[u], whose standard deviation is (1/sqrt(12)) / (1/2) = 0.577
    scaled = x * 60
    assert abs(scaled.mean() - 1.0) < 1e-6
    assert abs(scaled.std() - 1 / np.sqrt(3)) < 0.02


# ---------------------------------------------------------------- xavier and msra

@pytest.mark.parametrize("norm", [FAN_IN, FAN_OUT, AVERAGE])
def test_xavier_is_uniform_with_variance_one_over_n(norm):
    scale = np.sqrt(3.0 / CONV_N[norm])
    x = draw(CONV_SHAPE, filler("xavier", variance_norm=norm))
    assert np.abs(x).max() <= scale * (1 + 1e-6)
    assert np.abs(x).max() > 0.999 * scale
    assert_moments(x, *uniform_moments(-scale, scale))
    assert abs(x.astype(np.float64).var() * CONV_N[norm] - 1) < 0.02


@pytest.mark.parametrize("norm", [FAN_IN, FAN_OUT, AVERAGE])
def test_msra_is_gaussian_with_variance_two_over_n(norm):
    std = np.sqrt(2.0 / CONV_N[norm])
    x = draw(CONV_SHAPE, filler("msra", variance_norm=norm))
    assert_moments(x, *gaussian_moments(0.0, std))


def test_fans_of_an_inner_product_weight():
    # InnerProduct weight: num_output x inputs, fan_in = inputs = 2000, fan_out = num_output = 100
    x = draw((100, 2000), filler("xavier"))
    assert np.abs(x).max() <= np.sqrt(3.0 / 2000) * (1 + 1e-6)
    assert np.abs(x).max() > 0.999 * np.sqrt(3.0 / 2000)
    y = draw((100, 2000), filler("msra", variance_norm=FAN_OUT))
    assert_moments(y, *gaussian_moments(0.0, np.sqrt(2.0 / 100)))


# ---------------------------------------------------------------- bilinear

def test_bilinear_4x4_kernel():
    # factor 2: f = ceil(4/2) = 2, c = (2f - 1 - f % 2) / 2f = 3/4,
    # weight(i) = 1 - |i/f - c| = 1/4, 3/4, 3/4, 1/4
    ramp = np.array([0.25, 0.75, 0.75, 0.25])
    expected = np.array([
        [0.0625, 0.1875, 0.1875, 0.0625],
        [0.1875, 0.5625, 0.5625, 0.1875],
        [0.1875, 0.5625, 0.5625, 0.1875],
        [0.0625, 0.1875, 0.1875, 0.0625],
    ])
    np.testing.assert_array_equal(np.outer(ramp, ramp), expected)
    x = draw((3, 2, 4, 4), filler("bilinear"))
    for kernel in x.reshape(-1, 4, 4):
        np.testing.assert_allclose(kernel, expected, rtol=1e-7)


def test_bilinear_5x5_kernel():
    # factor 3: f = 3, c = (6 - 1 - 1) / 6 = 2/3, weights 1/3, 2/3, 1, 2/3, 1/3
    ramp = np.array([1, 2, 3, 2, 1]) / 3
    x = draw((1, 1, 5, 5), filler("bilinear"))
    np.testing.assert_allclose(x[0, 0], np.outer(ramp, ramp), rtol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 4, 3), (4, 4)])
def test_bilinear_needs_square_4d_kernels(shape):
    with pytest.raises(LayerError, match="bilinear filler needs a 4-D blob with square kernels"):
        draw(shape, filler("bilinear"))


# ---------------------------------------------------------------- selection and seeding

def test_unknown_filler_suggests_the_nearest_name():
    with pytest.raises(LayerError, match="unknown filler type 'xavir'; did you mean 'xavier'"):
        draw((2, 2), filler("xavir"))


@pytest.mark.parametrize("name", ["uniform", "gaussian", "positive_unitball", "xavier", "msra"])
def test_same_seed_same_values(name):
    np.testing.assert_array_equal(draw((6, 5), filler(name), seed=3), draw((6, 5), filler(name), seed=3))
    assert not np.array_equal(draw((6, 5), filler(name), seed=3), draw((6, 5), filler(name), seed=4))


def test_float64_blobs_are_filled_in_float64():
    x = draw((1000,), filler("gaussian"), dtype=np.float64)
    assert x.dtype == np.float64 and len(np.unique(x)) == 1000
