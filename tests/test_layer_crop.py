import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

CROP = 'type: "Crop" crop_param { %s }'


def test_hand_computed_default_axis_2():
    x = np.arange(2 * 3 * 5 * 5, dtype=float).reshape(2, 3, 5, 5)
    reference = np.zeros((1, 1, 3, 2))      # only axes 2.. matter
    layer, bottom, top = build(CROP % "offset: 1", [x, reference])
    (y,) = forward(layer, bottom, top)
    assert y.shape == (2, 3, 3, 2)
    np.testing.assert_array_equal(y, x[:, :, 1:4, 1:3])


def test_per_axis_offsets():
    x = np.arange(4 * 6, dtype=float).reshape(1, 1, 4, 6)
    layer, bottom, top = build(CROP % "offset: 1 offset: 3", [x, np.zeros((1, 1, 2, 3))])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], x[:, :, 1:3, 3:6])


def test_no_offset_crops_from_the_corner():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    layer, bottom, top = build(CROP % "", [x, np.zeros((1, 1, 2, 2))])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], x[:, :, :2, :2])


def test_axis_1_crops_channels_too():
    x = np.arange(2 * 4 * 3 * 3, dtype=float).reshape(2, 4, 3, 3)
    layer, bottom, top = build(CROP % "axis: 1 offset: 1", [x, np.zeros((7, 2, 2, 1))])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], x[:, 1:3, 1:3, 1:2])


@pytest.mark.parametrize("params,reference", [
    ("", (1, 1, 2, 3)),
    ("offset: 1", (1, 1, 2, 3)),
    ("offset: 2 offset: 0", (1, 1, 2, 3)),
    ("axis: -1 offset: 1", (9, 9, 9, 2)),
])
def test_gradient(params, reference):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 4, 4))
    check_gradient(CROP % params, [x, np.zeros(reference)], check_bottoms=[0])


def test_gradient_is_zero_outside_the_window_and_none_to_bottom_1():
    layer, bottom, top = build(CROP % "offset: 1", [np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1))])
    forward(layer, bottom, top)
    top[0].diff = np.array([[[[7.0]]]])
    layer.backward(top, [True, True], bottom)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 7.0
    np.testing.assert_array_equal(bottom[0].diff, expected)
    np.testing.assert_array_equal(bottom[1].diff, np.zeros((1, 1, 1, 1)))
    assert layer.allow_force_backward(0) and not layer.allow_force_backward(1)


def test_window_past_the_edge_is_refused():
    with pytest.raises(LayerError, match="invalid crop parameters in dimension 3"):
        build(CROP % "offset: 0 offset: 2", [np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 3))])


def test_wrong_number_of_offsets_is_refused():
    with pytest.raises(LayerError, match="gives 3 offsets; give one, or one per axis"):
        build(CROP % "offset: 0 offset: 0 offset: 0", [np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2))])
