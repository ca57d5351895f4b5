import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, check_param_diffs_accumulate, forward

IP = """
name: "ip" type: "InnerProduct"
inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 }
                      bias_filler { type: "uniform" min: -1 max: 1 } %s }
"""


def test_forward_is_x_times_w_transposed_plus_b():
    x = np.arange(8.0).reshape(2, 4)
    layer, bottom, top = build(IP % "", [x])
    W, b = layer.blobs[0].data, layer.blobs[1].data
    (y,) = forward(layer, bottom, top)
    expected = np.array([[sum(x[n, k] * W[o, k] for k in range(4)) + b[o] for o in range(3)] for n in range(2)])
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_axis_2_keeps_leading_axes():
    layer, bottom, top = build(IP % "axis: 2", [np.ones((2, 5, 4))])
    assert top[0].shape == (2, 5, 3)


def test_transpose_stores_weights_k_by_n():
    layer, _, _ = build(IP % "transpose: true", [np.ones((2, 4))])
    assert layer.blobs[0].shape == (4, 3)


@pytest.mark.parametrize("extra", ["", "transpose: true", "bias_term: false"])
def test_gradient(extra):
    x = np.random.default_rng(0).standard_normal((3, 2, 2))
    check_gradient(IP % extra, [x])


def test_gradient_axis_2():
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    check_gradient(IP % "axis: 2", [x])


def test_param_diffs_accumulate():
    check_param_diffs_accumulate(IP % "", [np.random.default_rng(2).standard_normal((2, 4))])


def test_changed_input_size_is_refused():
    layer, bottom, top = build(IP % "", [np.ones((2, 4))])
    bottom[0].reshape(2, 5)
    with pytest.raises(LayerError, match="incompatible"):
        layer.reshape(bottom, top)
