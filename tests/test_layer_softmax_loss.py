import numpy as np
import pytest

from layer_harness import build, check_gradient, forward

LOSS = 'type: "SoftmaxWithLoss" %s'


def reference_loss(x, labels, ignore=None):
    """Mean negative log-likelihood over the non-ignored samples (axis 1 classes)."""
    total, count = 0.0, 0
    for n in range(x.shape[0]):
        if labels[n] == ignore:
            continue
        p = np.exp(x[n] - x[n].max())
        p /= p.sum()
        total -= np.log(p[int(labels[n])])
        count += 1
    return total, count


def test_loss_is_mean_negative_log_likelihood():
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2.0])
    layer, bottom, top = build(LOSS % "", [x, labels])
    total, count = reference_loss(x, labels)
    assert forward(layer, bottom, top)[0] == pytest.approx(total / count, rel=1e-12)


# 5 samples, 2 of them not carrying the ignored label 2
@pytest.mark.parametrize("mode,divisor", [("FULL", 5), ("VALID", 2), ("BATCH_SIZE", 5), ("NONE", 1)])
def test_normalization_modes_with_ignore_label(mode, divisor):
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((5, 4)), np.array([0, 2, 2, 1, 2.0])
    text = LOSS % f"loss_param {{ ignore_label: 2 normalization: {mode} }}"
    layer, bottom, top = build(text, [x, labels])
    total, count = reference_loss(x, labels, ignore=2)
    assert count == 2
    assert forward(layer, bottom, top)[0] == pytest.approx(total / divisor, rel=1e-12)


# (N, C, H, W) = (2, 3, 1, 2): 2 samples, 4 locations; BATCH_SIZE divides by 2, FULL by 4
@pytest.mark.parametrize("mode,divisor", [("FULL", 4), ("VALID", 4), ("BATCH_SIZE", 2), ("NONE", 1)])
def test_normalization_modes_over_spatial_locations(mode, divisor):
    rng = np.random.default_rng(6)
    x, labels = rng.standard_normal((2, 3, 1, 2)), np.array([[[[0, 2]]], [[[1, 1]]]], dtype=float)
    layer, bottom, top = build(LOSS % f"loss_param {{ normalization: {mode} }}", [x, labels])
    # The same loss with the locations laid out as samples: (4, 3) scores, 4 labels.
    total, _ = reference_loss(x.transpose(0, 2, 3, 1).reshape(4, 3), labels.ravel())
    assert forward(layer, bottom, top)[0] == pytest.approx(total / divisor, rel=1e-12)


def test_deprecated_normalize_false_divides_by_batch():
    rng = np.random.default_rng(2)
    x, labels = rng.standard_normal((4, 3)), np.array([0, 1, 2, 0.0])
    layer, bottom, top = build(LOSS % "loss_param { normalize: false }", [x, labels])
    total, _ = reference_loss(x, labels)
    assert forward(layer, bottom, top)[0] == pytest.approx(total / 4, rel=1e-12)


@pytest.mark.parametrize("mode", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", ["", "ignore_label: 1"])
def test_gradient(mode, ignore):
    rng = np.random.default_rng(3)
    text = LOSS % f"loss_param {{ normalization: {mode} {ignore} }}"
    check_gradient(text, [rng.standard_normal((4, 3)), np.array([0, 1, 2, 1.0])])


@pytest.mark.parametrize("mode", ["VALID", "FULL", "BATCH_SIZE", "NONE"])
def test_gradient_spatial_with_ignore_label_and_a_loss_weight(mode):
    # Per-location normalizers differ here (VALID: non-ignored locations, BATCH_SIZE: N, FULL: N*H*W),
    # and the top diff (the loss weight, 2.5) must scale the gradient.
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, (2, 1, 2, 2)).astype(float)
    labels[0, 0, 0, 0] = labels[1, 0, 1, 1] = 2
    check_gradient(LOSS % f"loss_param {{ normalization: {mode} ignore_label: 2 }}",
                   [rng.standard_normal((2, 3, 2, 2)), labels], top_weights=[2.5])


def test_gradient_spatial_axis():
    rng = np.random.default_rng(4)
    check_gradient(LOSS % "", [rng.standard_normal((2, 3, 2, 2)), rng.integers(0, 3, (2, 1, 2, 2)).astype(float)])


def test_probability_top():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3))
    layer, bottom, top = build(LOSS % "", [x, np.array([0, 1.0])], num_tops=2)
    _, prob = forward(layer, bottom, top)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
