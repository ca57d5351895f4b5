import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

REDUCTION = 'type: "Reduction" reduction_param { %s }'


def test_hand_computed_whole_blob():
    x = np.array([[1.0, -2.0], [3.0, -4.0]])
    for params, expected in [
        ("operation: SUM", -2.0),
        ("operation: ASUM", 10.0),
        ("operation: SUMSQ", 30.0),
        ("operation: MEAN", -0.5),
        ("operation: SUMSQ coeff: 0.5", 15.0),
        ("operation: MEAN coeff: -2", 1.0),
    ]:
        layer, bottom, top = build(REDUCTION % params, [x])
        (y,) = forward(layer, bottom, top)
        assert y.shape == ()
        assert y == pytest.approx(expected), params


@pytest.mark.parametrize("axis,shape", [(1, (2,)), (2, (2, 3)), (-1, (2, 3))])
def test_reduces_every_axis_from_axis_on(axis, shape):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    layer, bottom, top = build(REDUCTION % f"operation: SUM axis: {axis}", [x])
    (y,) = forward(layer, bottom, top)
    assert y.shape == shape
    for index in np.ndindex(shape):
        assert y[index] == pytest.approx(sum(x[index].ravel()))


def test_default_operation_is_sum_over_everything():
    layer, bottom, top = build('type: "Reduction"', [np.ones((2, 3))])
    assert forward(layer, bottom, top)[0] == 6.0


@pytest.mark.parametrize("params", ["operation: SUM", "operation: ASUM axis: 1", "operation: SUMSQ coeff: 0.5",
                                    "operation: MEAN axis: -1 coeff: 3"])
def test_gradient(params):
    # |x| >= 0.2 keeps ASUM away from its kink
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 1.0, (2, 3, 2)) * rng.choice([-1, 1], (2, 3, 2))
    check_gradient(REDUCTION % params, [x])


def test_axis_out_of_range_is_refused():
    with pytest.raises(LayerError, match="axis 2 is out of range"):
        build(REDUCTION % "axis: 2", [np.ones((2, 3))])
