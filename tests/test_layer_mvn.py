import numpy as np
import pytest

from layer_harness import build, check_gradient, forward

MVN = 'type: "MVN" mvn_param { %s }'


def reference(x, across_channels=False, normalize_variance=True, eps=1e-9):
    """Loop over the rows Caffe normalises: each (n, c), or each n across channels."""
    y = np.empty_like(x)
    groups = [(n,) for n in range(x.shape[0])] if across_channels else \
        [(n, c) for n in range(x.shape[0]) for c in range(x.shape[1])]
    for g in groups:
        values = x[g]
        centred = values - values.sum() / values.size
        if normalize_variance:
            centred = centred / (np.sqrt((centred ** 2).sum() / values.size) + eps)
        y[g] = centred
    return y


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_forward_matches_per_row_reference(across, normalize):
    x = 3 + 2 * np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    param = f"across_channels: {str(across).lower()} normalize_variance: {str(normalize).lower()}"
    layer, bottom, top = build(MVN % param, [x])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], reference(x, across, normalize), rtol=1e-12)


def test_eps_is_added_to_the_standard_deviation():
    # Rows [0, 2]: mean 1, biased std 1, so y = (x - 1) / (1 + eps).
    layer, bottom, top = build(MVN % "eps: 0.5", [np.array([[[0.0, 2.0]]])])
    np.testing.assert_allclose(forward(layer, bottom, top)[0], [[[-1 / 1.5, 1 / 1.5]]], rtol=1e-15)


def test_constant_rows_give_zero_output_and_finite_gradient():
    x = np.full((2, 2, 3), 4.0)
    layer, bottom, top = build(MVN % "", [x])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], 0.0)
    top[0].diff = np.random.default_rng(1).standard_normal(x.shape)
    layer.backward(top, [True], bottom)
    assert np.isfinite(bottom[0].diff).all()


def test_keeps_float32():
    layer, bottom, top = build(MVN % "", [np.arange(12.0).reshape(2, 2, 3)], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("param", [
    "", "across_channels: true", "normalize_variance: false",
    "across_channels: true normalize_variance: false",
])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(param, in_place):
    x = np.random.default_rng(2).standard_normal((2, 3, 2, 3))
    check_gradient(MVN % param, [x], in_place=in_place)


@pytest.mark.parametrize("in_place", [False, True])
def test_backward_is_caffes_with_a_large_eps(in_place):
    # Caffe's MVNLayer::Backward_cpu divides by d = s + eps but differentiates as if d
    # were s: dx = (dy - mean(dy) - mean(dy * y) * y) / d, not the finite-difference
    # gradient of the forward (which has mean(dy * y) * y * d / s). Rows [0, 2] and
    # [1, 4]: s = 1 and 1.5; with eps = 0.5, d = 1.5 and 2, y = [-2/3, 2/3] and [-3/4, 3/4].
    x = np.array([[[0.0, 2.0], [1.0, 4.0]]])
    dy = np.array([[[1.0, 3.0], [-2.0, 0.5]]])
    layer, bottom, top = build(MVN % "eps: 0.5", [x], in_place=in_place)
    forward(layer, bottom, top)
    top[0].diff = dy.copy()
    layer.backward(top, [True], bottom)
    # row 1: mean(dy) = 2, mean(dy*y) = (-2/3 + 2) / 2 = 2/3
    #   dx = ([1, 3] - 2 - 2/3 * [-2/3, 2/3]) / 1.5 = [-5/9, 5/9] / 1.5 = [-10/27, 10/27]
    # row 2: mean(dy) = -3/4, mean(dy*y) = (3/2 + 3/8) / 2 = 15/16
    #   dx = ([-2, 1/2] + 3/4 - 15/16 * [-3/4, 3/4]) / 2 = [-35/128, 35/128]
    np.testing.assert_allclose(bottom[0].diff, [[[-10 / 27, 10 / 27], [-35 / 128, 35 / 128]]], rtol=1e-12)


def test_gradient_two_axis_bottom():
    check_gradient(MVN % "", [np.random.default_rng(3).standard_normal((3, 5))])
