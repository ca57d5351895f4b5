import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, check_param_diffs_accumulate, forward

SCALE = ('type: "Scale" scale_param { filler { type: "gaussian" std: 1 } '
         'bias_filler { type: "gaussian" std: 1 } %s }')


def lined_up(p, x_ndim, axis):
    """p reshaped so that its axes line up with x's axes axis, axis+1, ..."""
    return p.reshape((1,) * axis + p.shape + (1,) * (x_ndim - axis - p.ndim))


def test_default_scale_is_one_per_channel_and_no_bias():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    layer, bottom, top = build('type: "Scale"', [x])
    assert [b.shape for b in layer.blobs] == [(3,)]
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], x)


def test_forward_multiplies_by_channel_scale_and_adds_bias():
    x = np.ones((2, 3, 2))
    layer, bottom, top = build('type: "Scale" scale_param { bias_term: true }', [x])
    assert [b.shape for b in layer.blobs] == [(3,), (3,)]
    np.testing.assert_array_equal(layer.blobs[1].data, [0, 0, 0])       # bias filler: constant 0
    layer.blobs[0].data[...] = [2.0, -1.0, 0.5]
    layer.blobs[1].data[...] = [10.0, 20.0, 30.0]
    y = forward(layer, bottom, top)[0]
    for c, expected in enumerate([12.0, 19.0, 30.5]):
        np.testing.assert_array_equal(y[:, c], expected)


@pytest.mark.parametrize("param,shape,axis", [
    ("axis: 0 num_axes: 2", (2, 3), 0),
    ("num_axes: -1", (3, 4, 5), 1),
    ("axis: -2 num_axes: 2", (4, 5), 2),
    ("num_axes: 0", (), 0),
])
def test_learned_scale_shape_follows_axis_and_num_axes(param, shape, axis):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    layer, bottom, top = build(SCALE % f"{param} bias_term: true", [x])
    s, b = layer.blobs[0].data, layer.blobs[1].data
    assert s.shape == b.shape == shape
    expected = x * lined_up(s, 4, axis) + lined_up(b, 4, axis)
    np.testing.assert_allclose(forward(layer, bottom, top)[0], expected, rtol=1e-14)


@pytest.mark.parametrize("scale_shape,param,axis", [
    ((3,), "", 1),
    ((2, 3), "scale_param { axis: 0 }", 0),
    ((), "scale_param { axis: 2 }", 0),          # a scalar applies everywhere, whatever the axis
    ((4,), "scale_param { axis: -1 }", 2),
])
def test_second_bottom_is_the_scale(scale_shape, param, axis):
    rng = np.random.default_rng(2)
    x, s = rng.standard_normal((2, 3, 4)), rng.standard_normal(scale_shape)
    layer, bottom, top = build(f'type: "Scale" {param}', [x, s])
    assert layer.blobs == []
    np.testing.assert_allclose(forward(layer, bottom, top)[0], x * lined_up(s, 3, axis), rtol=1e-15)


def test_second_bottom_with_bias_term_learns_a_bias_shaped_like_it():
    rng = np.random.default_rng(3)
    x, s = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4))
    layer, bottom, top = build(SCALE % "bias_term: true", [x, s])
    assert [b.shape for b in layer.blobs] == [(3, 4)]
    expected = x * s + layer.blobs[0].data
    np.testing.assert_allclose(forward(layer, bottom, top)[0], expected, rtol=1e-14)


def test_mismatched_scale_bottom_is_refused():
    with pytest.raises(LayerError, match="dimension mismatch"):
        build('type: "Scale"', [np.ones((2, 3, 4)), np.ones(4)])


def test_num_axes_past_the_end_is_refused():
    with pytest.raises(LayerError, match="scale blob's shape extends past"):
        build('type: "Scale" scale_param { axis: 2 num_axes: 2 }', [np.ones((2, 3, 4))])


def test_three_bottoms_are_refused():
    with pytest.raises(LayerError, match="at most 2 blobs"):
        build('type: "Scale"', [np.ones(3)] * 3)


@pytest.mark.parametrize("param", ["", "bias_term: true", "axis: 0 num_axes: 2 bias_term: true",
                                   "num_axes: -1", "num_axes: 0 bias_term: true", "axis: -1"])
def test_gradient(param):
    check_gradient(SCALE % param, [np.random.default_rng(4).standard_normal((2, 3, 4))])


@pytest.mark.parametrize("param", ["", "bias_term: true"])
def test_gradient_in_place(param):
    check_gradient(SCALE % param, [np.random.default_rng(5).standard_normal((2, 3, 4))], in_place=True)


@pytest.mark.parametrize("scale_shape,param", [((3,), ""), ((2, 3), "axis: 0"), ((), ""),
                                               ((3, 4), "bias_term: true"), ((), "bias_term: true")])
def test_gradient_two_bottoms(scale_shape, param):
    rng = np.random.default_rng(6)
    check_gradient(SCALE % param, [rng.standard_normal((2, 3, 4)), rng.standard_normal(scale_shape)])


@pytest.mark.parametrize("param", ["bias_term: true", "num_axes: 0 bias_term: true"])
def test_param_diffs_accumulate(param):
    check_param_diffs_accumulate(SCALE % param, [np.random.default_rng(7).standard_normal((2, 3, 4))])
