import numpy as np
import pytest
from google.protobuf import text_format

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.errors import LayerError, NetError
from layer_harness import build, check_gradient, forward

BN = 'type: "BatchNorm" batch_norm_param { %s }'


def per_channel(x):
    """The values of each channel c, over every sample and position."""
    return [x[:, c].ravel() for c in range(x.shape[1])]


def test_blobs_are_mean_sum_variance_sum_and_scale_factor_all_zero():
    layer, _, _ = build(BN % "", [np.ones((2, 3, 4))])
    assert [b.shape for b in layer.blobs] == [(3,), (3,), (1,)]
    assert all((b.data == 0).all() for b in layer.blobs)


def test_train_normalises_each_channel_with_batch_statistics():
    x = 5 + 3 * np.random.default_rng(0).standard_normal((4, 3, 2, 5))
    layer, bottom, top = build(BN % "eps: 0.01", [x], phase=pb.TRAIN)
    y = forward(layer, bottom, top)[0]
    for c, values in enumerate(per_channel(x)):
        mean = values.sum() / values.size
        biased_var = ((values - mean) ** 2).sum() / values.size
        expected = (x[:, c] - mean) / np.sqrt(biased_var + np.float32(0.01))
        np.testing.assert_allclose(y[:, c], expected, rtol=1e-12)


def test_running_sums_follow_caffe_moving_average():
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2, 2, 3)), 2 + rng.standard_normal((2, 2, 3))
    layer, bottom, top = build(BN % "moving_average_fraction: 0.5", [x1])
    forward(layer, bottom, top, [x1])
    forward(layer, bottom, top, [x2])
    mean_sum, var_sum, scale_factor = (b.data for b in layer.blobs)
    assert scale_factor[0] == 1 * 0.5 + 1
    for c in range(2):
        a, b = per_channel(x1)[c], per_channel(x2)[c]
        np.testing.assert_allclose(mean_sum[c], 0.5 * a.mean() + b.mean(), rtol=1e-12)
        # accumulated with the unbiased (m - 1) estimator, m = 6
        np.testing.assert_allclose(var_sum[c], 0.5 * np.var(a, ddof=1) + np.var(b, ddof=1), rtol=1e-12)


def test_global_stats_divide_the_sums_by_the_scale_factor():
    x = np.random.default_rng(2).standard_normal((3, 2, 4))
    layer, bottom, top = build(BN % "use_global_stats: true eps: 0", [x], phase=pb.TRAIN)
    layer.blobs[0].data[...] = [2.0, 4.0]
    layer.blobs[1].data[...] = [8.0, 18.0]
    layer.blobs[2].data[...] = 2.0
    y = forward(layer, bottom, top)[0]
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 1) / 2, rtol=1e-14)
    np.testing.assert_allclose(y[:, 1], (x[:, 1] - 2) / 3, rtol=1e-14)
    assert layer.blobs[2].data[0] == 2.0                   # global statistics are not updated


def test_zero_scale_factor_means_zero_statistics():
    x = np.random.default_rng(3).standard_normal((3, 2))
    layer, bottom, top = build(BN % "eps: 0.25", [x], phase=pb.TEST)
    layer.blobs[0].data[...] = 7.0
    np.testing.assert_allclose(forward(layer, bottom, top)[0], x / np.sqrt(0.25), rtol=1e-15)


@pytest.mark.parametrize("phase,param,expected", [
    (pb.TRAIN, "", False), (pb.TEST, "", True),
    (pb.TEST, "use_global_stats: false", False), (pb.TRAIN, "use_global_stats: true", True),
])
def test_use_global_stats_defaults_to_the_phase(phase, param, expected):
    layer, _, _ = build(BN % param, [np.ones((2, 3))], phase=phase)
    assert layer.use_global_stats is expected


def test_statistics_get_lr_mult_0_param_specs():
    layer, _, _ = build(BN % "", [np.ones((2, 3))])
    assert [spec.lr_mult for spec in layer.param.param] == [0, 0, 0]


def test_given_lr_mult_0_specs_are_accepted():
    layer, _, _ = build('param { lr_mult: 0 } param { lr_mult: 0 } ' + BN % "", [np.ones((2, 3))])
    assert [spec.lr_mult for spec in layer.param.param] == [0, 0, 0]


def test_learned_statistics_are_refused():
    with pytest.raises(LayerError, match="blob 1 is the running variance.*lr_mult: 0"):
        build('param { lr_mult: 0 } param { lr_mult: 1 } ' + BN % "", [np.ones((2, 3))])


def test_a_net_never_learns_the_statistics():
    net_param = text_format.Parse("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 } } }
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" }
    """, pb.NetParameter())
    net = dualnet.Net(net_param, dualnet.TRAIN)
    bn = net.layer_dict["bn"]
    assert bn.param_propagate_down == [False, False, False]
    assert [net.params_lr[net.learnable_params.index(b)] for b in bn.blobs] == [0, 0, 0]


def test_a_net_refuses_learned_statistics_naming_the_layer():
    net_param = text_format.Parse("""
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 4 dim: 3 } } }
        layer { name: "bn" type: "BatchNorm" bottom: "data" top: "out" param { lr_mult: 1 } }
    """, pb.NetParameter())
    with pytest.raises(NetError, match="'bn'.*running mean"):
        dualnet.Net(net_param, dualnet.TRAIN)


def test_changed_channel_count_is_refused():
    layer, bottom, top = build(BN % "", [np.ones((2, 3, 4))])
    bottom[0].reshape(2, 5, 4)
    with pytest.raises(LayerError, match="set up for 3 channels"):
        layer.reshape(bottom, top)


def test_keeps_float32():
    layer, bottom, top = build(BN % "", [np.arange(12.0).reshape(4, 3)], dtype=np.float32)
    assert forward(layer, bottom, top)[0].dtype == np.float32
    assert layer.blobs[0].data.dtype == np.float32


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 2, 3), (6,)])
@pytest.mark.parametrize("in_place", [False, True])
def test_gradient_with_batch_statistics(shape, in_place):
    x = np.random.default_rng(4).standard_normal(shape)
    check_gradient(BN % "", [x], phase=pb.TRAIN, in_place=in_place, check_params=False)


@pytest.mark.parametrize("in_place", [False, True])
def test_gradient_with_global_statistics(in_place):
    x = np.random.default_rng(5).standard_normal((3, 2, 2, 3))
    blobs = "blobs { shape { dim: 2 } data: 1 data: -2 } blobs { shape { dim: 2 } data: 3 data: 0.5 } " \
            "blobs { shape { dim: 1 } data: 1.5 }"
    layer = check_gradient(f"{blobs} {BN % 'use_global_stats: true'}", [x], in_place=in_place, check_params=False)
    np.testing.assert_array_equal(layer.blobs[2].data, [1.5])
