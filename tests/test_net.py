"""The Net follows Caffe's Net::Init and pycaffe's surface.

Small nets are written as prototxt text, built with parse_net_text + Net,
and checked against numbers worked out here: which layers a phase, level or
stage keeps; the Split layers Caffe would insert and their names; that
gradients add up across a split; loss weights on any top; which layers run
backward (force_backward, propagate_down, no loss above); parameter sharing
by name; lr/decay multipliers; and pycaffe's forward/backward/inputs/outputs.
"""
from pathlib import Path

import numpy as np
import pytest

import dualnet
from dualnet import TEST, TRAIN
from dualnet.errors import DualnetError, NetError
from dualnet.io import parse_net_text


def net_from(text, phase=TRAIN, **options):
    param, origin = parse_net_text(text, "net.prototxt")
    return dualnet.Net(param, phase, origin=origin, **options)


def error_of(text, phase=TRAIN, **options):
    with pytest.raises(NetError) as caught:
        net_from(text, phase, **options)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("net.prototxt:")
    return message


def data(name="data", shape=(2, 3)):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'


def ip(name, bottom, num_output, extra="", top=None, bias=True):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top or name}" {extra} '
            f'inner_product_param {{ num_output: {num_output} bias_term: {"true" if bias else "false"} }} }}\n')


def relu(name, bottom, top, extra=""):
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{bottom}" top: "{top}" {extra} }}\n'


def kept(net):
    """Names of the layers a net built, without the Splits it inserted."""
    return [name for name, layer in net.layer_dict.items() if layer.type != "Split"]


def set_params(net, name, *arrays):
    for blob, array in zip(net.params[name], arrays):
        blob.data[...] = array


def to_float64(net):
    """Run the net in float64 (as the layer gradient checks do) for finite differences."""
    for blob in list(net.blobs.values()) + net.learnable_params:
        blob.astype(np.float64)


def loss_at(net):
    net.forward()
    return net.loss


def numeric_gradient(net, blob_name, eps=1e-6):
    """d loss / d blob by central differences of net.forward()'s loss."""
    x = net.blobs[blob_name].data
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + eps
        plus = loss_at(net)
        x[index] = original - eps
        minus = loss_at(net)
        x[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


X = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]], np.float32)


# ---------------------------------------------------------------- filtering by phase, level, stage

RULES = data() + "".join([
    relu("train_only", "data", "a", "include { phase: TRAIN }"),
    relu("test_only", "data", "b", "include { phase: TEST }"),
    relu("not_in_test", "data", "c", "exclude { phase: TEST }"),
    relu("level_1_up", "data", "d", "include { min_level: 1 }"),
    relu("level_0_down", "data", "e", "include { max_level: 0 }"),
    relu("stages_a_and_b", "data", "f", 'include { stage: "a" stage: "b" }'),
    relu("unless_deploy", "data", "g", 'include { not_stage: "deploy" }'),
    relu("train_or_stage_x", "data", "h", 'include { phase: TRAIN } include { stage: "x" }'),
    relu("no_rules", "data", "i"),
])


def test_include_and_exclude_by_phase():
    train, test = kept(net_from(RULES, TRAIN)), kept(net_from(RULES, TEST))
    assert "train_only" in train and "train_only" not in test
    assert "test_only" in test and "test_only" not in train
    assert "not_in_test" in train and "not_in_test" not in test
    assert "no_rules" in train and "no_rules" in test


def test_min_level_and_max_level():
    assert {"level_1_up", "level_0_down"} & set(kept(net_from(RULES, level=0))) == {"level_0_down"}
    assert {"level_1_up", "level_0_down"} & set(kept(net_from(RULES, level=1))) == {"level_1_up"}
    assert {"level_1_up", "level_0_down"} & set(kept(net_from(RULES, level=5))) == {"level_1_up"}


def test_a_rule_needs_every_stage_it_names():
    assert "stages_a_and_b" not in kept(net_from(RULES, stages=["a"]))
    assert "stages_a_and_b" in kept(net_from(RULES, stages=["b", "a"]))


def test_not_stage_excludes_when_the_stage_is_set():
    assert "unless_deploy" in kept(net_from(RULES))
    assert "unless_deploy" not in kept(net_from(RULES, stages=["deploy"]))


