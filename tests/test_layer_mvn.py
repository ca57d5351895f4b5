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
    "eps: 0.3",                       # large eps: the gradient is exact, not Caffe's eps = 0 form
])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(param, in_place):
    x = np.random.default_rng(2).standard_normal((2, 3, 2, 3))
    check_gradient(MVN % param, [x], in_place=in_place)


def test_gradient_two_axis_bottom():
    check_gradient(MVN % "", [np.random.default_rng(3).standard_normal((3, 5))])
