import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

SILENCE = 'type: "Silence"'


def test_takes_any_bottoms_and_makes_no_tops():
    layer, bottom, top = build(SILENCE, [np.ones((2, 3)), np.ones(4)], num_tops=0)
    assert forward(layer, bottom, top) == []


def test_backward_gives_zero_diffs_where_asked():
    layer, bottom, top = build(SILENCE, [np.ones((2, 3)), np.ones(4)], num_tops=0)
    bottom[1].diff[...] = 5
    layer.backward(top, [True, False], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.zeros((2, 3)))
    np.testing.assert_array_equal(bottom[1].diff, 5 * np.ones(4))


def test_a_top_is_refused():
    with pytest.raises(LayerError, match="produces 0 blobs as top"):
        build(SILENCE, [np.ones(2)], num_tops=1)


def test_gradient_is_zero():
    check_gradient(SILENCE, [np.random.default_rng(0).standard_normal((2, 3))], num_tops=0)
