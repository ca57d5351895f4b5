import itertools

import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

LRN = 'name: "norm" type: "LRN" lrn_param { %s }'

rng = np.random.default_rng(13)


def as_proto_float(value):
    """alpha, beta and k are float32 fields in the proto, as in Caffe."""
    return float(np.float32(value))


def reference_across(x, size, alpha, beta, k):
    """scale = k + alpha/size * sum of x^2 over the `size` channels centred on c (zeros outside)."""
    N, C, H, W = x.shape
    r = (size - 1) // 2
    y = np.zeros_like(x)
    for n, c, h, w in itertools.product(range(N), range(C), range(H), range(W)):
        total = sum(x[n, j, h, w] ** 2 for j in range(max(c - r, 0), min(c + r + 1, C)))
        y[n, c, h, w] = x[n, c, h, w] * (k + alpha / size * total) ** -beta
    return y


def reference_within(x, size, alpha, beta):
    """Caffe's composition: AVE pooling of x^2 (pad r, divisor size^2), then (1 + alpha * avg)^-beta."""
    N, C, H, W = x.shape
    r = (size - 1) // 2
    y = np.zeros_like(x)
    for n, c, h, w in itertools.product(range(N), range(C), range(H), range(W)):
        window = x[n, c, max(h - r, 0):h + r + 1, max(w - r, 0):w + r + 1]
        average = (window ** 2).sum() / size ** 2
        y[n, c, h, w] = x[n, c, h, w] * (1 + alpha * average) ** -beta
    return y


def test_across_channels_by_hand():
    # One pixel, channels [1, 2, 3], size 3, alpha 3, beta 1, k 1: sums of squares over
    # channel windows are 1+4, 1+4+9, 4+9 -> scales 1 + (5, 14, 13) = 6, 15, 14.
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    layer, bottom, top = build(LRN % "local_size: 3 alpha: 3 beta: 1 k: 1", [x])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y.ravel(), [1 / 6, 2 / 15, 3 / 14], rtol=1e-6)


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.6, 2.0), (1, 2.0, 1.5, 1.0)])
def test_across_channels_matches_the_loop_reference(size, alpha, beta, k):
    x = rng.standard_normal((2, 7, 3, 2))
    layer, bottom, top = build(LRN % f"local_size: {size} alpha: {alpha} beta: {beta} k: {k}", [x])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y, reference_across(x, size, as_proto_float(alpha), as_proto_float(beta),
                                                   as_proto_float(k)), rtol=1e-12)


def test_within_channel_by_hand():
    # 1x2 image [1, 2], size 3, alpha 9, beta 1: every 3x3 window holds both pixels, so the
    # average of squares is 5/9 and the scale 1 + 9 * 5/9 = 6 (k is not used).
    x = np.array([1.0, 2.0]).reshape(1, 1, 1, 2)
    layer, bottom, top = build(LRN % "norm_region: WITHIN_CHANNEL local_size: 3 alpha: 9 beta: 1 k: 5", [x])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y.ravel(), [1 / 6, 2 / 6], rtol=1e-6)


@pytest.mark.parametrize("size,alpha,beta", [(3, 2.0, 0.75), (5, 0.5, 0.6)])
def test_within_channel_matches_caffes_composition(size, alpha, beta):
    x = rng.standard_normal((2, 2, 5, 6))
    layer, bottom, top = build(LRN % f"norm_region: WITHIN_CHANNEL local_size: {size} alpha: {alpha} beta: {beta}", [x])
    (y,) = forward(layer, bottom, top)
    np.testing.assert_allclose(y, reference_within(x, size, as_proto_float(alpha), as_proto_float(beta)), rtol=1e-12)


@pytest.mark.parametrize("params,shape", [
    ("local_size: 5 alpha: 1 beta: 0.75", (2, 7, 2, 3)),
    ("local_size: 3 alpha: 0.5 beta: 0.75 k: 2", (2, 4, 3, 3)),
    ("norm_region: WITHIN_CHANNEL local_size: 3 alpha: 2 beta: 0.6", (2, 2, 4, 5)),
    ("norm_region: WITHIN_CHANNEL local_size: 5 alpha: 2 beta: 0.75", (1, 2, 4, 3)),
])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(params, shape, in_place):
    check_gradient(LRN % params, [rng.standard_normal(shape)], in_place=in_place)


def test_even_local_size_is_refused():
    with pytest.raises(LayerError, match="local_size must be odd"):
        build(LRN % "local_size: 4", [np.ones((1, 4, 2, 2))])


def test_bottom_must_have_four_axes():
    with pytest.raises(LayerError, match="4-axis bottom"):
        build(LRN % "local_size: 3", [np.ones((2, 4, 3))])


def test_float32_stays_float32():
    layer, bottom, top = build(LRN % "local_size: 3", [np.ones((1, 4, 2, 2))], dtype=np.float32)
    (y,) = forward(layer, bottom, top)
    assert y.dtype == np.float32
