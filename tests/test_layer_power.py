import numpy as np
import pytest

from layer_harness import build, check_gradient, forward

POWER = 'type: "Power" power_param {{ power: {} scale: {} shift: {} }}'


def away_from_zero(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.1, 0.5, x)


@pytest.mark.parametrize("power,scale,shift", [(2, 0.5, 1), (3, 1, 0), (0.5, 2, 3), (-1.5, 0.5, 2), (1, -2, 0.5)])
def test_forward_is_shifted_scaled_power(power, scale, shift):
    x = np.array([-1.0, -0.25, 0.0, 0.75, 1.0])
    layer, bottom, top = build(POWER.format(power, scale, shift), [x])
    expected = [(shift + scale * v) ** power for v in x]
    np.testing.assert_allclose(forward(layer, bottom, top)[0], expected, rtol=1e-13)


def test_defaults_are_identity():
    x = np.array([-1.5, 0.0, 2.0])
    layer, bottom, top = build('type: "Power"', [x])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], x)


def test_power_0_gives_ones_even_with_zero_base():
    layer, bottom, top = build(POWER.format(0, 1, 0), [np.array([-2.0, 0.0, 3.0])])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], [1, 1, 1])


def test_scale_0_gives_shift_to_the_power():
    layer, bottom, top = build(POWER.format(3, 0, 2), [np.array([-2.0, 0.0, 3.0])])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], [8, 8, 8])


@pytest.mark.parametrize("power,scale", [(0, 1), (3, 0)])
def test_constant_output_has_zero_gradient(power, scale):
    layer, bottom, top = build(POWER.format(power, scale, 2), [np.array([-2.0, 0.0, 3.0])])
    forward(layer, bottom, top)
    top[0].diff = np.ones(3)
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [0, 0, 0])


@pytest.mark.parametrize("power,expected", [(2, 0.0), (3, 0.0), (1, 1.5)])
def test_gradient_at_zero_base_is_finite(power, expected):
    # Caffe's power * y / x would give 0/0 here; the derivative is defined.
    layer, bottom, top = build(POWER.format(power, 1.5, 0), [np.array([0.0])])
    forward(layer, bottom, top)
    top[0].diff = np.ones(1)
    layer.backward(top, [True], bottom)
    assert bottom[0].diff[0] == expected


def test_keeps_float32():
    layer, bottom, top = build(POWER.format(2.5, 0.5, 3), [np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("power,scale,shift", [
    (1, 1, 0), (1, -2, 0.5),              # linear
    (2, 1, 0), (2, 0.5, 1.5), (2, -3, 0),  # Caffe's square special case
    (3, 1.5, 0), (-2, 1, 0),              # shift 0
    (0.5, 0.5, 3), (-1.5, 0.5, 2.5),      # general case, positive base
    (0, 1, 1), (2, 0, 1),                 # constant output
])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(power, scale, shift, in_place):
    check_gradient(POWER.format(power, scale, shift), [away_from_zero((2, 3, 4))], in_place=in_place)
