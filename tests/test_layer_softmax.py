import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

SOFTMAX = 'type: "Softmax" %s'


def reference_softmax(x, axis):
    """exp(x) / sum exp(x) along `axis`, one column at a time."""
    moved = np.moveaxis(x, axis, -1)
    out = np.empty_like(moved)
    for index in np.ndindex(moved.shape[:-1]):
        column = moved[index]
        e = np.exp(column - column.max())
        out[index] = e / e.sum()
    return np.moveaxis(out, -1, axis)


def test_hand_computed_row():
    layer, bottom, top = build(SOFTMAX % "", [np.log([[1.0, 2.0, 5.0]])])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], [[0.125, 0.25, 0.625]], rtol=1e-12)


@pytest.mark.parametrize("axis", [1, 2, -1, 0])
def test_forward_matches_reference_on_axis(axis):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    layer, bottom, top = build(SOFTMAX % f"softmax_param {{ axis: {axis} }}", [x])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], reference_softmax(x, axis), rtol=1e-12)


def test_large_scores_do_not_overflow():
    layer, bottom, top = build(SOFTMAX % "", [np.array([[1000.0, 1000.0]])])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], [[0.5, 0.5]])


@pytest.mark.parametrize("axis", [1, -1])
def test_gradient(axis):
    x = np.random.default_rng(1).standard_normal((2, 3, 2, 2))
    check_gradient(SOFTMAX % f"softmax_param {{ axis: {axis} }}", [x])


def test_gradient_in_place():
    check_gradient(SOFTMAX % "", [np.random.default_rng(2).standard_normal((3, 4))], in_place=True)


def test_axis_out_of_range_is_refused():
    with pytest.raises(LayerError, match="axis 3 is out of range"):
        build(SOFTMAX % "softmax_param { axis: 3 }", [np.ones((2, 3))])
