import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

EXP = 'type: "Exp" exp_param {{ base: {} scale: {} shift: {} }}'


def test_default_is_natural_exponential():
    x = np.array([-2.0, 0.0, 1.0, 3.0])
    layer, bottom, top = build('type: "Exp"', [x])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], np.e ** x, rtol=1e-14)


@pytest.mark.parametrize("base,scale,shift", [(2, 3, 1), (10, -0.5, 0), (-1, 2, -1), (0.5, 1, 2)])
def test_forward_is_base_to_the_shifted_scaled_input(base, scale, shift):
    x = np.array([-1.0, -0.25, 0.0, 0.5, 1.0])
    layer, bottom, top = build(EXP.format(base, scale, shift), [x])
    b = np.e if base == -1 else base
    expected = [b ** (shift + scale * v) for v in x]
    np.testing.assert_allclose(forward(layer, bottom, top)[0], expected, rtol=1e-13)


@pytest.mark.parametrize("base", [0, -2, -0.5])
def test_non_positive_base_is_refused(base):
    with pytest.raises(LayerError, match="exp_param.base must be positive"):
        build(EXP.format(base, 1, 0), [np.ones(3)])


def test_keeps_float32():
    layer, bottom, top = build(EXP.format(2, 0.5, 1), [np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("base,scale,shift", [(-1, 1, 0), (2, 3, 1), (10, -0.5, 0.5), (0.5, 1, -1), (1, 2, 3)])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(base, scale, shift, in_place):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    check_gradient(EXP.format(base, scale, shift), [x], in_place=in_place)
