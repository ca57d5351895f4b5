import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

RESHAPE = 'type: "Reshape" reshape_param { shape { %s } %s }'


def dims(*values):
    return " ".join(f"dim: {v}" for v in values)


@pytest.mark.parametrize("shape,extra,expected", [
    (dims(0, -1), "", (2, 60)),
    (dims(6, 4, 5), "", (6, 4, 5)),
    (dims(0, 0, -1), "", (2, 3, 20)),
    (dims(-1), "", (120,)),
    (dims(0, 3, 2, 2, 5), "", (2, 3, 2, 2, 5)),
    # axis / num_axes replace only part of the shape (Caffe's caffe.proto examples)
    (dims(2, 2), "axis: 2 num_axes: 1", (2, 3, 2, 2, 5)),
    (dims(1, 1), "axis: 1 num_axes: 0", (2, 1, 1, 3, 4, 5)),
    (dims(1), "axis: 0 num_axes: 0", (1, 2, 3, 4, 5)),
    (dims(1), "axis: -1 num_axes: 0", (2, 3, 4, 5, 1)),
    (dims(-1), "axis: -3", (2, 3, 20)),
    (dims(0, -1), "axis: 1 num_axes: 2", (2, 3, 4, 5)),
    (dims(-1), "axis: 1 num_axes: 2", (2, 12, 5)),
])
def test_output_shapes(shape, extra, expected):
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    layer, bottom, top = build(RESHAPE % (shape, extra), [x])
    (y,) = forward(layer, bottom, top)
    assert y.shape == expected
    np.testing.assert_array_equal(y.ravel(), x.ravel())


@pytest.mark.parametrize("spec,expected", [
    ("shape { dim: 2 dim: 2 dim: 4 }", (2, 2, 4)),
    ("shape { dim: 0 dim: 2 dim: 4 }", (2, 2, 4)),
    ("shape { dim: 0 dim: 2 dim: -1 }", (2, 2, 4)),
    ("shape { dim: 0 dim: -1 dim: 4 }", (2, 2, 4)),
    ("axis: 1 shape { dim: 2 dim: 4 }", (2, 2, 4)),
    ("axis: 1 shape { dim: 2 dim: -1 }", (2, 2, 4)),
    ("axis: 1 shape { dim: -1 dim: 4 }", (2, 2, 4)),
    ("shape { dim: 1 dim: 2 dim: 8 }", (1, 2, 8)),
    ("shape { dim: 1 dim: 2 } num_axes: 1", (1, 2, 8)),
    ("shape { dim: 1 } num_axes: 0", (1, 2, 8)),
    ("shape { dim: 2 dim: 1 dim: 8 }", (2, 1, 8)),
    ("shape { dim: 1 } axis: 1 num_axes: 0", (2, 1, 8)),
])
def test_caffe_proto_examples_on_a_2_by_8_blob(spec, expected):
    layer, bottom, top = build(f'type: "Reshape" reshape_param {{ {spec} }}', [np.ones((2, 8))])
    assert top[0].shape == expected


@pytest.mark.parametrize("shape,extra", [
    (dims(0, -1), ""),
    (dims(4, 3), ""),
    (dims(1, 1), "axis: 1 num_axes: 0"),
    (dims(-1, 2), "axis: -2"),
])
def test_gradient(shape, extra):
    check_gradient(RESHAPE % (shape, extra), [np.random.default_rng(0).standard_normal((2, 3, 2))])


def test_new_batch_size_reinfers_the_minus_one():
    layer, bottom, top = build(RESHAPE % (dims(0, -1), ""), [np.ones((2, 3, 4))])
    assert forward(layer, bottom, top, [np.ones((5, 3, 4))])[0].shape == (5, 12)


def test_two_inferred_dims_are_refused():
    with pytest.raises(LayerError, match="several -1"):
        build(RESHAPE % (dims(-1, -1), ""), [np.ones((2, 3))])


def test_indivisible_count_is_refused():
    message = r"bottom count \(6.*must be divisible by the product of the specified dimensions \(4\)"
    with pytest.raises(LayerError, match=message):
        build(RESHAPE % (dims(4, -1), ""), [np.ones((2, 3))])


def test_count_change_is_refused():
    with pytest.raises(LayerError, match="output count must match input count"):
        build(RESHAPE % (dims(7), ""), [np.ones((2, 3))])


def test_copy_without_bottom_axis_is_refused():
    with pytest.raises(LayerError, match="contains a 0 at position 2"):
        build(RESHAPE % (dims(0, 0, 0), ""), [np.ones((2, 3))])


def test_axis_out_of_range_is_refused():
    with pytest.raises(LayerError, match="axis 3 is out of range for a 2-D bottom"):
        build(RESHAPE % (dims(1), "axis: 3"), [np.ones((2, 3))])


def test_num_axes_past_the_end_is_refused():
    with pytest.raises(LayerError, match="end_axis = axis \\+ num_axes = 3 is out of range"):
        build(RESHAPE % (dims(-1), "axis: 1 num_axes: 2"), [np.ones((2, 3))])


def test_in_place_is_refused():
    layer, bottom, top = build(RESHAPE % (dims(-1), ""), [np.ones((2, 3))])
    with pytest.raises(LayerError, match="in place"):
        layer.reshape(bottom, bottom)
