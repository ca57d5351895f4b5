import numpy as np
import pytest

from layer_harness import build, check_gradient, forward


def away_from_zero(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


def test_forward_keeps_positives_and_saturates_negatives_to_minus_alpha():
    x = np.array([-1000.0, -1.0, 0.0, 2.0])
    layer, bottom, top = build('type: "ELU" elu_param { alpha: 0.5 }', [x])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], [-0.5, 0.5 * (np.exp(-1) - 1), 0.0, 2.0],
                               rtol=1e-14)


def test_default_alpha_is_1():
    layer, bottom, top = build('type: "ELU"', [np.array([-2.0])])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], [np.exp(-2) - 1], rtol=1e-14)


def test_large_positive_inputs_do_not_overflow():
    layer, bottom, top = build('type: "ELU"', [np.array([1000.0])])
    with np.errstate(over="raise", invalid="raise"):
        assert forward(layer, bottom, top)[0][0] == 1000.0


def test_keeps_float32():
    layer, bottom, top = build('type: "ELU" elu_param { alpha: 0.3 }', [-np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.0])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(alpha, in_place):
    check_gradient(f'type: "ELU" elu_param {{ alpha: {alpha} }}', [away_from_zero((2, 3, 4))], in_place=in_place)
