import itertools

import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, check_param_diffs_accumulate, forward

DECONV = """
name: "deconv" type: "Deconvolution"
convolution_param { num_output: %d weight_filler { type: "gaussian" std: 0.5 }
                    bias_filler { type: "uniform" min: -1 max: 1 } %s }
"""

rng = np.random.default_rng(5)


def deconv(num_output, extra=""):
    return DECONV % (num_output, extra)


def direct_deconvolution(x, w, pad, stride):
    """Scatter: every input pixel adds x * kernel into the output at (i s - pad + kh, j s - pad + kw)."""
    N, C, H, W = x.shape
    _, O, KH, KW = w.shape
    OH, OW = stride * (H - 1) + KH - 2 * pad, stride * (W - 1) + KW - 2 * pad
    y = np.zeros((N, O, OH, OW))
    for n, c, i, j, o, kh, kw in itertools.product(*map(range, (N, C, H, W, O, KH, KW))):
        h, v = i * stride - pad + kh, j * stride - pad + kw
        if 0 <= h < OH and 0 <= v < OW:
            y[n, o, h, v] += x[n, c, i, j] * w[c, o, kh, kw]
    return y


def test_forward_matches_the_direct_scatter():
    x = rng.standard_normal((2, 3, 3, 4))
    layer, bottom, top = build(deconv(2, "kernel_size: 3 stride: 2 pad: 1 bias_term: false"), [x])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y, direct_deconvolution(x, layer.blobs[0].data, 1, 2), rtol=1e-10, atol=1e-12)


def test_output_size_rule():
    # H: 2*(4-1) + 2*(3-1)+1 - 2*1 = 9;  W: 3*(5-1) + (2-1)+1 - 0 = 14
    layer, _, top = build(deconv(2, "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0 "
                                    "dilation: 2 dilation: 1"), [np.ones((1, 3, 4, 5))])
    assert top[0].shape == (1, 2, 9, 14)


def test_weights_are_input_channels_by_outputs_per_group():
    layer, _, _ = build(deconv(6, "kernel_size: 3 group: 2"), [np.ones((1, 4, 3, 3))])
    assert layer.blobs[0].shape == (4, 3, 3, 3)
    assert layer.blobs[1].shape == (6,)


@pytest.mark.parametrize("extra", [
    "kernel_size: 3",
    "kernel_size: 3 stride: 2 pad: 1",
    "kernel_h: 2 kernel_w: 3 stride_h: 3 stride_w: 1 pad_w: 1 dilation: 2 group: 2",
])
def test_deconvolution_is_the_adjoint_of_convolution(extra):
    """<conv(z), x> = <z, deconv(x)> when both use the same weights."""
    x = rng.standard_normal((2, 4, 4, 5))
    d_layer, d_bottom, d_top = build(deconv(6, extra + " bias_term: false"), [x])
    (deconv_x,) = forward(d_layer, d_bottom, d_top)
    z = rng.standard_normal(deconv_x.shape)
    conv_text = deconv(4, extra + " bias_term: false").replace('"Deconvolution"', '"Convolution"')
    c_layer, c_bottom, c_top = build(conv_text, [z])
    c_layer.blobs[0].data[...] = d_layer.blobs[0].data
    (conv_z,) = forward(c_layer, c_bottom, c_top)
    assert conv_z.shape == x.shape
    np.testing.assert_allclose(np.vdot(conv_z, x), np.vdot(z, deconv_x), rtol=1e-10)


BILINEAR = """
name: "up" type: "Deconvolution"
convolution_param { num_output: 1 kernel_size: 4 stride: 2 pad: 1 bias_term: false weight_filler { type: "bilinear" } }
"""


def test_bilinear_filler_upsamples_by_linear_interpolation():
    # Factor 2: kernel 2*2 - 0 = 4, stride 2, pad ceil(1/2) = 1. Output pixel p sits at input
    # coordinate (p + 0.5) / 2 - 0.5, so away from the border a linear ramp stays a linear ramp.
    x = (3.0 * np.arange(4)[:, None] + np.arange(5)[None, :]).reshape(1, 1, 4, 5)
    layer, bottom, top = build(BILINEAR, [x])
    (y,) = forward(layer, bottom, top)
    assert y.shape == (1, 1, 8, 10)
    p = np.arange(1, 7)[:, None]
    q = np.arange(1, 9)[None, :]
    expected = 3.0 * ((p + 0.5) / 2 - 0.5) + ((q + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(y[0, 0, 1:7, 1:9], expected, rtol=1e-12)
    # The kernel itself: outer product of [1, 3, 3, 1] / 4.
    ramp = np.array([1, 3, 3, 1]) / 4
    np.testing.assert_allclose(layer.blobs[0].data[0, 0], np.outer(ramp, ramp))


def test_bilinear_upsampling_keeps_a_constant_image_constant_inside():
    text = BILINEAR.replace("num_output: 1", "num_output: 2 group: 2")
    layer, bottom, top = build(text, [np.full((1, 2, 3, 3), 5.0)])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y[:, :, 1:-1, 1:-1], 5.0)


@pytest.mark.parametrize("extra,shape", [
    ("kernel_size: 3", (2, 3, 3, 4)),
    ("kernel_size: 4 stride: 2 pad: 1", (2, 2, 3, 3)),
    ("kernel_size: 2 stride: 2 group: 2", (2, 4, 3, 2)),
    ("kernel_size: 3 dilation: 2 pad: 1 bias_term: false", (1, 3, 3, 3)),
    ("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 3 pad_h: 1 pad_w: 0", (2, 2, 3, 3)),
    ("kernel_size: 3 stride: 2", (2, 2, 4)),
])
def test_gradient(extra, shape):
    check_gradient(deconv(4, extra), [rng.standard_normal(shape)])


def test_param_diffs_accumulate():
    check_param_diffs_accumulate(deconv(4, "kernel_size: 3 stride: 2 group: 2"), [rng.standard_normal((2, 2, 3, 3))])


def test_padding_that_leaves_no_output_is_refused():
    with pytest.raises(LayerError, match="use less padding"):
        build(deconv(2, "kernel_size: 2 pad: 1"), [np.ones((1, 1, 1, 4))])
