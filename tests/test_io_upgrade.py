"""Legacy formats are upgraded on load, as Caffe's upgrade_proto does.

V1 nets (`layers { type: CONVOLUTION blobs_lr: ... }`) become `layer`
blocks; data_param transformation fields move to transform_param;
deprecated net inputs become an Input layer named "input"; the solver's
`solver_type` enum becomes the `type` string. What cannot be upgraded (V0
layers, inconsistent inputs, both solver types) is refused with a sentence.
"""
import pytest

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.errors import PrototxtError
from dualnet.io import parse_net_text, parse_solver_text
from dualnet.io.upgrade import V1_TYPE_NAMES, upgrade_net

V1_NET = """name: "v1"
layers {
  name: "data"
  type: DATA
  top: "data"
  top: "label"
  data_param { source: "train_lmdb" batch_size: 64 scale: 0.00390625 mean_file: "mean.binaryproto"
               crop_size: 24 mirror: true }
  include { phase: TRAIN }
}
layers {
  name: "conv1"
  type: CONVOLUTION
  bottom: "data"
  top: "conv1"
  blobs_lr: 1
  blobs_lr: 2
  weight_decay: 1
  weight_decay: 0
  param: "conv1_w"
  param: "conv1_b"
  convolution_param { num_output: 20 kernel_size: 5 stride: 1 }
}
layers {
  name: "relu1"
  type: RELU
  bottom: "conv1"
  top: "conv1"
}
layers {
  name: "ip1"
  type: INNER_PRODUCT
  bottom: "conv1"
  top: "ip1"
  inner_product_param { num_output: 10 }
}
layers {
  name: "loss"
  type: SOFTMAX_LOSS
  bottom: "ip1"
  bottom: "label"
  top: "loss"
  loss_weight: 0.5
}
layers {
  name: "accuracy"
  type: ACCURACY
  bottom: "ip1"
  bottom: "label"
  top: "accuracy"
  include { phase: TEST }
}
"""


@pytest.fixture(scope="module")
def v1():
    param, origin = parse_net_text(V1_NET, "v1.prototxt")
    return param, origin


# ---------------------------------------------------------------- V1 layers

def test_v1_layers_become_layer_blocks_with_type_strings(v1):
    param, _ = v1
    assert len(param.layers) == 0
    assert [(layer.name, layer.type) for layer in param.layer] == [
        ("data", "Data"), ("conv1", "Convolution"), ("relu1", "ReLU"),
        ("ip1", "InnerProduct"), ("loss", "SoftmaxWithLoss"), ("accuracy", "Accuracy")]


def test_v1_bottoms_tops_and_loss_weights_are_kept(v1):
    param, _ = v1
    loss = param.layer[4]
    assert list(loss.bottom) == ["ip1", "label"] and list(loss.top) == ["loss"]
    assert list(loss.loss_weight) == [0.5]
    assert list(param.layer[2].bottom) == ["conv1"] and list(param.layer[2].top) == ["conv1"]


def test_v1_blobs_lr_weight_decay_and_param_names_become_param_specs(v1):
    conv = v1[0].layer[1]
    assert [(p.name, p.lr_mult, p.decay_mult) for p in conv.param] == [
        ("conv1_w", 1.0, 1.0), ("conv1_b", 2.0, 0.0)]


def test_v1_layer_without_blobs_lr_gets_no_param_specs(v1):
    assert len(v1[0].layer[3].param) == 0


def test_v1_include_rules_are_kept(v1):
    param, _ = v1
    assert [rule.phase for rule in param.layer[0].include] == [pb.TRAIN]
    assert [rule.phase for rule in param.layer[5].include] == [pb.TEST]


def test_v1_layer_parameters_are_copied(v1):
    conv = v1[0].layer[1]
    assert conv.convolution_param.num_output == 20
    assert list(conv.convolution_param.kernel_size) == [5]


def test_v1_data_transformation_fields_move_to_transform_param(v1):
    data = v1[0].layer[0]
    transform = data.transform_param
    assert transform.scale == pytest.approx(1 / 256)
    assert transform.mean_file == "mean.binaryproto"
    assert transform.crop_size == 24 and transform.mirror is True
    for field in ("scale", "mean_file", "crop_size", "mirror"):
        assert not data.data_param.HasField(field)
    assert data.data_param.source == "train_lmdb" and data.data_param.batch_size == 64


