import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

LOG = 'type: "Log" log_param {{ base: {} scale: {} shift: {} }}'


def test_default_is_natural_logarithm():
    x = np.array([0.5, 1.0, np.e, 10.0])
    layer, bottom, top = build('type: "Log"', [x])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], [np.log(0.5), 0, 1, np.log(10)], rtol=1e-14)


@pytest.mark.parametrize("base,scale,shift,x,expected", [
    (10, 2, 1, 49.5, 2.0),       # log10(1 + 2 * 49.5) = log10(100)
    (2, 0.5, 0, 16.0, 3.0),      # log2(8)
    (-1, -1, 3, 2.0, 0.0),       # ln(3 - 2)
    (0.5, 1, 0, 4.0, -2.0),      # log_0.5(4)
])
def test_forward_is_log_base_of_shifted_scaled_input(base, scale, shift, x, expected):
    layer, bottom, top = build(LOG.format(base, scale, shift), [np.array([x])])
    assert forward(layer, bottom, top)[0][0] == pytest.approx(expected, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("base,message", [(0, "must be positive"), (-3, "must be positive"), (1, "base 1")])
def test_bad_base_is_refused(base, message):
    with pytest.raises(LayerError, match=message):
        build(LOG.format(base, 1, 0), [np.ones(3)])


def test_keeps_float32():
    layer, bottom, top = build(LOG.format(10, 2, 1), [np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("base,scale,shift", [(-1, 1, 0), (10, 2, 1), (2, -0.5, 0.5), (0.5, 3, 0)])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(base, scale, shift, in_place):
    argument = np.random.default_rng(0).uniform(0.3, 2.0, (2, 3, 4))     # shift + scale * x, kept positive
    check_gradient(LOG.format(base, scale, shift), [(argument - shift) / scale], in_place=in_place)
