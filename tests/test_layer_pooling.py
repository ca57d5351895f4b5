import itertools
import math

import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

POOL = 'name: "pool" type: "Pooling" pooling_param { %s }'

rng = np.random.default_rng(11)


def distinct(shape):
    """Values at least 0.1 apart, so no window has a tie and MAX is differentiable."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + rng.uniform(-0.02, 0.02, shape)


def reference_pool(x, kernel, stride, pad, method, ceil=True):
    """Caffe's pooling loop: size rule with the last-window correction, windows clipped to the image."""
    N, C, H, W = x.shape
    out = []
    for size, k, s, p in zip((H, W), kernel, stride, pad):
        o = (math.ceil if ceil else math.floor)((size + 2 * p - k) / s) + 1
        if (pad[0] or pad[1]) and (o - 1) * s >= size + p:
            o -= 1
        out.append(o)
    y = np.zeros((N, C) + tuple(out))
    for n, c, i, j in itertools.product(range(N), range(C), range(out[0]), range(out[1])):
        h0, w0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
        h1, w1 = min(h0 + kernel[0], H + pad[0]), min(w0 + kernel[1], W + pad[1])
        pool_size = (h1 - h0) * (w1 - w0)
        window = x[n, c, max(h0, 0):min(h1, H), max(w0, 0):min(w1, W)]
        y[n, c, i, j] = window.max() if method == "MAX" else window.sum() / pool_size
    return y


@pytest.mark.parametrize("params,size,expected", [
    ("kernel_size: 3 stride: 2 pad: 1", 6, 4),        # ceil(5/2)+1 = 4; last start 6 < 6+1: kept
    ("kernel_size: 2 stride: 2", 5, 3),               # ceil(3/2)+1 = 3
    ("kernel_size: 2 stride: 2 round_mode: FLOOR", 5, 2),
    ("kernel_size: 2 stride: 2 pad: 1", 5, 3),        # ceil(5/2)+1 = 4, but start 6 >= 5+1: dropped
    ("kernel_size: 2 stride: 2 pad: 1", 3, 2),        # ceil(3/2)+1 = 3, start 4 >= 3+1: dropped
    ("kernel_size: 3 stride: 3 pad: 1 round_mode: FLOOR", 7, 3),
    ("kernel_size: 3 stride: 2", 2, 1),               # ceil(-1/2)+1 = 1: one clipped window
])
def test_output_size_follows_caffes_rule(params, size, expected):
    _, _, top = build(POOL % params, [np.ones((1, 1, size, size))])
    assert top[0].shape == (1, 1, expected, expected)


def test_max_forward_by_hand():
    x = np.array([[1, 5, 2, 0],
                  [3, 4, 8, 6],
                  [0, 9, 7, 1]], dtype=float).reshape(1, 1, 3, 4)
    layer, bottom, top = build(POOL % "pool: MAX kernel_size: 2 stride: 2", [x])
    (y,) = forward(layer, bottom, top)
    # ceil: 2 x 2 windows; the bottom row's windows hold one image row only.
    np.testing.assert_array_equal(y[0, 0], [[5, 8], [9, 7]])


def test_ave_divides_by_the_window_size_counting_padding():
    # in 3, kernel 2, stride 2, pad 1: windows [-1, 1) (one pixel, size 2) and [1, 3) (two pixels).
    layer, bottom, top = build(POOL % "pool: AVE kernel_size: 2 stride: 2 pad: 1", [np.ones((1, 1, 3, 3))])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y[0, 0], [[1 / 4, 2 / 4], [2 / 4, 4 / 4]])


def test_ave_window_size_is_clipped_at_the_padded_border():
    # in 4, kernel 3, stride 2, pad 1: windows [-1, 2), [1, 4), [3, 5) -> pixels 2, 3, 1 of sizes 3, 3, 2.
    layer, bottom, top = build(POOL % "pool: AVE kernel_size: 3 stride: 2 pad: 1", [np.ones((1, 1, 4, 4))])
    (y,) = forward(layer, bottom, top)
    per_axis = np.array([2 / 3, 3 / 3, 1 / 2])
    np.testing.assert_allclose(y[0, 0], np.outer(per_axis, per_axis))


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("params,geometry,shape", [
    ("kernel_size: 3 stride: 2 pad: 1", ((3, 3), (2, 2), (1, 1)), (2, 2, 6, 6)),
    ("kernel_size: 2 stride: 2", ((2, 2), (2, 2), (0, 0)), (1, 2, 5, 5)),
    ("kernel_size: 3 stride: 1 pad: 2", ((3, 3), (1, 1), (2, 2)), (1, 1, 4, 5)),
    ("kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 1", ((3, 2), (2, 1), (1, 1)), (2, 1, 7, 5)),
    ("kernel_size: 2 stride: 2 pad: 1", ((2, 2), (2, 2), (1, 1)), (1, 1, 5, 5)),
])
def test_forward_matches_caffes_loop(method, params, geometry, shape):
    x = distinct(shape)
    layer, bottom, top = build(POOL % f"pool: {method} {params}", [x])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y, reference_pool(x, *geometry, method), rtol=1e-12)


def test_floor_mode_matches_caffes_loop():
    x = distinct((1, 2, 7, 6))
    layer, bottom, top = build(POOL % "pool: AVE kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR", [x])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y, reference_pool(x, (3, 3), (2, 2), (1, 1), "AVE", ceil=False), rtol=1e-12)


def test_max_gradient_goes_to_the_first_maximum_in_scan_order():
    x = np.array([[2, 7],
                  [7, 7]], dtype=float).reshape(1, 1, 2, 2)
    layer, bottom, top = build(POOL % "pool: MAX kernel_size: 2 stride: 2", [x])
    forward(layer, bottom, top)
    top[0].diff = np.full((1, 1, 1, 1), 3.0)
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff[0, 0], [[0, 3], [0, 0]])


