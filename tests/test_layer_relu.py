import numpy as np
import pytest

from layer_harness import build, check_gradient, forward


def away_from_zero(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


def test_forward_clamps_negatives():
    layer, bottom, top = build('type: "ReLU"', [np.array([-2.0, -0.5, 0.0, 3.0])])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], [0, 0, 0, 3])


def test_leaky_forward_scales_negatives():
    layer, bottom, top = build('type: "ReLU" relu_param { negative_slope: 0.1 }', [np.array([-2.0, 3.0])])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], [-0.2, 3.0])


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(slope, in_place):
    check_gradient(f'type: "ReLU" relu_param {{ negative_slope: {slope} }}',
                   [away_from_zero((2, 3, 4))], in_place=in_place)
