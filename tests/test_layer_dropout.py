import numpy as np
import pytest

from dualnet import dualnet_pb2 as pb
from dualnet.errors import LayerError
from layer_harness import build, check_gradient, forward

DROPOUT = 'type: "Dropout" dropout_param {{ dropout_ratio: {} }}'


def test_test_phase_is_identity():
    x = np.random.default_rng(0).standard_normal((4, 5))
    layer, bottom, top = build(DROPOUT.format(0.5), [x], phase=pb.TEST)
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], x)


def test_train_keeps_one_minus_ratio_of_units_scaled_up():
    x = np.full((100, 1000), 2.0)
    layer, bottom, top = build(DROPOUT.format(0.25), [x], phase=pb.TRAIN)
    y = forward(layer, bottom, top, seed=7)[0]
    kept = y != 0
    # 1e5 Bernoulli(0.75) draws: standard deviation of the kept fraction is 0.0014.
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(y[kept], 2.0 / 0.75, rtol=1e-15)
    assert y.mean() == pytest.approx(2.0, rel=0.02)       # the expectation is unchanged


def test_mask_comes_from_the_dualnet_generator():
    x = np.ones((20, 20))
    layer, bottom, top = build(DROPOUT.format(0.5), [x])
    first, again, other = (forward(layer, bottom, top, seed=s)[0] for s in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()


def test_backward_uses_the_forward_mask_and_scale():
    x = np.ones((10, 10))
    layer, bottom, top = build(DROPOUT.format(0.75), [x])
    y = forward(layer, bottom, top)[0]
    top[0].diff = np.full(x.shape, 3.0)
    layer.backward(top, [True], bottom)
    np.testing.assert_array_equal(bottom[0].diff, np.where(y != 0, 3.0 * 4, 0.0))


def test_ratio_0_keeps_everything():
    x = np.arange(6.0)
    layer, bottom, top = build(DROPOUT.format(0), [x])
    np.testing.assert_array_equal(forward(layer, bottom, top)[0], x)


@pytest.mark.parametrize("ratio", [1, 1.5, -0.1])
def test_ratio_outside_0_to_1_is_refused(ratio):
    with pytest.raises(LayerError, match=r"dropout_ratio must be in \[0, 1\)"):
        build(DROPOUT.format(ratio), [np.ones(3)])


def test_keeps_float32():
    layer, bottom, top = build(DROPOUT.format(0.5), [np.ones((2, 3))], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("phase", [pb.TRAIN, pb.TEST])
def test_gradient(phase, in_place):
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    check_gradient(DROPOUT.format(0.4), [x], phase=phase, in_place=in_place)
