import numpy as np
import pytest

from layer_harness import build, check_gradient, forward


def test_forward_is_logistic_function():
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    layer, bottom, top = build('type: "Sigmoid"', [x])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], 1 / (1 + np.exp(-x)), rtol=1e-14)


def test_saturates_without_overflow():
    layer, bottom, top = build('type: "Sigmoid"', [np.array([-1000.0, 1000.0])])
    with np.errstate(over="raise", invalid="raise"):
        np.testing.assert_array_equal(forward(layer, bottom, top)[0], [0.0, 1.0])


def test_keeps_float32():
    layer, bottom, top = build('type: "Sigmoid"', [np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(in_place):
    x = 2 * np.random.default_rng(0).standard_normal((2, 3, 4))
    check_gradient('type: "Sigmoid"', [x], in_place=in_place)
