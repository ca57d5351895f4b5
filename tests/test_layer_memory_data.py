"""MemoryData: arrays from Python served batch by batch (pycaffe's set_input_arrays)."""
import logging

import numpy as np
import pytest
from google.protobuf import text_format

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.errors import DualnetError, LayerError
from layer_harness import build, forward

MEMORY = ('name: "mem" type: "MemoryData" top: "data" top: "label" '
          'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 3 } %s')


def arrays(n=6):
    data = np.arange(n * 6, dtype=np.float32).reshape(n, 1, 2, 3)
    labels = np.arange(n, dtype=np.float32) + 10
    return data, labels


def memory_layer(extra="", phase=pb.TRAIN):
    return build(MEMORY % extra, [], phase=phase, dtype=np.float32)


def test_tops_have_the_declared_shape():
    _, _, top = memory_layer()
    assert top[0].shape == (2, 1, 2, 3) and top[1].shape == (2,)


def test_forward_serves_consecutive_batches_and_cycles():
    layer, _, top = memory_layer()
    data, labels = arrays(6)
    layer.set_input_arrays(data, labels)
    for start in (0, 2, 4, 0):
        got_data, got_labels = forward(layer, [], top)
        np.testing.assert_array_equal(got_data, data[start:start + 2])
        np.testing.assert_array_equal(got_labels, [10 + start, 11 + start])
        assert layer.last_indices.tolist() == [start, start + 1]


def test_labels_may_be_n_by_1_by_1_by_1():
    layer, _, top = memory_layer()
    data, labels = arrays(2)
    layer.set_input_arrays(data, labels.reshape(2, 1, 1, 1))
    np.testing.assert_array_equal(forward(layer, [], top)[1], [10, 11])


def test_reset_with_n_uses_the_first_n_samples():
    layer, _, top = memory_layer()
    data, labels = arrays(6)
    layer.reset(data, labels, 4)
    seen = [forward(layer, [], top)[1].tolist() for _ in range(3)]
    assert seen == [[10, 11], [12, 13], [10, 11]]


def test_set_input_arrays_restarts_from_the_first_sample():
    layer, _, top = memory_layer()
    layer.set_input_arrays(*arrays(4))
    forward(layer, [], top)
    layer.set_input_arrays(*arrays(4))
    assert forward(layer, [], top)[1].tolist() == [10, 11]


@pytest.mark.parametrize("make, message", [
    (lambda d, l: (d.astype(np.float64), l), "data must be a C-contiguous float32 array"),
    (lambda d, l: (np.asfortranarray(d.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2), l), "C-contiguous"),
    (lambda d, l: (d, l.astype(np.int64)), "labels must be a C-contiguous float32"),
    (lambda d, l: (d.reshape(6, 1, 3, 2), l), r"data must be N x 1 x 2 x 3 \(memory_data_param\), got \(6, 1, 3, 2\)"),
    (lambda d, l: (d, l[:5]), "data has 6 samples but labels has 5"),
    (lambda d, l: (d[:5], l[:5]), r"number of samples \(5\) must be a multiple of batch_size \(2\)"),
])
def test_bad_arrays_are_refused_with_a_reason(make, message):
    layer, _, _ = memory_layer()
    with pytest.raises(LayerError, match=message):
        layer.set_input_arrays(*make(*arrays(6)))


def test_forward_before_any_data_says_what_to_call():
    layer, _, top = memory_layer()
    with pytest.raises(LayerError, match="call set_input_arrays"):
        forward(layer, [], top)


def test_all_four_sizes_are_required():
    with pytest.raises(LayerError, match="must be specified and positive"):
        build('type: "MemoryData" top: "d" top: "l" memory_data_param { batch_size: 2 channels: 1 height: 2 }',
              [], dtype=np.float32)


def test_arrays_are_not_transformed_on_reset_as_in_caffe():
    layer, _, top = memory_layer("transform_param { scale: 0.5 }")
    data, labels = arrays(2)
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("dualnet.data").addHandler(handler)
    try:
        layer.set_input_arrays(data, labels)
    finally:
        logging.getLogger("dualnet.data").removeHandler(handler)
    assert any("does not transform array data" in w for w in warnings)
    np.testing.assert_array_equal(forward(layer, [], top)[0], data)


def test_add_arrays_applies_transform_param():
    text = ('type: "MemoryData" top: "d" top: "l" memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 }'
            ' transform_param { crop_size: 2 scale: 0.5 mean_value: 1 }')
    layer, _, top = build(text, [], phase=pb.TEST, dtype=np.float32)
    raw = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    layer.add_arrays(raw, [3, 4])
    data, labels = forward(layer, [], top)
    # centre window: offsets (4 - 2) // 2 = 1
    np.testing.assert_array_equal(data, (raw[:, :, 1:3, 1:3].astype(np.float32) - 1) * 0.5)
    np.testing.assert_array_equal(labels, [3, 4])


def test_add_arrays_refuses_images_that_do_not_transform_to_the_layer_shape():
    layer, _, _ = memory_layer()
    with pytest.raises(LayerError, match="transformed images are 1x4x4"):
        layer.add_arrays(np.zeros((2, 1, 4, 4), np.uint8), [0, 1])


def test_in_a_net_set_input_arrays_feeds_forward():
    net_param = text_format.Parse(f"layer {{ {MEMORY % ''} }}", pb.NetParameter())
    net = dualnet.Net(net_param, dualnet.TEST)
    data, labels = arrays(4)
    net.layers[0].set_input_arrays(data, labels)
    net.forward()
    net.forward()
    np.testing.assert_array_equal(net.blobs["data"].data, data[2:4])
    np.testing.assert_array_equal(net.blobs["label"].data, [12, 13])


def test_in_a_net_forward_without_data_names_the_layer():
    net_param = text_format.Parse(f"layer {{ {MEMORY % ''} }}", pb.NetParameter())
    net = dualnet.Net(net_param, dualnet.TEST)
    with pytest.raises(DualnetError, match="mem.*set_input_arrays"):
        net.forward()
