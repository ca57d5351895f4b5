"""Split: one bottom shared by several tops; the bottom's gradient is the sum of theirs."""
import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

SPLIT = 'type: "Split"'


def test_every_top_carries_the_bottom():
    x = np.arange(6.0).reshape(2, 3)
    layer, bottom, top = build(SPLIT, [x], num_tops=3)
    for out in forward(layer, bottom, top):
        np.testing.assert_array_equal(out, x)


def test_bottom_diff_is_the_sum_of_the_top_diffs():
    layer, bottom, top = build(SPLIT, [np.zeros((2, 2))], num_tops=3)
    forward(layer, bottom, top)
    for k, blob in enumerate(top):
        blob.diff = np.full((2, 2), 10.0 ** k)            # 1, 10, 100
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.full((2, 2), 111.0))


def test_backward_leaves_the_bottom_diff_alone_when_not_asked():
    layer, bottom, top = build(SPLIT, [np.zeros(3)], num_tops=2)
    forward(layer, bottom, top)
    bottom[0].diff[...] = 7
    for blob in top:
        blob.diff = np.ones(3)
    layer.backward(top, [False], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.full(3, 7.0))


@pytest.mark.parametrize("tops", [1, 2, 3])
def test_gradient(tops):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    check_gradient(SPLIT, [x], num_tops=tops)


def test_needs_a_top():
    with pytest.raises(LayerError, match="at least 1 blob as top"):
        build(SPLIT, [np.ones(2)], num_tops=0)