def test_any_one_of_several_include_rules_is_enough():
    assert "train_or_stage_x" in kept(net_from(RULES, TRAIN))
    assert "train_or_stage_x" not in kept(net_from(RULES, TEST))
    assert "train_or_stage_x" in kept(net_from(RULES, TEST, stages=["x"]))


def test_the_files_stages_are_kept_and_phase_and_level_are_replaced():
    text = 'state { phase: TEST level: 7 stage: "a" }\n' + RULES
    net = net_from(text, TRAIN, stages=["b"])
    assert net.phase == TRAIN
    assert "stages_a_and_b" in kept(net) and "train_only" in kept(net)
    assert "level_1_up" not in kept(net)


def test_include_and_exclude_on_one_layer_are_refused():
    message = error_of(data() + relu("r", "data", "r", 'include { phase: TRAIN } exclude { phase: TEST }'))
    assert message.startswith("net.prototxt:2:") and "layer 'r'" in message and "not both" in message


# ---------------------------------------------------------------- split insertion

def test_a_blob_read_by_two_layers_gets_a_split_named_as_caffe_names_it():
    net = net_from(data() + ip("ip1", "data", 2) + ip("ip2", "data", 2))
    assert list(net.layer_dict) == ["data", "data_data_0_split", "ip1", "ip2"]
    assert net.top_names["data_data_0_split"] == ["data_data_0_split_0", "data_data_0_split_1"]
    assert net.bottom_names["ip1"] == ["data_data_0_split_0"]
    assert net.bottom_names["ip2"] == ["data_data_0_split_1"]


def test_split_names_carry_the_producer_and_its_top_index():
    text = ('layer { name: "in" type: "Input" top: "x" top: "y" '
            'input_param { shape { dim: 2 dim: 3 } } }\n'
            + ip("a", "y", 1) + ip("b", "y", 1) + ip("c", "y", 1) + ip("d", "x", 1))
    net = net_from(text)
    assert net.top_names["y_in_1_split"] == ["y_in_1_split_0", "y_in_1_split_1", "y_in_1_split_2"]
    assert [net.bottom_names[n][0] for n in "abcd"] == ["y_in_1_split_0", "y_in_1_split_1", "y_in_1_split_2", "x"]


def test_a_blob_last_written_in_place_is_split_under_the_in_place_layer():
    net = net_from(data() + ip("fc", "data", 2, top="h") + relu("act", "h", "h")
                   + ip("a", "h", 1) + ip("b", "h", 1))
    assert "h_act_0_split" in net.layer_dict
    assert net.bottom_names["h_act_0_split"] == ["h"]
    assert net.bottom_names["act"] == ["h"]


def test_gradients_add_up_across_a_split():
    # h = W0 x + b0 feeds two branches: L = sum(Wa h + ba) + sum(sigmoid(h)),
    # so dL/dh = sum_j Wa[j, :] + s (1 - s).
    text = ("force_backward: true\n" + data() + ip("fc", "data", 4, top="h")
            + ip("a", "h", 2, "loss_weight: 1")
            + 'layer { name: "s" type: "Sigmoid" bottom: "h" top: "s" loss_weight: 1 }\n')
    net = net_from(text)
    to_float64(net)
    rng = np.random.default_rng(0)
    set_params(net, "fc", rng.standard_normal((4, 3)), rng.standard_normal(4))
    set_params(net, "a", rng.standard_normal((2, 4)), rng.standard_normal(2))
    net.forward(data=X)
    net.backward()
    h = X.astype(np.float64) @ net.params["fc"][0].data.T + net.params["fc"][1].data
    s = 1 / (1 + np.exp(-h))
    expected_dh = net.params["a"][0].data.sum(axis=0) + s * (1 - s)
    assert np.allclose(net.blobs["h"].diff, expected_dh, rtol=1e-12)
    assert np.allclose(net.blobs["data"].diff, numeric_gradient(net, "data"), rtol=1e-6, atol=1e-8)


def test_a_layer_reading_one_blob_twice_gets_both_gradients():
    # y = x + x through Eltwise SUM: dL/dx = 2 for L = sum(y).
    text = ("force_backward: true\n" + data() +
            'layer { name: "twice" type: "Eltwise" bottom: "data" bottom: "data" top: "y" loss_weight: 1 }\n')
    net = net_from(text)
    assert net.bottom_names["twice"] == ["data_data_0_split_0", "data_data_0_split_1"]
    net.forward(data=X)
    net.backward()
    assert net.loss == pytest.approx(2 * X.sum())
    assert np.array_equal(net.blobs["data"].diff, np.full((2, 3), 2, np.float32))


