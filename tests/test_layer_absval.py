import numpy as np
import pytest

from layer_harness import build, check_gradient, forward


def away_from_zero(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


def test_forward_is_absolute_value():
    layer, bottom, top = build('type: "AbsVal"', [np.array([-2.5, -0.0, 0.0, 1.5])])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], [2.5, 0, 0, 1.5])


def test_gradient_is_sign_times_top_diff_and_zero_at_zero():
    layer, bottom, top = build('type: "AbsVal"', [np.array([-2.0, 0.0, 3.0])])
    forward(layer, bottom, top)
    top[0].diff = np.array([5.0, 5.0, 5.0])
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [-5, 0, 5])


@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(in_place):
    check_gradient('type: "AbsVal"', [away_from_zero((2, 3, 4))], in_place=in_place)
