import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

LOSS = 'type: "SigmoidCrossEntropyLoss" %s'


def reference_sum(x, t, ignore=None):
    """Sum over non-ignored entries of -[t log s + (1 - t) log(1 - s)], with the count."""
    total, count = 0.0, 0
    for xi, ti in zip(x.ravel(), t.ravel()):
        if ignore is not None and int(ti) == ignore:
            continue
        s = 1 / (1 + np.exp(-xi))
        total -= ti * np.log(s) + (1 - ti) * np.log(1 - s)
        count += 1
    return total, count


def test_hand_computed_loss():
    # x = 0: s = 1/2, loss log 2 whatever the target; batch of 1
    layer, bottom, top = build(LOSS % "", [np.zeros((1, 2)), np.array([[1.0, 0.0]])])
    assert forward(layer, bottom, top)[0] == pytest.approx(2 * np.log(2), rel=1e-12)


def test_default_normalisation_is_batch_size():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((4, 3)), rng.uniform(0, 1, (4, 3))
    layer, bottom, top = build(LOSS % "", [x, t])
    total, _ = reference_sum(x, t)
    assert forward(layer, bottom, top)[0] == pytest.approx(total / 4, rel=1e-10)


@pytest.mark.parametrize("mode,divisor", [("FULL", 12), ("VALID", 8), ("BATCH_SIZE", 4), ("NONE", 1)])
def test_normalization_modes_with_ignore_label(mode, divisor):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3))
    t = np.array([[1, 0, -1], [0, -1, 1], [1, 1, -1], [-1, 0, 0.0]])
    layer, bottom, top = build(LOSS % f"loss_param {{ ignore_label: -1 normalization: {mode} }}", [x, t])
    total, count = reference_sum(x, t, ignore=-1)
    assert count == 8
    assert forward(layer, bottom, top)[0] == pytest.approx(total / divisor, rel=1e-10)


def test_deprecated_normalize_true_means_valid():
    x, t = np.zeros((2, 2)), np.array([[1, 5], [0, 5.0]])
    layer, bottom, top = build(LOSS % "loss_param { normalize: true ignore_label: 5 }", [x, t])
    assert forward(layer, bottom, top)[0] == pytest.approx(np.log(2), rel=1e-12)


def test_extreme_scores_stay_finite():
    x, t = np.array([[800.0, -800.0]]), np.array([[0.0, 1.0]])
    layer, bottom, top = build(LOSS % "", [x, t])
    assert forward(layer, bottom, top)[0] == pytest.approx(1600.0)
    top[0].diff = np.array(1.0)
    layer.backward(top, [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, [[1.0, -1.0]])


@pytest.mark.parametrize("params", ["", "loss_param { normalization: FULL }",
                                    "loss_param { ignore_label: -1 normalization: VALID }"])
def test_gradient(params):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 2))
    t = rng.uniform(0, 1, (3, 2, 2))
    t[0, 1, 0] = t[2, 0, 1] = -1
    check_gradient(LOSS % params, [x, t])


def test_ignored_entries_get_no_gradient():
    x, t = np.array([[0.3, -0.2]]), np.array([[-1.0, 1.0]])
    layer, bottom, top = build(LOSS % "loss_param { ignore_label: -1 }", [x, t])
    forward(layer, bottom, top)
    top[0].diff = np.array(1.0)
    layer.backward(top, [True, False], bottom)
    assert bottom[0].diff[0, 0] == 0
    assert bottom[0].diff[0, 1] == pytest.approx(1 / (1 + np.exp(0.2)) - 1)


def test_count_mismatch_is_refused():
    with pytest.raises(LayerError, match="same count"):
        build(LOSS % "", [np.ones((2, 3)), np.ones((2, 2))])


def test_backward_to_targets_is_refused():
    layer, bottom, top = build(LOSS % "", [np.ones((1, 2)), np.ones((1, 2))])
    forward(layer, bottom, top)
    with pytest.raises(LayerError, match="target"):
        layer.backward(top, [True, True], bottom)
