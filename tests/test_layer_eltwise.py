import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

ELTWISE = 'type: "Eltwise" eltwise_param { %s }'


def test_hand_computed_ops():
    a, b, c = np.array([[1.0, -2.0]]), np.array([[3.0, 4.0]]), np.array([[2.0, 5.0]])
    for params, expected in [
        ("operation: PROD", [[6.0, -40.0]]),
        ("operation: SUM", [[6.0, 7.0]]),
        ("operation: SUM coeff: 1 coeff: -1 coeff: 0.5", [[-1.0, -3.5]]),
        ("operation: MAX", [[3.0, 5.0]]),
    ]:
        layer, bottom, top = build(ELTWISE % params, [a, b, c])
        np.testing.assert_allclose(forward(layer, bottom, top)[0], expected, err_msg=params)


def test_default_operation_is_sum():
    layer, bottom, top = build('type: "Eltwise"', [np.ones((2, 2)), np.ones((2, 2))])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], 2 * np.ones((2, 2)))


def inputs(count, seed=0, shape=(2, 3, 2)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(count)]


@pytest.mark.parametrize("params,count", [
    ("operation: PROD", 2),
    ("operation: PROD", 3),
    ("operation: PROD stable_prod_grad: false", 3),
    ("operation: SUM", 2),
    ("operation: SUM coeff: 0.5 coeff: -2 coeff: 3", 3),
    ("operation: MAX", 3),
])
def test_gradient(params, count):
    # random normals: no exact ties for MAX, no zeros for the unstable PROD gradient
    check_gradient(ELTWISE % params, inputs(count))


def test_max_gradient_goes_only_to_the_winner():
    a, b = np.array([[1.0, 5.0]]), np.array([[2.0, 4.0]])
    layer, bottom, top = build(ELTWISE % "operation: MAX", [a, b])
    forward(layer, bottom, top)
    top[0].diff = np.array([[10.0, 20.0]])
    layer.backward(top, [True, True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[0.0, 20.0]])
    np.testing.assert_array_equal(bottom[1].diff, [[10.0, 0.0]])


def test_max_ties_follow_caffe():
    # bottom 0 vs 1: a tie goes to bottom 1; later bottoms must be strictly greater
    a, b, c = np.array([[2.0]]), np.array([[2.0]]), np.array([[2.0]])
    layer, bottom, top = build(ELTWISE % "operation: MAX", [a, b, c])
    forward(layer, bottom, top)
    top[0].diff = np.array([[1.0]])
    layer.backward(top, [True, True, True], bottom)
    assert [float(blob.diff[0, 0]) for blob in bottom] == [0.0, 1.0, 0.0]


def test_stable_prod_gradient_with_a_zero_input():
    a, b = np.array([[0.0, 2.0]]), np.array([[3.0, 4.0]])
    layer, bottom, top = build(ELTWISE % "operation: PROD", [a, b])
    forward(layer, bottom, top)
    top[0].diff = np.ones((1, 2))
    layer.backward(top, [True, True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [[3.0, 4.0]])
    np.testing.assert_array_equal(bottom[1].diff, [[0.0, 2.0]])


def test_wrong_number_of_coefficients_is_refused():
    with pytest.raises(LayerError, match="one coefficient per bottom"):
        build(ELTWISE % "coeff: 1", inputs(2))


def test_coefficients_for_product_are_refused():
    with pytest.raises(LayerError, match="only takes coefficients for summation"):
        build(ELTWISE % "operation: PROD coeff: 1 coeff: 2", inputs(2))


def test_shape_mismatch_is_refused():
    with pytest.raises(LayerError, match=r"bottom 0 is \(2, 3\), bottom 1 is \(3, 2\)"):
        build(ELTWISE % "", [np.ones((2, 3)), np.ones((3, 2))])


@pytest.mark.parametrize("params", ["operation: PROD", "operation: SUM coeff: 2 coeff: 3", "operation: MAX"])
def test_gradient_in_place(params):
    check_gradient(ELTWISE % params, inputs(2, seed=1), in_place=True)
