"""Reading prototxt: what parses, and the one-line error each mistake gets.

Every message names the file and the line (file:line:column when protobuf's
parser reports a column) and, inside a layer, the layer's name, and says
what to change; none spans several lines.
"""
import re

import pytest

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.errors import DualnetError, NetError, PrototxtError
from dualnet.io import parse_net_text, parse_solver_text, read_net_param, read_solver_param

INPUT = """layer {
  name: "data"
  type: "Input"
  top: "data"
  input_param { shape { dim: 2 dim: 3 } }
}
"""  # lines 1-6


def build(text, path="net.prototxt", phase=dualnet.TRAIN):
    param, origin = parse_net_text(text, path)
    return dualnet.Net(param, phase, origin=origin)


def parse_error(text, path="net.prototxt"):
    with pytest.raises(PrototxtError) as caught:
        parse_net_text(text, path)
    return str(caught.value)


def build_error(text, path="net.prototxt"):
    with pytest.raises(DualnetError) as caught:
        build(text, path)
    return str(caught.value)


def assert_one_line_at(message, path, line, column=None):
    """The message is one line and starts with path:line (and :column when given)."""
    assert "\n" not in message
    where = f"{path}:{line}" + (f":{column}" if column is not None else "")
    assert message.startswith(where + ":"), message


# ---------------------------------------------------------------- what parses

def test_layers_keep_their_order_and_the_line_of_each_block():
    text = 'name: "n"\n' + INPUT + 'layer {\n  name: "relu"\n  type: "ReLU"\n  bottom: "data"\n  top: "data"\n}\n'
    param, origin = parse_net_text(text, "net.prototxt")
    assert param.name == "n"
    assert [layer.name for layer in param.layer] == ["data", "relu"]
    assert origin.block_lines == [2, 8]
    assert origin.where("relu") == "net.prototxt:8"


def test_comments_and_angle_bracket_blocks_are_accepted():
    text = '# a comment\nlayer < name: "data" type: "Input" top: "data" >  # trailing comment\n'
    param, _ = parse_net_text(text)
    assert param.layer[0].name == "data"


