"""DummyData: filler-made tops; constant ones filled once, the others at every forward."""
import numpy as np
import pytest
from google.protobuf import text_format

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.errors import LayerError
from layer_harness import build, forward


def dummy(param, tops=1):
    names = " ".join(f'top: "t{i}"' for i in range(tops))
    return build(f'name: "dummy" type: "DummyData" {names} dummy_data_param {{ {param} }}', [], dtype=np.float32)


def test_without_filler_tops_are_zeros_of_the_shape():
    layer, _, top = dummy("shape { dim: 2 dim: 3 dim: 4 }")
    (data,) = forward(layer, [], top)
    assert data.shape == (2, 3, 4) and not data.any()


def test_constant_filler_fills_once_at_setup():
    layer, _, top = dummy('shape { dim: 3 } data_filler { type: "constant" value: 2.5 }')
    np.testing.assert_array_equal(top[0].data, [2.5, 2.5, 2.5])
    top[0].data[...] = 7  # a constant top is not refilled (Caffe's refill rule)
    np.testing.assert_array_equal(forward(layer, [], top)[0], [7, 7, 7])


def test_random_filler_refills_at_every_forward():
    layer, _, top = dummy('shape { dim: 1000 } data_filler { type: "uniform" min: -2 max: 3 }')
    first = forward(layer, [], top, seed=1)[0]
    second = forward(layer, [], top, seed=2)[0]
    assert not np.array_equal(first, second)
    for values in (first, second):
        assert values.dtype == np.float32 and values.min() >= -2 and values.max() <= 3


def test_one_shape_and_one_filler_serve_every_top():
    layer, _, top = dummy('shape { dim: 2 dim: 2 } data_filler { type: "constant" value: 1 }', tops=3)
    for blob in top:
        np.testing.assert_array_equal(blob.data, np.ones((2, 2)))


def test_one_shape_and_one_filler_per_top():
    layer, _, top = dummy('shape { dim: 2 } shape { dim: 3 dim: 1 } '
                          'data_filler { type: "constant" value: 4 } data_filler { type: "gaussian" std: 0.1 }', tops=2)
    a, b = forward(layer, [], top)
    np.testing.assert_array_equal(a, [4, 4])
    assert b.shape == (3, 1) and b.any()


def test_legacy_num_channels_height_width():
    layer, _, top = dummy("num: 5 num: 6 channels: 2 height: 3 width: 4", tops=2)
    assert top[0].shape == (5, 2, 3, 4) and top[1].shape == (6, 2, 3, 4)


@pytest.mark.parametrize("param, tops, message", [
    ("shape { dim: 2 } num: 2 channels: 1 height: 1 width: 1", 1, "both shape and the legacy"),
    ("shape { dim: 1 } shape { dim: 2 }", 3, "gives 2 shapes; give 1 or one per top \\(3\\)"),
    ("num: 1 num: 2 channels: 1 height: 1 width: 1", 3, "gives 2 'num'"),
    ("", 1, "gives 0 shapes"),
    ('shape { dim: 1 } data_filler { } data_filler { }', 3, "gives 2 data_filler"),
    ('shape { dim: 1 } data_filler { type: "gausian" }', 1, "did you mean 'gaussian'"),
])
def test_inconsistent_parameters_are_refused(param, tops, message):
    with pytest.raises(LayerError, match=message):
        dummy(param, tops)


def test_in_a_net_tops_are_float32():
    net_param = text_format.Parse(
        'layer { name: "d" type: "DummyData" top: "x" '
        'dummy_data_param { shape { dim: 2 dim: 3 } data_filler { type: "gaussian" } } }', pb.NetParameter())
    net = dualnet.Net(net_param, dualnet.TRAIN)
    net.forward()
    assert net.blobs["x"].data.dtype == np.float32 and net.blobs["x"].data.shape == (2, 3)
