import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

CLIP = 'type: "Clip" clip_param {{ min: {} max: {} }}'


def test_forward_clamps_to_bounds():
    layer, bottom, top = build(CLIP.format(-1, 2), [np.array([-3.0, -1.0, 0.5, 2.0, 7.0])])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], [-1, -1, 0.5, 2, 2])


def test_gradient_passes_inside_and_at_the_bounds_only():
    layer, bottom, top = build(CLIP.format(-1, 2), [np.array([-3.0, -1.0, 0.5, 2.0, 7.0])])
    forward(layer, bottom, top)
    top[0].diff = np.full(5, 4.0)
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, [0, 4, 4, 4, 0])


def test_equal_bounds_are_allowed():
    layer, bottom, top = build(CLIP.format(0.5, 0.5), [np.array([-1.0, 3.0])])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], [0.5, 0.5])


@pytest.mark.parametrize("param,missing", [
    ("clip_param { min: 0 }", "max not given"),
    ("clip_param { max: 1 }", "min not given"),
    ("", "min and max not given"),
])
def test_missing_bound_is_refused(param, missing):
    with pytest.raises(LayerError, match=missing):
        build(f'type: "Clip" {param}', [np.ones(3)])


def test_min_above_max_is_refused():
    with pytest.raises(LayerError, match=r"min \(2\) is greater than clip_param.max \(1\)"):
        build(CLIP.format(2, 1), [np.ones(3)])


def test_keeps_float32():
    layer, bottom, top = build(CLIP.format(-0.5, 0.5), [np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("in_place", [False, True])
def test_gradient(in_place):
    x = np.random.default_rng(0).uniform(-2, 2, (2, 3, 4))
    x = np.where(np.abs(np.abs(x) - 1) < 0.05, 0.5, x)    # away from the bounds -1 and 1
    check_gradient(CLIP.format(-1, 1), [x], in_place=in_place)