def test_overlapping_max_windows_add_their_gradients():
    # in 3, kernel 2, stride 1: the centre 9 is the max of all four windows.
    x = np.array([[1, 2, 3], [4, 9, 5], [6, 7, 8]], dtype=float).reshape(1, 1, 3, 3)
    layer, bottom, top = build(POOL % "pool: MAX kernel_size: 2 stride: 1", [x])
    forward(layer, bottom, top)
    top[0].diff = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff[0, 0], [[0, 0, 0], [0, 10, 0], [0, 0, 0]])


def test_max_mask_top_holds_the_argmax_index_in_the_plane():
    x = np.array([[1, 5, 2],
                  [3, 4, 8],
                  [9, 0, 7]], dtype=float).reshape(1, 1, 3, 3)
    layer, bottom, top = build(POOL % "pool: MAX kernel_size: 2 stride: 2 pad: 1", [x], num_tops=2)
    y, mask = forward(layer, bottom, top)
    # windows rows [-1, 1), [1, 3); cols likewise
    np.testing.assert_array_equal(y[0, 0], [[1, 5], [9, 8]])
    np.testing.assert_array_equal(mask[0, 0], [[0, 1], [6, 5]])


def test_a_window_past_the_image_gives_caffes_lowest_value_and_mask_minus_one():
    # in 5, kernel 1, stride 3, no pad: ceil(4/3)+1 = 3 windows, the last starts at 6.
    x = distinct((1, 1, 5, 5))
    layer, bottom, top = build(POOL % "pool: MAX kernel_size: 1 stride: 3", [x], num_tops=2)
    y, mask = forward(layer, bottom, top)
    np.testing.assert_array_equal(y[0, 0, :2, :2], x[0, 0, ::3, ::3])
    assert (y[0, 0, 2, :] == np.finfo(np.float64).min).all()
    np.testing.assert_array_equal(mask[0, 0], [[0, 3, -1], [15, 18, -1], [-1, -1, -1]])


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_global_pooling_pools_the_whole_plane(method):
    x = distinct((2, 3, 4, 5))
    layer, bottom, top = build(POOL % f"pool: {method} global_pooling: true", [x])
    (y,) = forward(layer, bottom, top)
    expected = x.max(axis=(2, 3)) if method == "MAX" else x.mean(axis=(2, 3))
    np.testing.assert_allclose(y, expected[:, :, None, None], rtol=1e-12)


def test_global_max_mask_is_the_flat_argmax():
    x = distinct((1, 2, 3, 4))
    layer, bottom, top = build(POOL % "pool: MAX global_pooling: true", [x], num_tops=2)
    _, mask = forward(layer, bottom, top)
    np.testing.assert_array_equal(mask[:, :, 0, 0], x.reshape(1, 2, 12).argmax(axis=2))


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("params,shape", [
    ("kernel_size: 2 stride: 2", (2, 3, 4, 6)),
    ("kernel_size: 3 stride: 2 pad: 1", (2, 2, 6, 6)),
    ("kernel_size: 2 stride: 2", (1, 2, 5, 5)),
    ("kernel_size: 2 stride: 2 round_mode: FLOOR", (1, 2, 5, 5)),
    ("kernel_size: 3 stride: 1 pad: 2", (1, 2, 5, 4)),
    ("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 1", (2, 1, 5, 6)),
    ("kernel_size: 2 stride: 2 pad: 1", (1, 1, 5, 5)),
    ("global_pooling: true", (2, 3, 4, 5)),
])
def test_gradient(method, params, shape):
    check_gradient(POOL % f"pool: {method} {params}", [distinct(shape)])


@pytest.mark.parametrize("params,message", [
    ("pool: STOCHASTIC kernel_size: 2", "STOCHASTIC pooling is not supported"),
    ("kernel_size: 2 pad: 2", "must be smaller than the kernel"),
    ("global_pooling: true kernel_size: 2", "remove kernel_size"),
    ("global_pooling: true stride: 2", "pad 0 and stride 1"),
    ("kernel_size: 2 kernel_h: 2 kernel_w: 2", "not both"),
    ("kernel_h: 2", "kernel_h and kernel_w must be given together"),
    ("stride: 2", "needs kernel_size"),
    ("kernel_size: 0", "nonzero"),
    ("kernel_size: 2 stride: 0", "strides must be nonzero"),
    ("kernel_size: 2 pad: 1 pad_h: 1 pad_w: 1", "not both"),
])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(LayerError, match=message):
        build(POOL % params, [np.ones((1, 1, 4, 4))])


def test_only_max_pooling_has_a_mask_top():
    with pytest.raises(LayerError, match="only MAX pooling has a second top"):
        build(POOL % "pool: AVE kernel_size: 2", [np.ones((1, 1, 4, 4))], num_tops=2)


def test_kernel_larger_than_the_padded_input_is_refused():
    with pytest.raises(LayerError, match="larger than the padded input"):
        build(POOL % "kernel_size: 5", [np.ones((1, 1, 3, 3))])


def test_bottom_must_have_four_axes():
    with pytest.raises(LayerError, match="4-axis bottom"):
        build(POOL % "kernel_size: 2", [np.ones((2, 3, 4))])


def test_float32_stays_float32():
    layer, bottom, top = build(POOL % "pool: AVE kernel_size: 3 stride: 2 pad: 1", [np.ones((1, 1, 5, 5))],
                               dtype=np.float32)
    (y,) = forward(layer, bottom, top)
    assert y.dtype == np.float32