def test_a_weighted_top_read_by_another_layer_moves_its_loss_onto_the_split():
    # h = W1 x + b1 with loss_weight 2, also read by o = W2 h + b2 (loss_weight 1):
    # L = 2 sum(h) + sum(o), dL/dh = 2 + sum_j W2[j, :].
    text = data() + ip("ip1", "data", 3, "loss_weight: 2", top="h") + ip("ip2", "h", 2, "loss_weight: 1", top="o")
    net = net_from(text)
    split = net.layer_dict["h_ip1_0_split"]
    assert list(split.param.loss_weight) == [2, 0]
    assert net.bottom_names["ip2"] == ["h_ip1_0_split_1"]
    assert net.outputs == ["h_ip1_0_split_0", "o"]
    W1, b1 = np.arange(9, dtype=np.float32).reshape(3, 3) / 10, np.array([1, 0, -1], np.float32)
    W2, b2 = np.array([[1, -1, 2], [0.5, 0, 1]], np.float32), np.array([0.5, -0.5], np.float32)
    set_params(net, "ip1", W1, b1)
    set_params(net, "ip2", W2, b2)
    net.forward(data=X)
    h = X @ W1.T + b1
    assert net.loss == pytest.approx(2 * h.sum() + (h @ W2.T + b2).sum(), rel=1e-6)
    net.backward()
    assert np.allclose(net.blobs["h"].diff, 2 + W2.sum(axis=0))
    assert np.allclose(net.params["ip1"][0].diff, (2 + W2.sum(axis=0))[:, None] * X.sum(axis=0))


def test_a_loss_layers_default_weight_survives_another_reader_of_its_top():
    # L = E + 3E with E the Euclidean loss (weight 1 by default) and p = 3 E (loss_weight 1),
    # so dL/da = 4 (a - t) / N. A deliberate departure from Caffe: its InsertSplits counts
    # only an explicit loss_weight, so no Split is made; the loss layer keeps its default
    # weight in its top's diff, which the Power layer's backward overwrites with 3. Caffe
    # gives 3 (a - t) / N, and reports 4E as the loss at the first forward, 6E after.
    text = ("force_backward: true\n" + data("a") + data("t") +
            'layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "t" top: "loss" }\n'
            'layer { name: "p" type: "Power" bottom: "loss" top: "p" power_param { scale: 3 } loss_weight: 1 }\n')
    net = net_from(text)
    T = np.array([[0.0, -1.0, 1.0], [2.0, 0.0, 0.0]], np.float32)
    net.forward(a=X, t=T)
    E = ((X - T) ** 2).sum() / (2 * 2)
    assert net.loss == pytest.approx(4 * E, rel=1e-6)
    net.backward()
    assert np.allclose(net.blobs["a"].diff, 4 * (X - T) / 2)


# ---------------------------------------------------------------- in place, shapes, reshape

def test_an_in_place_layer_works_on_its_bottom_blob():
    net = net_from(data() + ip("fc", "data", 2, top="h") + relu("act", "h", "h", "loss_weight: 1"))
    assert list(net.blobs) == ["data", "h"]
    assert net.bottom_names["act"] == net.top_names["act"] == ["h"]
    W, b = np.array([[1, 1, 1], [-1, 0, 1]], np.float32), np.array([0, 0.5], np.float32)
    set_params(net, "fc", W, b)
    out = net.forward(data=X)
    pre = X @ W.T + b                      # [[-0.5, 0], [2.25, -3.5]]
    assert np.array_equal(out["h"], np.maximum(pre, 0))
    net.backward()
    mask = (pre > 0).astype(np.float32)
    assert np.allclose(net.params["fc"][0].diff, mask.T @ X)
    assert np.allclose(net.params["fc"][1].diff, mask.sum(axis=0))


