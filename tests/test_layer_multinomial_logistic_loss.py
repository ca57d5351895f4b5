import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

LOSS = 'type: "MultinomialLogisticLoss"'


def test_hand_computed_loss():
    p = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    layer, bottom, top = build(LOSS, [p, np.array([0, 2.0])])
    assert forward(layer, bottom, top)[0] == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2, rel=1e-12)


def test_zero_probability_is_clipped_at_1e_20():
    layer, bottom, top = build(LOSS, [np.array([[1.0, 0.0]]), np.array([1.0])])
    assert forward(layer, bottom, top)[0] == pytest.approx(-np.log(1e-20), rel=1e-12)


def test_gradient():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.1, 1.0, (4, 3, 1, 1))
    check_gradient(LOSS, [p, np.array([2, 0, 1, 1.0])])


def test_gradient_only_at_true_class_and_scaled_by_loss_weight():
    p = np.array([[0.25, 0.5]])
    layer, bottom, top = build(LOSS, [p, np.array([1.0])])
    forward(layer, bottom, top)
    top[0].diff = np.array(3.0)
    layer.backward(top, [True, False], bottom)
    np.testing.assert_allclose(bottom[0].diff, [[0.0, -3.0 / 0.5]])


def test_several_labels_per_sample_are_refused():
    with pytest.raises(LayerError, match="one label per sample"):
        build(LOSS, [np.ones((2, 3)), np.ones((2, 2))])
