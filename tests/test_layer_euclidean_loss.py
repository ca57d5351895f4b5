import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

LOSS = 'type: "EuclideanLoss"'


def test_hand_computed_loss_halves_mean_over_batch():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[0.0, 0.0], [3.0, 2.0]])
    layer, bottom, top = build(LOSS, [a, b])
    # squared distances 1 + 4 = 5 and 0 + 4 = 4; 9 / (2 * 2)
    assert forward(layer, bottom, top)[0] == pytest.approx(2.25, rel=1e-12)


def test_normaliser_is_batch_size_not_count():
    a = np.ones((4, 3, 2, 2))
    layer, bottom, top = build(LOSS, [a, np.zeros((4, 12))])
    assert forward(layer, bottom, top)[0] == pytest.approx(4 * 12 / (2 * 4))


def test_gradient_reaches_both_bottoms():
    rng = np.random.default_rng(0)
    check_gradient(LOSS, [rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 4))], check_bottoms=[0, 1])


def test_gradients_have_opposite_signs_and_scale_with_loss_weight():
    a, b = np.array([[3.0, 1.0]]), np.array([[1.0, 2.0]])
    layer, bottom, top = build(LOSS, [a, b])
    forward(layer, bottom, top)
    top[0].diff = np.array(0.5)
    layer.backward(top, [True, True], bottom)
    np.testing.assert_allclose(bottom[0].diff, 0.5 * (a - b))
    np.testing.assert_allclose(bottom[1].diff, -0.5 * (a - b))


def test_force_backward_allowed_on_second_bottom():
    layer, _, _ = build(LOSS, [np.ones((1, 2)), np.ones((1, 2))])
    assert layer.allow_force_backward(1)


def test_different_dimensions_are_refused():
    with pytest.raises(LayerError, match="same dimension"):
        build(LOSS, [np.ones((2, 3)), np.ones((2, 4))])


def test_different_batch_sizes_are_refused():
    with pytest.raises(LayerError, match="same first dimension"):
        build(LOSS, [np.ones((2, 3)), np.ones((3, 2))])


def test_loss_and_gradient_taken_a_block_at_a_time_match_the_whole_array(monkeypatch):
    # squared_distance sums blocks of BLOCK values; 3 splits each 2 x 5 array into 4 blocks
    import dualnet.layers.euclidean_loss as euclidean_loss

    monkeypatch.setattr(euclidean_loss, "BLOCK", 3)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    layer, bottom, top = build(LOSS, [a, b])
    assert forward(layer, bottom, top)[0] == pytest.approx(((a - b) ** 2).sum() / 4, rel=1e-12)
    check_gradient(LOSS, [a, b], check_bottoms=[0, 1])
