import numpy as np
import pytest

from layer_harness import build, check_gradient, forward


def test_forward_is_hyperbolic_tangent():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    layer, bottom, top = build('type: "TanH"', [x])
    expected = (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))
    np.testing.assert_allclose(forward(layer, bottom, top)[0], expected, rtol=1e-13, atol=1e-15)


def test_keeps_float32():
    layer, bottom, top = build('type: "TanH"', [np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(in_place):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    check_gradient('type: "TanH"', [x], in_place=in_place)
