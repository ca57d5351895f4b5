import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

FLATTEN = 'type: "Flatten" %s'


@pytest.mark.parametrize("params,expected", [
    ("", (2, 60)),
    ("flatten_param { axis: 2 }", (2, 3, 20)),
    ("flatten_param { axis: 1 end_axis: 2 }", (2, 12, 5)),
    ("flatten_param { axis: 0 }", (120,)),
    ("flatten_param { axis: -2 end_axis: -1 }", (2, 3, 20)),
])
def test_output_shapes(params, expected):
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    layer, bottom, top = build(FLATTEN % params, [x])
    (y,) = forward(layer, bottom, top)
    assert y.shape == expected
    np.testing.assert_array_equal(y.ravel(), x.ravel())


@pytest.mark.parametrize("params", ["", "flatten_param { axis: 1 end_axis: 2 }"])
def test_gradient(params):
    check_gradient(FLATTEN % params, [np.random.default_rng(0).standard_normal((2, 3, 2, 2))])


def test_end_axis_before_axis_is_refused():
    with pytest.raises(LayerError, match="end_axis 0 comes before axis 2"):
        build(FLATTEN % "flatten_param { axis: 2 end_axis: 0 }", [np.ones((2, 3, 4))])


def test_in_place_is_refused():
    layer, bottom, top = build(FLATTEN % "", [np.ones((2, 3, 4))])
    with pytest.raises(LayerError, match="in place"):
        layer.reshape(bottom, bottom)
