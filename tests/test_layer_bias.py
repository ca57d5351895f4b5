import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, check_param_diffs_accumulate, forward

BIAS = 'type: "Bias" bias_param { filler { type: "gaussian" std: 1 } %s }'


def reference(x, b, axis):
    """x + b with b's axes lined up with x's axes axis, axis+1, ..."""
    shape = (1,) * axis + b.shape + (1,) * (x.ndim - axis - b.ndim)
    return x + b.reshape(shape)


def test_default_bias_is_zero_per_channel():
    layer, bottom, top = build('type: "Bias"', [np.ones((2, 3, 4))])
    assert layer.blobs[0].shape == (3,)
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], np.ones((2, 3, 4)))


def test_forward_adds_channel_bias():
    x = np.zeros((2, 3, 2))
    layer, bottom, top = build('type: "Bias"', [x])
    layer.blobs[0].data[...] = [1.0, 2.0, 3.0]
    y = forward(layer, bottom, top)[0]
    for c in range(3):
        np.testing.assert_array_equal(y[:, c], c + 1.0)


@pytest.mark.parametrize("param,shape,axis", [
    ("axis: 0 num_axes: 2", (2, 3), 0),
    ("axis: 1 num_axes: -1", (3, 4, 5), 1),
    ("axis: -1", (5,), 3),
    ("num_axes: 0", (), 0),
])
def test_learned_bias_shape_follows_axis_and_num_axes(param, shape, axis):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    layer, bottom, top = build(BIAS % param, [x])
    assert layer.blobs[0].shape == shape
    np.testing.assert_allclose(forward(layer, bottom, top)[0], reference(x, layer.blobs[0].data, axis), rtol=1e-15)


def test_second_bottom_is_the_bias():
    rng = np.random.default_rng(1)
    x, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4))
    layer, bottom, top = build('type: "Bias"', [x, b])
    assert layer.blobs == []
    np.testing.assert_allclose(forward(layer, bottom, top)[0], reference(x, b, 1), rtol=1e-15)


def test_mismatched_bias_bottom_is_refused():
    with pytest.raises(LayerError, match="dimension mismatch"):
        build('type: "Bias"', [np.ones((2, 3, 4)), np.ones(4)])


def test_num_axes_past_the_end_is_refused():
    with pytest.raises(LayerError, match="extends past bottom 0's shape"):
        build('type: "Bias" bias_param { axis: 1 num_axes: 3 }', [np.ones((2, 3, 4))])


def test_num_axes_below_minus_1_is_refused():
    with pytest.raises(LayerError, match="num_axes must be non-negative, or -1"):
        build('type: "Bias" bias_param { num_axes: -2 }', [np.ones((2, 3, 4))])


@pytest.mark.parametrize("param", ["", "axis: 0 num_axes: 2", "num_axes: -1", "num_axes: 0", "axis: -1"])
def test_gradient(param):
    check_gradient(BIAS % param, [np.random.default_rng(2).standard_normal((2, 3, 4))])


def test_gradient_in_place():
    check_gradient(BIAS % "", [np.random.default_rng(3).standard_normal((2, 3, 4))], in_place=True)


@pytest.mark.parametrize("bias_shape,param", [((3,), ""), ((2, 3), "bias_param { axis: 0 }"), ((), "")])
def test_gradient_two_bottoms(bias_shape, param):
    rng = np.random.default_rng(4)
    check_gradient(f'type: "Bias" {param}', [rng.standard_normal((2, 3, 4)), rng.standard_normal(bias_shape)])


def test_param_diffs_accumulate():
    check_param_diffs_accumulate(BIAS % "", [np.random.default_rng(5).standard_normal((2, 3, 4))])
