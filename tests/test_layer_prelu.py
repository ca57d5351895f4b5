import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, check_param_diffs_accumulate, forward

PRELU = 'type: "PReLU" prelu_param { filler { type: "uniform" min: 0.1 max: 0.6 } %s }'


def away_from_zero(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


def test_default_slope_is_one_quarter_per_channel():
    layer, _, _ = build('type: "PReLU"', [np.ones((2, 3, 4))])
    assert layer.blobs[0].shape == (3,)
    np.testing.assert_array_equal(layer.blobs[0].data, [0.25, 0.25, 0.25])


def test_channel_shared_has_one_scalar_slope():
    layer, _, _ = build('type: "PReLU" prelu_param { channel_shared: true }', [np.ones((2, 3, 4))])
    assert layer.blobs[0].shape == ()
    assert layer.blobs[0].data == 0.25


def test_forward_scales_negatives_by_their_channel_slope():
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    layer, bottom, top = build('type: "PReLU"', [x])
    slopes = np.array([0.1, -0.5, 2.0])
    layer.blobs[0].data[...] = slopes
    y = forward(layer, bottom, top)[0]
    expected = np.empty_like(x)
    for index in np.ndindex(x.shape):
        v = x[index]
        expected[index] = v if v > 0 else slopes[index[1]] * v
    np.testing.assert_array_equal(y, expected)


def test_slope_gradient_sums_top_diff_times_negative_inputs():
    x = np.array([[[-1.0, 2.0], [3.0, -4.0]], [[-0.5, 0.0], [1.0, 1.0]]])     # (N=2, C=2, 2)
    layer, bottom, top = build('type: "PReLU"', [x])
    forward(layer, bottom, top)
    top[0].diff = np.full(x.shape, 2.0)
    layer.backward(top, [True], bottom)
    # channel 0: inputs <= 0 are -1, -0.5, 0;  channel 1: -4
    np.testing.assert_allclose(layer.blobs[0].diff, [2 * (-1 - 0.5 + 0), 2 * -4.0])
    np.testing.assert_allclose(bottom[0].diff[0, 0], [2 * 0.25, 2.0])


def test_one_axis_bottom_is_refused():
    with pytest.raises(LayerError, match="at least 2 axes"):
        build('type: "PReLU"', [np.ones(4)])


def test_keeps_float32():
    layer, bottom, top = build('type: "PReLU"', [-np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("shared", ["false", "true"])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(shared, in_place):
    check_gradient(PRELU % f"channel_shared: {shared}", [away_from_zero((2, 3, 2, 3))], in_place=in_place)


def test_gradient_two_axis_bottom():
    check_gradient(PRELU % "", [away_from_zero((4, 3))])


@pytest.mark.parametrize("shared", ["false", "true"])
def test_param_diffs_accumulate(shared):
    check_param_diffs_accumulate(PRELU % f"channel_shared: {shared}", [away_from_zero((2, 3, 4))])