def test_an_in_place_relu_after_a_layer_that_owns_its_top_overwrites_that_array():
    # Caffe's in-place ReLU writes into its bottom: the blob is held once, and the next
    # forward and backward write into the same data and diff arrays again.
    net = net_from(data() + ip("fc", "data", 2, top="h") + relu("act", "h", "h", "loss_weight: 1"))
    assert net.layer_dict["act"].overwrite_bottom
    W, b = np.array([[1, 1, 1], [-1, 0, 1]], np.float32), np.array([0, 0.5], np.float32)
    set_params(net, "fc", W, b)
    net.forward(data=X)
    net.backward()
    h_data, h_diff = net.blobs["h"].data, net.blobs["h"].diff
    net.forward(data=-X)
    net.backward()
    assert net.blobs["h"].data is h_data and net.blobs["h"].diff is h_diff
    pre = -X @ W.T + b
    assert np.array_equal(h_data, np.maximum(pre, 0))
    assert np.array_equal(h_diff, (pre > 0).astype(np.float32))


def test_an_in_place_relu_on_an_explicit_split_top_leaves_the_other_top_alone():
    # The Split's tops share one array: the ReLU must write a new one, or 'b' would read relu(h).
    text = (data() + ip("fc", "data", 2, top="h")
            + 'layer { name: "fork" type: "Split" bottom: "h" top: "h1" top: "h2" }\n'
            + relu("act", "h1", "h1") + ip("b", "h2", 1, bias=False))
    net = net_from(text)
    assert not net.layer_dict["act"].overwrite_bottom
    W = np.array([[1, 1, 1], [-1, 0, 1]], np.float32)
    set_params(net, "fc", W, np.zeros(2, np.float32))
    set_params(net, "b", np.array([[1, 1]], np.float32))
    out = net.forward(data=X)
    pre = X @ W.T                          # [[-0.5, -0.5], [2.25, -4]]
    assert np.array_equal(net.blobs["h1"].data, np.maximum(pre, 0))
    assert np.array_equal(out["b"], pre.sum(axis=1, keepdims=True))


def test_top_shapes_are_inferred_when_the_net_is_built():
    net = net_from(data(shape=(2, 3, 4, 5)) + ip("fc", "data", 6)
                   + 'layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }\n')
    assert net.blobs["fc"].shape == (2, 6)
    assert net.blobs["flat"].shape == (2, 60)
    assert net.params["fc"][0].shape == (6, 60)


def test_reshape_propagates_a_new_input_shape():
    net = net_from(data(shape=(2, 3, 4, 5)) + ip("fc", "data", 6)
                   + 'layer { name: "flat" type: "Flatten" bottom: "data" top: "flat" }\n')
    net.blobs["data"].reshape(5, 3, 4, 5)
    net.reshape()
    assert net.blobs["fc"].shape == (5, 6) and net.blobs["flat"].shape == (5, 60)
    x = np.arange(300, dtype=np.float32).reshape(5, 3, 4, 5) / 300
    out = net.forward(data=x)
    W, b = net.params["fc"][0].data, net.params["fc"][1].data
    assert np.allclose(out["fc"], x.reshape(5, 60) @ W.T + b)


def test_a_bottom_must_be_produced_by_an_earlier_layer():
    message = error_of(data() + relu("first", "later", "x") + relu("second", "data", "later"))
    assert "layer 'first'" in message and "unknown bottom blob 'later'" in message
    assert "produced by layer 'second' further down" in message


def test_a_top_produced_twice_is_refused():
    message = error_of(data() + relu("a", "data", "out") + relu("b", "data", "out"))
    assert message.startswith("net.prototxt:3:") and "layer 'b'" in message and "'out'" in message


def test_layer_names_must_be_unique():
    message = error_of(data() + relu("same", "data", "x") + relu("same", "x", "y"))
    assert "named 'same'" in message


# ---------------------------------------------------------------- inputs and outputs

def test_outputs_are_the_blobs_no_layer_reads_sorted_by_name():
    # Caffe keeps them in a std::set, so they come out sorted, not in production order.
    net = net_from(data() + data("unused") + ip("zeta", "data", 2) + ip("mid", "zeta", 2) + ip("alpha", "data", 2))
    assert net.outputs == ["alpha", "mid", "unused"]


def test_inputs_are_the_tops_of_input_layers_in_order():
    net = net_from(data() + data("label", (2,)) + ip("fc", "data", 2))
    assert net.inputs == ["data", "label"]


# ---------------------------------------------------------------- loss weights

