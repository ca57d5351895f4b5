import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, forward

ARGMAX = 'type: "ArgMax" %s'


def reference_top_k(values, k):
    """(index, value) of the k largest, largest first, higher index first among equals."""
    pairs = sorted(((v, i) for i, v in enumerate(values)), reverse=True)[:k]
    return [i for _, i in pairs], [v for v, _ in pairs]


def test_hand_computed_argmax_per_sample():
    x = np.array([[0.1, 0.9, 0.3], [0.8, 0.1, 0.2]])
    layer, bottom, top = build(ARGMAX % "", [x])
    (y,) = forward(layer, bottom, top)
    assert y.shape == (2, 1, 1)
    np.testing.assert_array_equal(y.ravel(), [1, 0])


def test_top_k_with_values_over_flattened_sample():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 2, 2))
    layer, bottom, top = build(ARGMAX % "argmax_param { top_k: 3 out_max_val: true }", [x])
    (y,) = forward(layer, bottom, top)
    assert y.shape == (3, 2, 3, 1)
    for n in range(3):
        indices, values = reference_top_k(list(x[n].ravel()), 3)
        np.testing.assert_array_equal(y[n, 0, :, 0], indices)
        np.testing.assert_array_equal(y[n, 1, :, 0], values)


def test_equal_scores_list_the_higher_index_first():
    layer, bottom, top = build(ARGMAX % "argmax_param { top_k: 3 }", [np.array([[5.0, 7.0, 5.0, 7.0]])])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0].ravel(), [3, 1, 2])


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_along_an_axis(axis):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5))
    layer, bottom, top = build(ARGMAX % f"argmax_param {{ axis: {axis} top_k: 2 }}", [x])
    (y,) = forward(layer, bottom, top)
    moved_x, moved_y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    for index in np.ndindex(moved_x.shape[:-1]):
        indices, _ = reference_top_k(list(moved_x[index]), 2)
        np.testing.assert_array_equal(moved_y[index], indices)


def test_along_an_axis_with_values_gives_values_only():
    x = np.array([[1.0, 4.0], [3.0, 2.0]])
    layer, bottom, top = build(ARGMAX % "argmax_param { axis: 0 out_max_val: true }", [x])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], [[3.0, 4.0]])


def test_no_backward():
    layer, bottom, top = build(ARGMAX % "", [np.ones((2, 3))])
    forward(layer, bottom, top)
    with pytest.raises(LayerError, match="no backward"):
        layer.backward(top, [True], bottom)
    assert not layer.allow_force_backward(0)


def test_top_k_larger_than_sample_is_refused():
    with pytest.raises(LayerError, match=r"top_k \(7\) must be less than or equal to the 6 values per sample"):
        build(ARGMAX % "argmax_param { top_k: 7 }", [np.ones((2, 3, 2))])


def test_top_k_larger_than_axis_is_refused():
    with pytest.raises(LayerError, match="size of axis 1"):
        build(ARGMAX % "argmax_param { top_k: 4 axis: 1 }", [np.ones((2, 3, 2))])
