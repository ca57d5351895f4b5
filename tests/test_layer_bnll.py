import numpy as np
import pytest

from layer_harness import build, check_gradient, forward


def test_forward_is_softplus():
    x = np.array([-5.0, -1.0, 0.0, 1.0, 5.0])
    layer, bottom, top = build('type: "BNLL"', [x])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], np.log(1 + np.exp(x)), rtol=1e-12)


def test_large_inputs_do_not_overflow():
    layer, bottom, top = build('type: "BNLL"', [np.array([-1000.0, 1000.0])])
    with np.errstate(over="raise", invalid="raise"):
        np.testing.assert_allclose(forward(layer, bottom, top)[0], [0.0, 1000.0])


def test_gradient_is_sigmoid():
    x = np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0])
    layer, bottom, top = build('type: "BNLL"', [x])
    forward(layer, bottom, top)
    top[0].diff = np.full(5, 3.0)
    with np.errstate(over="ignore"):
        expected = 3.0 / (1 + np.exp(-x))
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, expected, rtol=1e-14)


@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(in_place):
    x = 3 * np.random.default_rng(0).standard_normal((2, 3, 4))
    check_gradient('type: "BNLL"', [x], in_place=in_place)