def test_loss_weight_on_a_non_loss_top_adds_weighted_sum_and_sets_its_diff():
    net = net_from(data() + ip("fc", "data", 2, "loss_weight: 2"))
    W, b = np.array([[1, 0, 1], [0, 2, 0]], np.float32), np.array([1, -1], np.float32)
    set_params(net, "fc", W, b)
    net.forward(data=X)
    assert net.loss == pytest.approx(2 * (X @ W.T + b).sum())
    net.backward()
    assert np.array_equal(net.blobs["fc"].diff, np.full((2, 2), 2, np.float32))
    assert np.allclose(net.params["fc"][0].diff, 2 * np.tile(X.sum(axis=0), (2, 1)))
    assert np.allclose(net.params["fc"][1].diff, [4, 4])


def test_a_loss_layer_counts_with_weight_one_unless_told_otherwise():
    T = np.zeros((2, 3), np.float32)
    loss = 'layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "t" top: "loss" %s }\n'
    net = net_from(data("a") + data("t") + loss % "")
    net.forward(a=X, t=T)
    assert net.loss == pytest.approx((X ** 2).sum() / 4)
    zero = net_from(data("a") + data("t") + loss % "loss_weight: 0")
    zero.forward(a=X, t=T)
    assert zero.loss == 0
    assert not any(zero.layer_need_backward)


def test_loss_weights_must_be_given_once_per_top():
    text = ('layer { name: "in" type: "Input" top: "x" top: "y" loss_weight: 1 '
            'input_param { shape { dim: 1 } } }\n')
    assert "once per top" in error_of(text)


# ---------------------------------------------------------------- which layers run backward

def test_without_force_backward_inputs_get_no_diff():
    net = net_from(data() + ip("fc", "data", 2, "loss_weight: 1"))
    assert net.bottom_need_backward[list(net.layer_dict).index("fc")] == [False]
    net.forward(data=X)
    net.backward()
    assert not net.blobs["data"].diff.any()


def test_force_backward_gives_inputs_their_diffs():
    # L = sum(W x + b): dL/dx_n = sum_j W[j, :].
    net = net_from("force_backward: true\n" + data() + ip("fc", "data", 2, "loss_weight: 1"))
    W = np.array([[1, 2, 3], [0.5, -1, 0]], np.float32)
    set_params(net, "fc", W, [0, 0])
    net.forward(data=X)
    net.backward()
    assert np.allclose(net.blobs["data"].diff, np.tile(W.sum(axis=0), (2, 1)))


def test_force_backward_leaves_labels_alone():
    text = ("force_backward: true\n" + data() + data("label", (2,)) + ip("fc", "data", 3) +
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }\n')
    net = net_from(text)
    assert net.bottom_need_backward[list(net.layer_dict).index("loss")] == [True, False]


def test_propagate_down_false_stops_the_gradient_and_the_layer_below():
    text = (data() + ip("fc1", "data", 3, top="h")
            + ip("fc2", "h", 2, "propagate_down: false loss_weight: 1", top="o"))
    net = net_from(text)
    names = list(net.layer_dict)
    assert net.layer_need_backward[names.index("fc2")] is True
    assert net.layer_need_backward[names.index("fc1")] is False
    net.forward(data=X)
    net.backward()
    h = net.blobs["h"].data
    assert np.allclose(net.params["fc2"][0].diff, np.tile(h.sum(axis=0), (2, 1)))
    assert not net.blobs["h"].diff.any()
    assert not net.params["fc1"][0].diff.any() and not net.params["fc1"][1].diff.any()


def test_propagate_down_false_on_one_reader_keeps_the_other_readers_gradient():
    # h feeds fc2 (propagate_down false) and fc3 (loss_weight 1): dL/dh = sum_j W3[j, :] only.
    text = (data() + ip("fc1", "data", 3, top="h")
            + ip("fc2", "h", 2, "propagate_down: false loss_weight: 1", top="o2")
            + ip("fc3", "h", 2, "loss_weight: 1", top="o3"))
    net = net_from(text)
    W3 = np.array([[1, 2, 3], [-1, 0, 1]], np.float32)
    set_params(net, "fc3", W3, [0, 0])
    net.forward(data=X)
    net.backward()
    assert np.allclose(net.blobs["h"].diff, np.tile(W3.sum(axis=0), (2, 1)))
    assert np.allclose(net.params["fc1"][0].diff, np.tile(W3.sum(axis=0), (2, 1)).T @ X)


def test_propagate_down_must_be_given_once_per_bottom():
    text = (data("a") + data("t") + 'layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "t" '
            'propagate_down: true }\n')
    assert "propagate_down" in error_of(text)


