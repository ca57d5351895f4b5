import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

LOSS = 'type: "HingeLoss" %s'


def reference_loss(x, labels, power):
    total = 0.0
    for n in range(x.shape[0]):
        for k in range(x.shape[1]):
            sign = -1 if k == labels[n] else 1
            total += max(0.0, 1 + sign * x[n, k]) ** power
    return total / x.shape[0]


def test_hand_computed_l1():
    x = np.array([[2.0, -0.5, 0.5]])
    # label 0: max(0, 1 - 2) = 0; others max(0, 1 - 0.5) = 0.5, max(0, 1 + 0.5) = 1.5
    layer, bottom, top = build(LOSS % "", [x, np.array([0.0])])
    assert forward(layer, bottom, top)[0] == pytest.approx(2.0)


@pytest.mark.parametrize("norm,power", [("L1", 1), ("L2", 2)])
def test_forward_matches_reference(norm, power):
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2.0])
    layer, bottom, top = build(LOSS % f"hinge_loss_param {{ norm: {norm} }}", [x, labels])
    assert forward(layer, bottom, top)[0] == pytest.approx(reference_loss(x, labels, power), rel=1e-12)


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_gradient(norm):
    # scores on a grid away from the kinks at +-1
    rng = np.random.default_rng(1)
    x = rng.choice([-1.6, -0.4, 0.3, 1.5, 2.2], size=(4, 3)) + rng.uniform(-0.05, 0.05, (4, 3))
    check_gradient(LOSS % f"hinge_loss_param {{ norm: {norm} }}", [x.reshape(4, 3, 1, 1), np.array([0, 2, 1, 2.0])])


def test_label_out_of_range_is_refused():
    layer, bottom, top = build(LOSS % "", [np.ones((2, 3)), np.array([0, 3.0])])
    with pytest.raises(LayerError, match="outside 0..2"):
        forward(layer, bottom, top)
