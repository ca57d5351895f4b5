import itertools

import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, check_param_diffs_accumulate, forward

CONV = """
name: "conv" type: "Convolution"
convolution_param { num_output: %d weight_filler { type: "gaussian" std: 0.5 }
                    bias_filler { type: "uniform" min: -1 max: 1 } %s }
"""

rng = np.random.default_rng(3)


def conv(num_output, extra=""):
    return CONV % (num_output, extra)


def direct_convolution(x, w, b, pad, stride, dilation, group):
    """y[n, o, i, j] = b[o] + sum over the group's channels and the kernel, zero outside the input."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    OH = (H + 2 * pad[0] - (dilation[0] * (KH - 1) + 1)) // stride[0] + 1
    OW = (W + 2 * pad[1] - (dilation[1] * (KW - 1) + 1)) // stride[1] + 1
    y = np.zeros((N, O, OH, OW))
    for n, o, i, j in itertools.product(range(N), range(O), range(OH), range(OW)):
        first = (o // (O // group)) * Cg
        total = 0.0 if b is None else b[o]
        for c, kh, kw in itertools.product(range(Cg), range(KH), range(KW)):
            h = i * stride[0] - pad[0] + kh * dilation[0]
            v = j * stride[1] - pad[1] + kw * dilation[1]
            if 0 <= h < H and 0 <= v < W:
                total += w[o, c, kh, kw] * x[n, first + c, h, v]
        y[n, o, i, j] = total
    return y


@pytest.mark.parametrize("extra,geometry", [
    ("kernel_size: 3", ((0, 0), (1, 1), (1, 1), 1)),
    ("kernel_size: 3 pad: 1 stride: 2", ((1, 1), (2, 2), (1, 1), 1)),
    ("kernel_h: 3 kernel_w: 2 pad_h: 2 stride_h: 1 stride_w: 3 dilation: 2 group: 2", ((2, 0), (1, 3), (2, 2), 2)),
    ("kernel_size: 2 kernel_size: 3 pad: 1 pad: 0 dilation: 1 dilation: 2 bias_term: false",
     ((1, 0), (1, 1), (1, 2), 1)),
])
def test_forward_matches_the_direct_loop_convolution(extra, geometry):
    pad, stride, dilation, group = geometry
    x = rng.standard_normal((2, 4, 7, 8))
    layer, bottom, top = build(conv(4, extra), [x])
    (y,) = forward(layer, bottom, top)
    b = layer.blobs[1].data if len(layer.blobs) > 1 else None
    np.testing.assert_allclose(y, direct_convolution(x, layer.blobs[0].data, b, pad, stride, dilation, group),
                               rtol=1e-10, atol=1e-12)


def test_output_size_is_the_floor_rule():
    # H: (11 + 2*1 - (2*(3-1)+1)) // 2 + 1 = 5;  W: (8 + 0 - 3) // 3 + 1 = 2
    text = conv(6, "kernel_size: 3 pad_h: 1 pad_w: 0 stride_h: 2 stride_w: 3 dilation: 2 dilation: 1")
    layer, bottom, top = build(text, [np.ones((2, 3, 11, 8))])
    assert top[0].shape == (2, 6, 5, 2)


def test_weight_and_bias_shapes_follow_caffe_with_groups():
    layer, _, _ = build(conv(6, "kernel_h: 3 kernel_w: 2 group: 3"), [np.ones((1, 9, 5, 5))])
    assert layer.blobs[0].shape == (6, 3, 3, 2)
    assert layer.blobs[1].shape == (6,)


def test_fillers_default_to_constant_zero_as_in_caffe():
    layer, _, _ = build('name: "c" type: "Convolution" convolution_param { num_output: 2 kernel_size: 1 }',
                        [np.ones((1, 3, 2, 2))])
    assert not layer.blobs[0].data.any() and not layer.blobs[1].data.any()


def test_bias_term_false_has_only_weights():
    layer, _, _ = build(conv(2, "kernel_size: 1 bias_term: false"), [np.ones((1, 3, 2, 2))])
    assert len(layer.blobs) == 1


def test_axis_2_treats_leading_axes_as_batch():
    x = rng.standard_normal((2, 3, 4, 5, 6))  # batch axes (2, 3), 4 channels, 5 x 6 image
    layer, bottom, top = build(conv(2, "kernel_size: 3 axis: 2"), [x])
    (y,) = forward(layer, bottom, top)
    assert y.shape == (2, 3, 2, 3, 4)
    flat = direct_convolution(x.reshape(6, 4, 5, 6), layer.blobs[0].data, layer.blobs[1].data,
                              (0, 0), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(y.reshape(6, 2, 3, 4), flat, rtol=1e-10)


def test_one_spatial_axis_is_a_1d_convolution():
    x = rng.standard_normal((2, 3, 9))
    layer, bottom, top = build(conv(2, "kernel_size: 3 stride: 2 pad: 1"), [x])
    (y,) = forward(layer, bottom, top)
    as_2d = direct_convolution(x[:, :, None, :], layer.blobs[0].data[:, :, None, :], layer.blobs[1].data,
                               (0, 1), (1, 2), (1, 1), 1)
    np.testing.assert_allclose(y, as_2d[:, :, 0, :], rtol=1e-10)


def test_two_bottoms_are_convolved_with_the_same_weights():
    x1, x2 = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 2, 5, 5))
    text = 'name: "c" type: "Convolution" bottom: "a" bottom: "b" top: "ya" top: "yb" ' \
           'convolution_param { num_output: 3 kernel_size: 2 weight_filler { type: "gaussian" } }'
    layer, bottom, top = build(text, [x1, x2])
    ya, yb = forward(layer, bottom, top)
    W = layer.blobs[0].data
    np.testing.assert_allclose(ya, direct_convolution(x1, W, np.zeros(3), (0, 0), (1, 1), (1, 1), 1), rtol=1e-10)
    np.testing.assert_allclose(yb, direct_convolution(x2, W, np.zeros(3), (0, 0), (1, 1), (1, 1), 1), rtol=1e-10)


def test_float32_stays_float32():
    layer, bottom, top = build(conv(2, "kernel_size: 3"), [np.ones((1, 2, 4, 4))], dtype=np.float32)
    for blob in layer.blobs:
        blob.astype(np.float32)
    forward(layer, bottom, top)
    assert top[0].data.dtype == np.float32


@pytest.mark.parametrize("extra,shape", [
    ("kernel_size: 3", (2, 3, 5, 6)),
    ("kernel_size: 3 pad: 1 stride: 2", (2, 2, 6, 7)),
    ("kernel_size: 2 group: 2", (2, 4, 4, 5)),
    ("kernel_size: 3 dilation: 2 pad: 1", (1, 2, 7, 6)),
    ("kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2", (2, 2, 6, 4)),
    ("kernel_size: 2 bias_term: false", (2, 3, 4, 4)),
    ("kernel_size: 2 axis: 2", (2, 2, 3, 4, 4)),
    ("kernel_size: 3 pad: 1 stride: 2", (2, 3, 7)),
    ("kernel_size: 2 kernel_size: 1 kernel_size: 2 stride: 2 stride: 1 stride: 1", (1, 2, 4, 3, 3)),
])
def test_gradient(extra, shape):
    check_gradient(conv(4, extra), [rng.standard_normal(shape)])


def test_gradient_with_two_bottoms():
    text = 'name: "c" type: "Convolution" bottom: "a" bottom: "b" top: "ya" top: "yb" ' \
           'convolution_param { num_output: 2 kernel_size: 2 stride: 2 pad: 1 ' \
           'weight_filler { type: "gaussian" } bias_filler { type: "gaussian" } }'
    check_gradient(text, [rng.standard_normal((2, 2, 4, 5)), rng.standard_normal((2, 2, 4, 5))])


def test_param_diffs_accumulate():
    check_param_diffs_accumulate(conv(4, "kernel_size: 3 pad: 1 group: 2"), [rng.standard_normal((2, 4, 5, 5))])


@pytest.mark.parametrize("extra,shape,message", [
    ("kernel_size: 3 group: 2", (1, 3, 5, 5), "cannot be split into group: 2"),
    ("", (1, 3, 5, 5), "needs kernel_size"),
    ("kernel_size: 0", (1, 3, 5, 5), "nonzero"),
    ("kernel_size: 3 kernel_h: 3 kernel_w: 3", (1, 3, 5, 5), "not both"),
    ("kernel_h: 3", (1, 3, 5, 5), "kernel_h and kernel_w must be given together"),
    ("kernel_size: 3 stride: 0", (1, 3, 5, 5), "strides must be nonzero"),
    ("kernel_size: 3 pad: 1 pad: 1 pad: 1", (1, 3, 5, 5), "once or once per spatial axis"),
    ("kernel_h: 3 kernel_w: 3", (1, 3, 5), "only be used for 2-D"),
])
def test_bad_parameters_are_refused(extra, shape, message):
    with pytest.raises(LayerError, match=message):
        build(conv(4, extra), [np.ones(shape)])


def test_num_output_must_be_a_multiple_of_group():
    with pytest.raises(LayerError, match="num_output 3 must be a multiple of group: 2"):
        build(conv(3, "kernel_size: 3 group: 2"), [np.ones((1, 4, 5, 5))])


def test_num_output_is_required():
    with pytest.raises(LayerError, match="num_output"):
        build('name: "c" type: "Convolution" convolution_param { kernel_size: 3 }', [np.ones((1, 1, 4, 4))])


def test_kernel_larger_than_the_padded_input_is_refused():
    with pytest.raises(LayerError, match="larger than the padded input"):
        build(conv(2, "kernel_size: 5 pad: 1"), [np.ones((1, 1, 2, 8))])


def test_changed_channel_count_is_refused():
    layer, bottom, top = build(conv(2, "kernel_size: 1"), [np.ones((1, 3, 2, 2))])
    bottom[0].reshape(1, 4, 2, 2)
    with pytest.raises(LayerError, match="4 channels, the weights expect 3"):
        layer.reshape(bottom, top)


def test_reshape_follows_a_new_image_size():
    layer, bottom, top = build(conv(2, "kernel_size: 3"), [np.ones((1, 3, 5, 5))])
    bottom[0].reshape(4, 3, 7, 6)
    layer.reshape(bottom, top)
    assert top[0].shape == (4, 2, 5, 4)


# A batch whose columns exceed COLUMN_BYTES runs in chunks of samples and recomputes each chunk's
# columns for dW in backward; a small budget makes 5 samples run as chunks of 2, 2 and 1.
CHUNKED = [("kernel_size: 3 pad: 1", 1), ("kernel_size: 2 stride: 2 group: 2", 2), ("kernel_size: 3", 1)]


def two_samples_a_chunk(monkeypatch, extra, x):
    """Build the layer with a column budget of two samples of x; returns (layer, bottom, top)."""
    import dualnet.layers.convolution as convolution

    layer, bottom, top = build(conv(4, extra), [x])
    P = int(np.prod(top[0].shape[2:]))
    monkeypatch.setattr(convolution, "COLUMN_BYTES", 2 * P * 4 * int(np.prod(layer.kernel)) * x.itemsize)
    assert layer.samples_per_chunk(x, P) == 2
    return layer, bottom, top


@pytest.mark.parametrize("extra,group", CHUNKED)
def test_chunked_forward_matches_the_direct_loop_convolution(monkeypatch, extra, group):
    x = rng.standard_normal((5, 4, 6, 6))
    layer, bottom, top = two_samples_a_chunk(monkeypatch, extra, x)
    (y,) = forward(layer, bottom, top)
    geometry = {"kernel_size: 3 pad: 1": ((1, 1), (1, 1)), "kernel_size: 2 stride: 2 group: 2": ((0, 0), (2, 2)),
                "kernel_size: 3": ((0, 0), (1, 1))}[extra]
    expected = direct_convolution(x, layer.blobs[0].data, layer.blobs[1].data, *geometry, (1, 1), group)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("extra,group", CHUNKED)
def test_chunked_gradient(monkeypatch, extra, group):
    import dualnet.layers.convolution as convolution

    monkeypatch.setattr(convolution, "COLUMN_BYTES", 1)        # one sample per chunk
    check_gradient(conv(4, extra), [rng.standard_normal((3, 4, 5, 5))])


@pytest.mark.parametrize("extra,group", CHUNKED)
def test_chunked_gradient_with_a_shorter_last_chunk(monkeypatch, extra, group):
    # dx is written chunk by chunk into the bottom's diff: chunks of 2, 2 and 1 samples
    x = rng.standard_normal((5, 4, 5, 5))
    two_samples_a_chunk(monkeypatch, extra, x)
    check_gradient(conv(4, extra), [x])