def test_layers_under_no_loss_do_not_run_backward():
    net = net_from(data() + ip("scored", "data", 2, "loss_weight: 1") + ip("side", "data", 2))
    names = list(net.layer_dict)
    assert net.layer_need_backward[names.index("scored")] is True
    assert net.layer_need_backward[names.index("side")] is False
    net.forward(data=X)
    net.backward()
    assert net.params["scored"][0].diff.any()
    assert not net.params["side"][0].diff.any()


def test_a_frozen_layer_over_inputs_does_not_run_backward():
    frozen = ip("fc", "data", 2, "param { lr_mult: 0 } param { lr_mult: 0 }", top="h")
    net = net_from(data() + frozen + ip("top", "h", 1, "loss_weight: 1"))
    names = list(net.layer_dict)
    assert net.layer_need_backward[names.index("fc")] is False
    assert net.layer_need_backward[names.index("top")] is True


# ---------------------------------------------------------------- parameters: sharing and multipliers

SHARED = 'param { name: "w" } param { name: "bias" }'


def test_layers_naming_the_same_param_share_one_blob():
    net = net_from(data() + data("data2") + ip("a", "data", 2, SHARED) + ip("b", "data2", 2, SHARED))
    assert net.params["a"][0] is net.params["b"][0] and net.params["a"][1] is net.params["b"][1]
    assert len(net.learnable_params) == 2
    assert net.learnable_params[0] is net.params["a"][0]


def test_shared_param_gradients_from_both_layers_add_up():
    net = net_from(data() + data("data2") + ip("a", "data", 2, SHARED + " loss_weight: 1")
                   + ip("b", "data2", 2, SHARED + " loss_weight: 1"))
    X2 = np.array([[0.0, 1.0, 2.0], [-1.0, -1.0, 4.0]], np.float32)
    W = np.array([[1, 0, -1], [2, 1, 0]], np.float32)
    set_params(net, "a", W, [0.5, 0])
    out = net.forward(data=X, data2=X2)
    assert np.allclose(out["b"], X2 @ W.T + [0.5, 0])
    net.backward()
    assert np.allclose(net.params["a"][0].diff, np.tile(X.sum(axis=0) + X2.sum(axis=0), (2, 1)))
    assert np.allclose(net.params["b"][1].diff, [4, 4])


def test_sharing_params_of_different_shapes_is_refused():
    message = error_of(data() + ip("a", "data", 2, 'param { name: "w" }') + ip("b", "data", 3, 'param { name: "w" }'))
    assert "layer 'b'" in message and "owned by layer 'a'" in message
    assert "shape mismatch" in message and "2 3 (6)" in message and "3 3 (9)" in message


def test_permissive_sharing_between_different_shapes_is_explained():
    # a: W (2, 3); b reads a 2-wide blob with 3 outputs: W (3, 2), the same count.
    text = (data() + ip("a", "data", 2, 'param { name: "w" }', bias=False)
            + ip("b", "a", 3, 'param { name: "w" share_mode: PERMISSIVE }', bias=False))
    message = error_of(text)
    assert "PERMISSIVE" in message and "2 3 (6)" in message and "3 2 (6)" in message
    assert "same shape" in message


def test_permissive_sharing_of_different_counts_is_refused():
    text = (data() + ip("a", "data", 2, 'param { name: "w" }', bias=False)
            + ip("b", "data", 4, 'param { name: "w" share_mode: PERMISSIVE }', bias=False))
    assert "count mismatch" in error_of(text)


def test_permissive_sharing_of_equal_shapes_shares():
    net = net_from(data() + ip("a", "data", 2, 'param { name: "w" }', bias=False)
                   + ip("b", "data", 2, 'param { name: "w" share_mode: PERMISSIVE }', bias=False))
    assert net.params["a"][0] is net.params["b"][0]


def test_shared_param_with_different_lr_mult_is_refused():
    message = error_of(data() + ip("a", "data", 2, 'param { name: "w" lr_mult: 1 }')
                       + ip("b", "data", 2, 'param { name: "w" lr_mult: 2 }'))
    assert "layer 'b'" in message and "mismatched lr_mult" in message