def test_windows_line_endings_read_like_unix_ones(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_bytes(INPUT.replace("\n", "\r\n").encode())
    param, origin = read_net_param(str(path))
    assert param.layer[0].input_param.shape[0].dim == [2, 3]
    assert origin.block_lines == [1]


def test_same_named_layers_in_two_phases_each_keep_their_own_line():
    text = INPUT + """layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "data"
  top: "ip"
  include { phase: TRAIN }
  inner_product_param { num_output: 2 }
}
layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "data"
  top: "ip"
  include { phase: TEST }
  inner_product_param { num_output: 2 axis: 5 }
}
"""
    build(text, phase=dualnet.TRAIN)                    # the TRAIN block is fine
    with pytest.raises(NetError) as caught:
        build(text, phase=dualnet.TEST)                 # the TEST one has a bad axis
    assert_one_line_at(str(caught.value), "net.prototxt", 21, 39)   # its axis, in the TEST block


# ---------------------------------------------------------------- syntax errors

def test_missing_closing_brace_says_which_block_is_not_closed():
    text = INPUT + 'layer {\n  name: "ip"\n  type: "InnerProduct"\n  bottom: "data"\n'
    message = parse_error(text)
    assert_one_line_at(message, "net.prototxt", 10)
    assert "layer 'ip'" in message
    assert "missing '}'" in message and "opened at line 7" in message


def test_extra_closing_brace_is_called_unexpected():
    message = parse_error('layer { name: "a" type: "Input" top: "a" }\n}\n')
    assert_one_line_at(message, "net.prototxt", 2, 1)
    assert "unexpected '}'" in message


def test_bad_integer_value_names_line_column_and_layer():
    text = INPUT + 'layer {\n  name: "ip"\n  type: "InnerProduct"\n  inner_product_param { num_output: ten }\n}\n'
    message = parse_error(text)
    assert_one_line_at(message, "net.prototxt", 10, 37)
    assert "layer 'ip'" in message and "ten" in message


def test_unquoted_string_value_says_to_quote_it():
    message = parse_error('layer {\n  name: "ip"\n  bottom: data\n}\n')
    assert_one_line_at(message, "net.prototxt", 3, 11)
    assert "layer 'ip'" in message and "double quotes" in message


def test_unterminated_string_is_placed_in_its_block():
    message = parse_error('layer {\n  name: "ip\n  type: "ReLU"\n}\n')
    assert_one_line_at(message, "net.prototxt", 2)
    assert "'layer' block" in message


# ---------------------------------------------------------------- misspellings

def test_unknown_field_suggests_the_nearest_field():
    text = INPUT + 'layer {\n  name: "ip"\n  type: "InnerProduct"\n  bottm: "data"\n}\n'
    message = parse_error(text)
    assert_one_line_at(message, "net.prototxt", 10, 3)
    assert "layer 'ip'" in message
    assert "unknown field 'bottm'" in message and "did you mean 'bottom'" in message


def test_unknown_field_in_a_nested_parameter_suggests_from_that_message():
    text = 'layer {\n  name: "ip"\n  type: "InnerProduct"\n  inner_product_param { num_outptu: 3 }\n}\n'
    message = parse_error(text)
    assert_one_line_at(message, "net.prototxt", 4, 25)
    assert "unknown field 'num_outptu' in InnerProductParameter" in message
    assert "did you mean 'num_output'" in message


def test_unknown_top_level_field_suggests_a_net_field():
    message = parse_error('nam: "lenet"\n')
    assert_one_line_at(message, "net.prototxt", 1, 1)
    assert "did you mean 'name'" in message


@pytest.mark.parametrize("layer_type,field,belongs_in", [
    ("InnerProduct", "num_output", "inner_product_param: inner_product_param { num_output: ... }"),
    # neither a LayerParameter field nor spelled right: the nearest field one level down
    ("Convolution", "kernal_size", "convolution_param: convolution_param { kernel_size: ... }"),
])
def test_layer_level_field_says_which_param_of_its_type_it_belongs_in(layer_type, field, belongs_in):
    message = parse_error(f'layer {{\n  name: "x"\n  type: "{layer_type}"\n  {field}: 10\n}}\n')
    assert_one_line_at(message, "net.prototxt", 4, 3)
    assert f"unknown field '{field}' in LayerParameter; it belongs in {belongs_in}" in message


def test_layer_level_num_output_without_a_type_lists_every_param_holding_it():
    message = parse_error('layer {\n  name: "x"\n  num_output: 10\n}\n')
    assert "it belongs in one of convolution_param, embed_param, inner_product_param, recurrent_param" in message


def test_misspelled_enum_suggests_the_value_and_lists_all_values():
    text = 'layer {\n  name: "pool"\n  type: "Pooling"\n  pooling_param { pool: MAXX }\n}\n'
    message = parse_error(text)
    assert_one_line_at(message, "net.prototxt", 4, 25)
    assert "layer 'pool'" in message
    assert "'MAXX'" in message and "did you mean 'MAX'" in message
    assert "MAX, AVE, STOCHASTIC" in message


def test_misspelled_phase_suggests_train():
    message = parse_error('layer {\n  name: "d"\n  include { phase: TRIAN }\n}\n')
    assert_one_line_at(message, "net.prototxt", 3)
    assert "did you mean 'TRAIN'" in message and "TRAIN, TEST" in message


def test_misspelled_solver_field_names_solver_file_and_line():
    with pytest.raises(PrototxtError) as caught:
        parse_solver_text('base_lr: 0.01\nmomentun: 0.9\n', "solver.prototxt")
    message = str(caught.value)
    assert_one_line_at(message, "solver.prototxt", 2, 1)
    assert "did you mean 'momentum'" in message


# ---------------------------------------------------------------- errors found when the net is built

def test_unknown_layer_type_is_reported_when_the_net_is_built(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(INPUT + 'layer {\n  name: "x"\n  type: "Convoltion"\n  bottom: "data"\n  top: "x"\n}\n')
    read_net_param(str(path))                    # parsing alone accepts any type string
    with pytest.raises(NetError) as caught:
        dualnet.Net(str(path), dualnet.TRAIN)
    message = str(caught.value)
    assert_one_line_at(message, str(path), 9, 3)            # the `type:` field of the block at line 7
    assert "layer 'x' (Convoltion): unknown layer type 'Convoltion'" in message
    assert "did you mean 'Convolution'" in message


def test_caffe_type_dualnet_lacks_says_what_to_use_instead():
    message = build_error(INPUT + 'layer {\n  name: "h5"\n  type: "HDF5Data"\n  top: "x"\n}\n')
    assert_one_line_at(message, "net.prototxt", 9, 3)
    assert "not implemented" in message and "NPZ" in message


@pytest.mark.parametrize("layer_type,param", [("HDF5Data", "hdf5_data_param"), ("WindowData", "window_data_param"),
                                              ("ImageData", "image_data_param")])
def test_unimplemented_data_layer_names_the_source_it_would_read(layer_type, param):
    text = f'layer {{\n  name: "d"\n  type: "{layer_type}"\n  top: "x"\n  {param} {{ source: "lists/train.txt" }}\n}}\n'
    message = build_error(text)
    assert_one_line_at(message, "net.prototxt", 3, 3)
    assert f"layer type '{layer_type}' is not implemented" in message
    assert f"{param}.source 'lists/train.txt'" in message


def test_unknown_bottom_names_the_blob_and_suggests_a_known_one():
    text = INPUT + 'layer {\n  name: "ip"\n  type: "InnerProduct"\n  bottom: "dta"\n  top: "ip"\n' \
                   '  inner_product_param { num_output: 2 }\n}\n'
    message = build_error(text)
    assert_one_line_at(message, "net.prototxt", 10, 3)      # the `bottom:` field of the block at line 7
    assert "layer 'ip'" in message and "unknown bottom blob 'dta'" in message
    assert "did you mean 'data'" in message


@pytest.mark.parametrize("block,line,column,reason", [
    ('  type: "EuclideanLoss"\n  bottom: "data" bottom: "target"\n', 10, 18,
     "(EuclideanLoss): unknown bottom blob 'target' (bottom 1)"),
    ('  type: "Softmax"\n  bottom: "data"\n  top: "prob"\n  softmax_param { axis: 2 }\n', 12, 19,
     "(Softmax): axis 2 is out of range for a blob with 2 axes"),
    ('  type: "ReLU"\n  bottom: "data"\n  top: "r"\n  loss_weight: 1 loss_weight: 2\n', 12, 3,
     "(ReLU): loss_weight must be given once per top (1) or not at all"),
], ids=["second bottom", "param value", "loss_weight"])
def test_build_error_about_one_field_points_at_that_field(block, line, column, reason):
    message = build_error(INPUT + 'layer {\n  name: "x"\n' + block + '}\n')
    assert_one_line_at(message, "net.prototxt", line, column)
    assert f"layer 'x' {reason}" in message


def test_duplicate_top_names_the_second_producer():
    text = INPUT + 'layer {\n  name: "a"\n  type: "ReLU"\n  bottom: "data"\n  top: "out"\n}\n' \
                   'layer {\n  name: "b"\n  type: "Sigmoid"\n  bottom: "data"\n  top: "out"\n}\n'
    message = build_error(text)
    assert_one_line_at(message, "net.prototxt", 17, 3)      # the `top:` field of the block at line 13
    assert "layer 'b'" in message and "'out'" in message and "more than one layer" in message


def test_euclidean_loss_of_different_sizes_names_both_shapes():
    text = INPUT + 'layer {\n  name: "t"\n  type: "Input"\n  top: "t"\n  input_param { shape { dim: 2 dim: 4 } }\n}\n' \
                   'layer {\n  name: "loss"\n  type: "EuclideanLoss"\n  bottom: "data"\n  bottom: "t"\n}\n'
    message = build_error(text)
    assert_one_line_at(message, "net.prototxt", 13)
    assert "layer 'loss' (EuclideanLoss)" in message
    assert "(2, 3)" in message and "(2, 4)" in message


def test_inner_product_weights_declared_for_another_input_size_name_both_shapes():
    # The weights fit 4 inputs per sample; the bottom gives 3.
    text = INPUT + """layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "data"
  top: "ip"
  inner_product_param { num_output: 1 bias_term: false }
  blobs { shape { dim: 1 dim: 4 } data: 1 data: 2 data: 3 data: 4 }
}
"""
    message = build_error(text)
    assert_one_line_at(message, "net.prototxt", 7)
    assert "layer 'ip' (InnerProduct)" in message
    assert "(1, 4)" in message and "(1, 3)" in message


def test_prototxt_weights_with_the_same_count_but_another_shape_are_refused():
    # 3 x 2 values cannot silently become the (2, 3) weights.
    text = INPUT + """layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "data"
  top: "ip"
  inner_product_param { num_output: 2 bias_term: false }
  blobs { shape { dim: 3 dim: 2 } data: 1 data: 2 data: 3 data: 4 data: 5 data: 6 }
}
"""
    message = build_error(text)
    assert "(3, 2)" in message and "(2, 3)" in message


def test_prototxt_weights_in_legacy_four_d_form_are_used():
    text = INPUT + """layer {
  name: "ip"
  type: "InnerProduct"
  bottom: "data"
  top: "ip"
  inner_product_param { num_output: 2 bias_term: false }
  blobs { num: 1 channels: 1 height: 2 width: 3 data: 1 data: 2 data: 3 data: 4 data: 5 data: 6 }
}
"""
    net = build(text)
    assert net.params["ip"][0].data.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_include_and_exclude_together_name_the_layer_and_line():
    text = INPUT + 'layer {\n  name: "r"\n  type: "ReLU"\n  bottom: "data"\n  top: "data"\n' \
                   '  include { phase: TRAIN }\n  exclude { stage: "deploy" }\n}\n'
    message = build_error(text)
    assert_one_line_at(message, "net.prototxt", 7)
    assert "layer 'r'" in message and "include or exclude" in message


# ---------------------------------------------------------------- the file itself

def test_file_mixing_layer_and_layers_is_refused_with_an_explanation():
    text = INPUT + 'layers {\n  name: "relu"\n  type: RELU\n  bottom: "data"\n  top: "data"\n}\n'
    message = parse_error(text)
    assert_one_line_at(message, "net.prototxt", 7)
    assert "'layer'" in message and "'layers'" in message and "V1" in message


def test_binary_file_given_as_prototxt_is_named_binary(tmp_path):
    path = tmp_path / "lenet.caffemodel"
    blob = pb.BlobProto()
    blob.shape.dim.extend([2])
    blob.data.extend([0.5, -1.5])
    net = pb.NetParameter(name="lenet")
    net.layer.add(name="ip", type="InnerProduct").blobs.add().CopyFrom(blob)
    path.write_bytes(net.SerializeToString())
    with pytest.raises(PrototxtError) as caught:
        read_net_param(str(path))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: is a binary file")


def test_binary_file_that_happens_to_be_valid_utf8_is_named_binary(tmp_path):
    path = tmp_path / "small.caffemodel"
    path.write_bytes(pb.NetParameter(name="n", input=["data"], input_dim=[1, 3, 4, 4]).SerializeToString())
    path.read_bytes().decode("utf-8")            # the premise: it decodes as text
    with pytest.raises(PrototxtError, match=re.escape(f"{path}: is a binary file")):
        read_net_param(str(path))


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere.prototxt"
    with pytest.raises(PrototxtError) as caught:
        dualnet.Net(str(path), dualnet.TEST)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and "no such" in message


def test_folder_given_as_net_file_is_named_a_folder(tmp_path):
    with pytest.raises(PrototxtError, match="is a folder"):
        read_net_param(str(tmp_path))


def test_missing_solver_file_names_the_path(tmp_path):
    with pytest.raises(PrototxtError, match=re.escape(str(tmp_path / "s.prototxt")) + ": no such"):
        read_solver_param(str(tmp_path / "s.prototxt"))
