"""Input: tops the user fills, shaped by input_param (one shape for all, one per top, or none)."""
import numpy as np
import pytest

import dualnet
from dualnet.errors import LayerError, NetError
from dualnet.io import parse_net_text
from layer_harness import build

INPUT = 'type: "Input" input_param { %s }'


def test_one_shape_shapes_every_top():
    _, _, top = build(INPUT % "shape { dim: 2 dim: 3 }", [], num_tops=3)
    assert [blob.shape for blob in top] == [(2, 3)] * 3


def test_one_shape_per_top_shapes_each_top():
    _, _, top = build(INPUT % "shape { dim: 2 dim: 3 } shape { dim: 2 } shape { dim: 4 dim: 1 dim: 5 }", [],
                      num_tops=3)
    assert [blob.shape for blob in top] == [(2, 3), (2,), (4, 1, 5)]


def test_no_shape_leaves_the_tops_for_the_user_to_reshape():
    _, _, top = build(INPUT % "", [], num_tops=2)
    assert [blob.shape for blob in top] == [(), ()]


def test_another_number_of_shapes_is_refused():
    with pytest.raises(LayerError) as caught:
        build(INPUT % "shape { dim: 1 } shape { dim: 2 }", [], num_tops=3)
    assert str(caught.value) == "input_param must give 1 shape or one per top (3), got 2"


def test_the_refusal_in_a_net_names_file_line_and_layer():
    text = 'layer {\n  name: "in"\n  type: "Input"\n  top: "a"\n  top: "b"\n  top: "c"\n' \
           '  input_param { shape { dim: 1 } shape { dim: 2 } }\n}\n'
    param, origin = parse_net_text(text, "net.prototxt")
    with pytest.raises(NetError) as caught:
        dualnet.Net(param, dualnet.TEST, origin=origin)
    assert str(caught.value) == ("net.prototxt:1: layer 'in' (Input): "
                                 "input_param must give 1 shape or one per top (3), got 2")


def test_bottoms_are_refused():
    with pytest.raises(LayerError, match="takes 0 blobs as bottom, got 1"):
        build(INPUT % "shape { dim: 1 }", [np.ones(1)], num_tops=1)


def test_backward_keeps_the_top_diffs_for_the_user_to_read():
    # No bottoms and no parameters, so no gradient to check; what backward must do is leave
    # the diffs the layers above wrote, which net.backward() returns for the inputs.
    layer, bottom, top = build(INPUT % "shape { dim: 2 }", [], num_tops=2)
    top[0].diff[...] = [1.5, -2.0]
    top[1].diff[...] = [3.0, 0.25]
    layer.backward(top, [], bottom)
    assert layer.blobs == []
    np.testing.assert_array_equal(top[0].diff, [1.5, -2.0])
    np.testing.assert_array_equal(top[1].diff, [3.0, 0.25])
