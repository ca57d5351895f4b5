import numpy as np
import pytest

from layer_harness import build, check_gradient, forward

LOSS = 'type: "NormalizedEuclideanLoss"'


def test_loss_divides_each_sample_by_its_target_norm():
    y = np.array([[1.0, 2.0], [0.0, 0.0]])
    t = np.array([[4.0, 6.0], [3.0, 4.0]])   # norms sqrt(52) and 5
    layer, bottom, top = build(LOSS, [y, t])
    expected = ((9 + 16) / np.sqrt(52) + (9 + 16) / 5) / (2 * 2)
    assert forward(layer, bottom, top)[0] == pytest.approx(expected)


def test_gradient_with_respect_to_predictions():
    rng = np.random.default_rng(0)
    check_gradient(LOSS, [rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 4))], check_bottoms=[0])
