import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

CONCAT = 'type: "Concat" %s'


def test_hand_computed_channels():
    a = np.array([[1.0, 2.0]])
    b = np.array([[3.0]])
    layer, bottom, top = build(CONCAT % "", [a, b])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("axis,shapes", [
    (0, [(1, 3, 2), (2, 3, 2)]),
    (1, [(2, 1, 2), (2, 3, 2), (2, 2, 2)]),
    (-1, [(2, 3, 1), (2, 3, 3)]),
])
def test_forward_places_each_bottom(axis, shapes):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s) for s in shapes]
    layer, bottom, top = build(CONCAT % f"concat_param {{ axis: {axis} }}", xs)
    (y,) = forward(layer, bottom, top)
    start = 0
    for x in xs:
        size = x.shape[axis]
        index = [slice(None)] * y.ndim
        index[axis] = slice(start, start + size)
        np.testing.assert_array_equal(y[tuple(index)], x)
        start += size
    assert y.shape[axis] == start


@pytest.mark.parametrize("axis,shapes", [
    (0, [(1, 3, 2), (2, 3, 2)]),
    (1, [(2, 1, 2), (2, 3, 2)]),
    (-1, [(2, 3, 1), (2, 3, 3), (2, 3, 2)]),
])
def test_gradient(axis, shapes):
    rng = np.random.default_rng(1)
    check_gradient(CONCAT % f"concat_param {{ axis: {axis} }}", [rng.standard_normal(s) for s in shapes])


def test_deprecated_concat_dim():
    layer, bottom, top = build(CONCAT % "concat_param { concat_dim: 0 }", [np.ones((1, 2)), np.zeros((2, 2))])
    assert forward(layer, bottom, top)[0].shape == (3, 2)


def test_single_bottom_is_copied_through():
    x = np.arange(6.0).reshape(2, 3)
    layer, bottom, top = build(CONCAT % "", [x])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], x)


def test_backward_skips_bottoms_not_asked_for():
    layer, bottom, top = build(CONCAT % "", [np.ones((1, 1)), np.ones((1, 2))])
    forward(layer, bottom, top)
    top[0].diff = np.array([[1.0, 2.0, 3.0]])
    layer.backward(top, [False, True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[0.0]])
    np.testing.assert_array_equal(bottom[1].diff, [[2.0, 3.0]])


def test_mismatched_shapes_are_refused():
    with pytest.raises(LayerError, match="same shape except along the concat axis 1"):
        build(CONCAT % "", [np.ones((2, 3, 4)), np.ones((2, 3, 5))])


def test_mismatched_axis_counts_are_refused():
    with pytest.raises(LayerError, match="same number of axes"):
        build(CONCAT % "", [np.ones((2, 3)), np.ones((2, 3, 1))])


def test_axis_and_concat_dim_together_are_refused():
    with pytest.raises(LayerError, match="not both"):
        build(CONCAT % "concat_param { axis: 1 concat_dim: 1 }", [np.ones((1, 1)), np.ones((1, 1))])
