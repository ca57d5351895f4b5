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


@pytest.mark.parametrize("mode,divisor", [("FULL", 5), ("VALID", 3), ("BATCH_SIZE", 5), ("NONE", 1)])
def test_normalization_modes_with_ignore_label(mode, divisor):
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((5, 4)), np.array([0, 2, 2, 1, 2.0])
    text = LOSS % f"loss_param {{ ignore_label: 2 normalization: {mode} }}"
    layer, bottom, top = build(text, [x, labels])
    total, count = reference_loss(x, labels, ignore=2)
    assert count == 2
    expected_divisor = 2 if mode == "VALID" else divisor
    assert forward(layer, bottom, top)[0] == pytest.approx(total / expected_divisor, rel=1e-12)


def test_deprecated_normalize_false_divides_by_batch():
    rng = np.random.default_rng(2)
    x, labels = rng.standard_normal((4, 3)), np.array([0, 1, 2, 0.0])
    layer, bottom, top = build(LOSS % "loss_param { normalize: false }", [x, labels])
    total, _ = reference_loss(x, labels)
    assert forward(layer, bottom, top)[0] == pytest.approx(total / 4, rel=1e-12)


@pytest.mark.parametrize("params", ["", "loss_param { ignore_label: 1 }",
                                    "loss_param { normalization: FULL ignore_label: 0 }"])
def test_gradient(params):
    rng = np.random.default_rng(3)
    check_gradient(LOSS % params, [rng.standard_normal((4, 3)), np.array([0, 1, 2, 1.0])])


def test_gradient_spatial_axis():
    rng = np.random.default_rng(4)
    check_gradient(LOSS % "", [rng.standard_normal((2, 3, 2, 2)), rng.integers(0, 3, (2, 1, 2, 2)).astype(float)])


def test_probability_top():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3))
    layer, bottom, top = build(LOSS % "", [x, np.array([0, 1.0])], num_tops=2)
    _, prob = forward(layer, bottom, top)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
