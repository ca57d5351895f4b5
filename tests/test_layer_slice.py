import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

SLICE = 'type: "Slice" slice_param { %s }'


def test_hand_computed_slice_points():
    x = np.arange(6.0).reshape(1, 6)
    layer, bottom, top = build(SLICE % "slice_point: 1 slice_point: 4", [x], num_tops=3)
    a, b, c = forward(layer, bottom, top)
    np.testing.assert_array_equal(a, [[0.0]])
    np.testing.assert_array_equal(b, [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(c, [[4.0, 5.0]])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_equal_split_without_slice_points(axis):
    x = np.random.default_rng(0).standard_normal((4, 4, 4))
    layer, bottom, top = build(SLICE % f"axis: {axis}", [x], num_tops=2)
    first, second = forward(layer, bottom, top)
    np.testing.assert_array_equal(first, np.take(x, [0, 1], axis=axis))
    np.testing.assert_array_equal(second, np.take(x, [2, 3], axis=axis))


@pytest.mark.parametrize("params,tops", [
    ("axis: 0 slice_point: 1", 2),
    ("axis: 1 slice_point: 1 slice_point: 3", 3),
    ("axis: -1", 2),
    ("axis: -1 slice_point: 3", 2),
])
def test_gradient(params, tops):
    x = np.random.default_rng(1).standard_normal((3, 4, 4))
    check_gradient(SLICE % params, [x], num_tops=tops)


def test_deprecated_slice_dim():
    layer, bottom, top = build(SLICE % "slice_dim: 0", [np.ones((4, 1))], num_tops=2)
    assert [t.shape for t in top] == [(2, 1), (2, 1)]


def test_uneven_equal_split_is_refused():
    with pytest.raises(LayerError, match=r"number of top blobs \(2\) should evenly divide input slice axis \(3\)"):
        build(SLICE % "axis: 1", [np.ones((2, 3))], num_tops=2)


def test_wrong_number_of_slice_points_is_refused():
    with pytest.raises(LayerError, match="need 3 tops, got 2"):
        build(SLICE % "slice_point: 1 slice_point: 2", [np.ones((2, 4))], num_tops=2)


@pytest.mark.parametrize("points", ["slice_point: 2 slice_point: 2", "slice_point: 4"])
def test_slice_points_must_increase_inside_the_axis(points):
    tops = points.count("slice_point") + 1
    with pytest.raises(LayerError, match="must increase strictly"):
        build(SLICE % points, [np.ones((2, 4))], num_tops=tops)