def test_v1_block_lines_follow_the_upgraded_layers(v1):
    assert v1[1].block_lines == [2, 11, 24, 30, 37, 45]


def test_every_v1_type_enum_has_caffes_type_string():
    names = pb.V1LayerParameter.LayerType.keys()
    assert set(names) == set(V1_TYPE_NAMES)
    expected = {"ABSVAL": "AbsVal", "BNLL": "BNLL", "DUMMY_DATA": "DummyData", "HDF5_DATA": "HDF5Data",
                "IM2COL": "Im2col", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MVN": "MVN",
                "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
                "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SOFTMAX_LOSS": "SoftmaxWithLoss",
                "TANH": "TanH", "EUCLIDEAN_LOSS": "EuclideanLoss", "NONE": ""}
    assert {name: V1_TYPE_NAMES[name] for name in expected} == expected


def test_upgraded_v1_net_builds_with_its_lr_and_decay_multipliers():
    text = """layers { name: "x" type: DUMMY_DATA top: "x"
                     dummy_data_param { shape { dim: 2 dim: 3 } } }
              layers { name: "ip" type: INNER_PRODUCT bottom: "x" top: "ip"
                       blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
                       inner_product_param { num_output: 4 } }"""
    param, origin = parse_net_text(text, "v1.prototxt")
    net = dualnet.Net(param, dualnet.TRAIN, origin=origin)
    assert net.params_lr == [1.0, 2.0]
    assert net.params_weight_decay == [1.0, 0.0]
    assert net.blobs["ip"].shape == (2, 4)


def test_v1_shared_param_names_share_blobs_after_upgrade():
    text = """layers { name: "x" type: DUMMY_DATA top: "x" dummy_data_param { shape { dim: 2 dim: 3 } } }
              layers { name: "a" type: INNER_PRODUCT bottom: "x" top: "a" param: "w" param: "b"
                       inner_product_param { num_output: 2 } }
              layers { name: "b" type: INNER_PRODUCT bottom: "x" top: "b" param: "w" param: "b"
                       inner_product_param { num_output: 2 } }"""
    param, origin = parse_net_text(text)
    net = dualnet.Net(param, dualnet.TRAIN, origin=origin)
    assert net.params["a"][0] is net.params["b"][0]
    assert len(net.learnable_params) == 2


def test_v0_layer_is_refused_with_what_to_run():
    text = 'layers {\n  layer {\n    name: "conv1"\n    type: "conv"\n    num_output: 4\n  }\n}\n'
    with pytest.raises(PrototxtError) as caught:
        parse_net_text(text, "v0.prototxt")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("v0.prototxt:1:")
    assert "conv1" in message and "V0" in message and "upgrade_net_proto_text" in message


def test_net_parameter_mixing_layer_and_layers_is_refused_when_upgraded():
    net = pb.NetParameter()
    net.layer.add(name="a", type="Input")
    net.layers.add(name="b", type=pb.V1LayerParameter.RELU)
    with pytest.raises(PrototxtError, match="mixes 'layer'.*'layers'"):
        upgrade_net(net)


# ---------------------------------------------------------------- deprecated net inputs

def test_input_with_input_shape_becomes_an_input_layer_named_input():
    text = 'input: "data"\ninput_shape { dim: 10 dim: 3 dim: 8 dim: 8 }\n' \
           'layer { name: "relu" type: "ReLU" bottom: "data" top: "out" }\n'
    param, _ = parse_net_text(text)
    first = param.layer[0]
    assert (first.name, first.type, list(first.top)) == ("input", "Input", ["data"])
    assert [list(s.dim) for s in first.input_param.shape] == [[10, 3, 8, 8]]
    assert [layer.name for layer in param.layer] == ["input", "relu"]
    assert not param.input and not param.input_shape and not param.input_dim