def test_lr_mult_given_only_by_a_sharing_layer_applies_to_the_shared_param():
    net = net_from(data() + ip("a", "data", 2, 'param { name: "w" }')
                   + ip("b", "data", 2, 'param { name: "w" lr_mult: 3 decay_mult: 0 }'))
    assert net.params_lr[0] == 3 and net.params_weight_decay[0] == 0


def test_two_sharing_layers_must_agree_even_when_the_owner_gives_no_lr_mult():
    text = (data() + ip("a", "data", 2, 'param { name: "w" }') + ip("b", "data", 2, 'param { name: "w" lr_mult: 2 }')
            + ip("c", "data", 2, 'param { name: "w" lr_mult: 3 }'))
    assert "layer 'c'" in error_of(text)


def test_lr_and_decay_multipliers_line_up_with_learnable_params():
    specs = "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }"
    net = net_from(data() + ip("fc1", "data", 2, specs, top="h") + ip("fc2", "h", 2))
    assert net.learnable_params == [net.params["fc1"][0], net.params["fc1"][1],
                                    net.params["fc2"][0], net.params["fc2"][1]]
    assert net.params_lr == [1, 2, 1, 1]
    assert net.params_weight_decay == [1, 0, 1, 1]


def test_more_param_specs_than_blobs_are_refused():
    message = error_of(data() + ip("fc", "data", 2, "param { } param { } param { }"))
    assert "3 'param' specs" in message and "2 parameter blobs" in message


# ---------------------------------------------------------------- pycaffe's surface

def test_forward_with_inputs_returns_the_outputs():
    net = net_from(data() + ip("fc", "data", 2))
    W, b = np.array([[1, 2, 3], [0, 0, 1]], np.float32), np.array([0, 10], np.float32)
    set_params(net, "fc", W, b)
    out = net.forward(data=X)
    assert set(out) == {"fc"}
    assert np.allclose(out["fc"], X @ W.T + b)
    assert set(net.forward(blobs=["data"], data=X)) == {"fc", "data"}


def test_forward_to_a_layer_returns_that_layers_tops():
    net = net_from(data() + ip("fc1", "data", 2) + ip("fc2", "fc1", 1))
    out = net.forward(end="fc1", data=X)
    assert set(out) == {"fc1"}


def test_backward_with_top_diffs_returns_the_input_diffs():
    net = net_from("force_backward: true\n" + data() + ip("fc", "data", 2))
    W = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    set_params(net, "fc", W, [0, 0])
    net.forward(data=X)
    dy = np.array([[1, 0], [0.5, -1]], np.float32)
    diffs = net.backward(fc=dy)
    assert set(diffs) == {"data"}
    assert np.allclose(diffs["data"], dy @ W)


def test_forward_refuses_an_input_of_another_size():
    net = net_from(data() + ip("fc", "data", 2))
    with pytest.raises(NetError, match="reshape"):
        net.forward(data=np.zeros((4, 3), np.float32))


def test_forward_refuses_an_unknown_blob():
    with pytest.raises(NetError, match="'nope' is not a blob"):
        net_from(data() + ip("fc", "data", 2)).forward(nope=X)


def test_share_with_makes_two_nets_use_the_same_parameters():
    text = data() + ip("fc", "data", 2)
    train, test = net_from(text, TRAIN), net_from(text, TEST)
    test.share_with(train)
    assert test.params["fc"][0] is train.params["fc"][0]
    assert test.learnable_params[0] is train.params["fc"][0]
    train.params["fc"][0].data[...] = 1
    train.params["fc"][1].data[...] = 0
    assert np.allclose(test.forward(data=X)["fc"], np.tile(X.sum(axis=1, keepdims=True), (1, 2)))


@pytest.mark.parametrize("as_path", [str, Path])
def test_pycaffes_argument_order_model_weights_phase(tmp_path, as_path):
    model = tmp_path / "net.prototxt"
    model.write_text(data() + ip("fc", "data", 2))
    source = dualnet.Net(as_path(model), TRAIN)
    source.params["fc"][0].data[...] = 7
    weights = tmp_path / "net.caffemodel"
    source.save(str(weights))
    net = dualnet.Net(as_path(model), as_path(weights), TEST)
    assert net.phase == TEST
    assert (net.params["fc"][0].data == 7).all()


def test_an_unknown_phase_is_refused():
    param, origin = parse_net_text(data())
    with pytest.raises(DualnetError, match="phase"):
        dualnet.Net(param, 3, origin=origin)