def test_four_input_dims_per_input_become_one_shape_each():
    text = 'input: "data"\ninput: "label"\n' \
           'input_dim: 2\ninput_dim: 3\ninput_dim: 4\ninput_dim: 5\n' \
           'input_dim: 2\ninput_dim: 1\ninput_dim: 1\ninput_dim: 1\n'
    param, origin = parse_net_text(text)
    shapes = [list(s.dim) for s in param.layer[0].input_param.shape]
    assert list(param.layer[0].top) == ["data", "label"]
    assert shapes == [[2, 3, 4, 5], [2, 1, 1, 1]]
    net = dualnet.Net(param, dualnet.TEST, origin=origin)
    assert net.inputs == ["data", "label"]
    assert net.blobs["data"].shape == (2, 3, 4, 5) and net.blobs["label"].shape == (2, 1, 1, 1)


def test_input_layer_made_from_inputs_reports_errors_at_the_input_line():
    text = 'name: "n"\ninput: "data"\ninput_shape { dim: 2 dim: 3 }\n' \
           'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" ' \
           'inner_product_param { num_output: 2 } }\n'
    param, origin = parse_net_text(text, "deploy.prototxt")
    net = dualnet.Net(param, dualnet.TEST, origin=origin)
    assert origin.block_lines == [2, 4]
    assert net.blobs["ip"].shape == (2, 2)


def test_input_dim_count_mismatch_is_explained_with_the_line():
    text = 'name: "n"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 28\n'
    with pytest.raises(PrototxtError) as caught:
        parse_net_text(text, "deploy.prototxt")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("deploy.prototxt:2:")
    assert "need 4 'input_dim' values" in message and "got 3" in message


def test_input_shape_count_mismatch_is_explained():
    text = 'input: "a"\ninput: "b"\ninput_shape { dim: 1 }\n'
    with pytest.raises(PrototxtError, match="2 'input' blobs but 1 'input_shape'"):
        parse_net_text(text, "deploy.prototxt")


def test_input_dims_without_input_names_are_refused():
    with pytest.raises(PrototxtError, match="without 'input' blob names"):
        parse_net_text('input_dim: 1\ninput_dim: 1\ninput_dim: 1\ninput_dim: 1\n')


# ---------------------------------------------------------------- BatchNorm

def test_batch_norm_with_three_old_param_specs_gets_lr_and_decay_zero():
    # Caffe's UpgradeNetBatchNorm: the three statistics are not learned.
    text = 'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x" ' \
           'param { lr_mult: 1 name: "m" } param { lr_mult: 1 } param { lr_mult: 1 decay_mult: 5 } }'
    param, _ = parse_net_text(text)
    specs = param.layer[0].param
    assert [(p.name, p.lr_mult, p.decay_mult) for p in specs] == [("m", 0, 0), ("", 0, 0), ("", 0, 0)]


def test_batch_norm_net_from_an_old_file_builds():
    text = 'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 2 } } }\n' \
           'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" ' \
           'param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } }'
    param, origin = parse_net_text(text)
    net = dualnet.Net(param, dualnet.TRAIN, origin=origin)
    assert net.params_lr == [0, 0, 0] and net.params_weight_decay == [0, 0, 0]


# ---------------------------------------------------------------- solvers

@pytest.mark.parametrize("old,new", [("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"),
                                     ("RMSPROP", "RMSProp"), ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_solver_type_enum_becomes_the_type_string(old, new):
    solver = parse_solver_text(f'base_lr: 0.1\nsolver_type: {old}\n')
    assert solver.type == new
    assert not solver.HasField("solver_type")


def test_solver_without_a_type_is_sgd():
    assert parse_solver_text("base_lr: 0.1\n").type == "SGD"


def test_solver_giving_both_type_and_solver_type_is_refused_at_the_line():
    with pytest.raises(PrototxtError) as caught:
        parse_solver_text('base_lr: 0.1\ntype: "Adam"\nsolver_type: NESTEROV\n', "solver.prototxt")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("solver.prototxt:3:")
    assert "either 'type' or the deprecated 'solver_type'" in message


def test_nets_inside_a_solver_are_upgraded():
    solver = parse_solver_text('net_param { layers { name: "r" type: RELU bottom: "x" top: "x" } }\n')
    assert [(l.name, l.type) for l in solver.net_param.layer] == [("r", "ReLU")]
