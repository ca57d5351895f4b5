"""The committed dualnet_pb2.py matches proto/dualnet.proto, and the shared
messages keep Caffe's field numbers (so binary files interoperate)."""
import os
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2

from dualnet import dualnet_pb2 as pb
from layer_harness import missing_optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from gen_proto import protoc_command  # noqa: E402


def _serialized_descriptor(pb2_source):
    """The descriptor bytes a generated module embeds (version headers differ by protoc)."""
    line = next(l for l in pb2_source.splitlines() if "AddSerializedFile(" in l)
    return line.strip()


def test_generated_module_matches_proto(tmp_path):
    command = protoc_command()
    if command is None:
        missing_optional("no protoc available (pip install grpcio-tools)")
    subprocess.check_call(command + ["-I", os.path.join(ROOT, "proto"), f"--python_out={tmp_path}",
                                     os.path.join(ROOT, "proto", "dualnet.proto")])
    fresh = (tmp_path / "dualnet_pb2.py").read_text()
    with open(os.path.join(ROOT, "dualnet", "dualnet_pb2.py")) as handle:
        committed = handle.read()
    assert _serialized_descriptor(fresh) == _serialized_descriptor(committed), \
        "dualnet_pb2.py is stale: run scripts/gen_proto.py"


def test_missing_protoc_fails_where_optional_packages_are_required(monkeypatch, tmp_path):
    monkeypatch.setitem(globals(), "protoc_command", lambda: None)
    monkeypatch.setenv("DUALNET_REQUIRE_OPTIONAL", "1")
    with pytest.raises(pytest.fail.Exception, match="no protoc available.*requires the optional packages"):
        test_generated_module_matches_proto(tmp_path)


# BVLC Caffe's field numbers (src/caffe/proto/caffe.proto at master), written out
# here by hand for every message dualnet shares with Caffe: the core messages and
# the parameter messages of the layers dualnet implements (plus the data layers
# whose `source` its errors name). Binary .caffemodel / .solverstate files depend
# on every one of them.
CAFFE_FIELDS = {
    "BlobShape": {"dim": 1},
    "BlobProto": {"shape": 7, "data": 5, "diff": 6, "double_data": 8, "double_diff": 9,
                  "num": 1, "channels": 2, "height": 3, "width": 4},
    "BlobProtoVector": {"blobs": 1},
    "Datum": {"channels": 1, "height": 2, "width": 3, "data": 4, "label": 5, "float_data": 6, "encoded": 7},
    "FillerParameter": {"type": 1, "value": 2, "min": 3, "max": 4, "mean": 5, "std": 6, "sparse": 7,
                        "variance_norm": 8},
    "NetParameter": {"name": 1, "input": 3, "input_shape": 8, "input_dim": 4, "force_backward": 5, "state": 6,
                     "debug_info": 7, "layer": 100, "layers": 2},
    "NetState": {"phase": 1, "level": 2, "stage": 3},
    "NetStateRule": {"phase": 1, "min_level": 2, "max_level": 3, "stage": 4, "not_stage": 5},
    "ParamSpec": {"name": 1, "share_mode": 2, "lr_mult": 3, "decay_mult": 4},
    "LayerParameter": {
        "name": 1, "type": 2, "bottom": 3, "top": 4, "phase": 10, "loss_weight": 5, "param": 6, "blobs": 7,
        "propagate_down": 11, "include": 8, "exclude": 9, "transform_param": 100, "loss_param": 101,
        "accuracy_param": 102, "argmax_param": 103, "batch_norm_param": 139, "bias_param": 141,
        "clip_param": 148, "concat_param": 104, "contrastive_loss_param": 105, "convolution_param": 106,
        "crop_param": 144, "data_param": 107, "dropout_param": 108, "dummy_data_param": 109,
        "eltwise_param": 110, "elu_param": 140, "embed_param": 137, "exp_param": 111, "flatten_param": 135,
        "hdf5_data_param": 112, "hdf5_output_param": 113, "hinge_loss_param": 114, "image_data_param": 115,
        "infogain_loss_param": 116, "inner_product_param": 117, "input_param": 143, "log_param": 134,
        "lrn_param": 118, "memory_data_param": 119, "mvn_param": 120, "parameter_param": 145,
        "pooling_param": 121, "power_param": 122, "prelu_param": 131, "python_param": 130,
        "recurrent_param": 146, "reduction_param": 136, "relu_param": 123, "reshape_param": 133,
        "scale_param": 142, "sigmoid_param": 124, "softmax_param": 125, "spp_param": 132, "slice_param": 126,
        "swish_param": 147, "tanh_param": 127, "threshold_param": 128, "tile_param": 138,
        "window_data_param": 129},
    "V1LayerParameter": {
        "bottom": 2, "top": 3, "name": 4, "include": 32, "exclude": 33, "type": 5, "blobs": 6, "param": 1001,
        "blob_share_mode": 1002, "blobs_lr": 7, "weight_decay": 8, "loss_weight": 35, "accuracy_param": 27,
        "argmax_param": 23, "concat_param": 9, "contrastive_loss_param": 40, "convolution_param": 10,
        "data_param": 11, "dropout_param": 12, "dummy_data_param": 26, "eltwise_param": 24, "exp_param": 41,
        "hdf5_data_param": 13, "hdf5_output_param": 14, "hinge_loss_param": 29, "image_data_param": 15,
        "infogain_loss_param": 16, "inner_product_param": 17, "lrn_param": 18, "memory_data_param": 22,
        "mvn_param": 34, "pooling_param": 19, "power_param": 21, "relu_param": 30, "sigmoid_param": 38,
        "softmax_param": 39, "slice_param": 31, "tanh_param": 37, "threshold_param": 25,
        "window_data_param": 20, "transform_param": 36, "loss_param": 42, "layer": 1},
    "TransformationParameter": {"scale": 1, "mirror": 2, "crop_size": 3, "mean_file": 4, "mean_value": 5,
                                "force_color": 6, "force_gray": 7},
    "LossParameter": {"ignore_label": 1, "normalization": 3, "normalize": 2},
    "SolverParameter": {
        "net": 24, "net_param": 25, "train_net": 1, "test_net": 2, "train_net_param": 21, "test_net_param": 22,
        "train_state": 26, "test_state": 27, "test_iter": 3, "test_interval": 4, "test_compute_loss": 19,
        "test_initialization": 32, "base_lr": 5, "display": 6, "average_loss": 33, "max_iter": 7,
        "iter_size": 36, "lr_policy": 8, "gamma": 9, "power": 10, "momentum": 11, "weight_decay": 12,
        "regularization_type": 29, "stepsize": 13, "stepvalue": 34, "clip_gradients": 35, "snapshot": 14,
        "snapshot_prefix": 15, "snapshot_diff": 16, "snapshot_format": 37, "solver_mode": 17, "device_id": 18,
        "random_seed": 20, "type": 40, "delta": 31, "momentum2": 39, "rms_decay": 38, "debug_info": 23,
        "snapshot_after_train": 28, "solver_type": 30, "layer_wise_reduce": 41, "weights": 42},
    "SolverState": {"iter": 1, "learned_net": 2, "history": 3, "current_step": 4},
    # the parameter messages of the implemented layers
    "AccuracyParameter": {"top_k": 1, "axis": 2, "ignore_label": 3},
    "ArgMaxParameter": {"out_max_val": 1, "top_k": 2, "axis": 3},
    "BatchNormParameter": {"use_global_stats": 1, "moving_average_fraction": 2, "eps": 3},
    "BiasParameter": {"axis": 1, "num_axes": 2, "filler": 3},
    "ClipParameter": {"min": 1, "max": 2},
    "ConcatParameter": {"axis": 2, "concat_dim": 1},
    "ConvolutionParameter": {"num_output": 1, "bias_term": 2, "pad": 3, "kernel_size": 4, "stride": 6,
                             "dilation": 18, "pad_h": 9, "pad_w": 10, "kernel_h": 11, "kernel_w": 12,
                             "stride_h": 13, "stride_w": 14, "group": 5, "weight_filler": 7, "bias_filler": 8,
                             "engine": 15, "axis": 16, "force_nd_im2col": 17},
    "CropParameter": {"axis": 1, "offset": 2},
    "DataParameter": {"source": 1, "batch_size": 4, "rand_skip": 7, "backend": 8, "scale": 2, "mean_file": 3,
                      "crop_size": 5, "mirror": 6, "force_encoded_color": 9, "prefetch": 10},
    "DropoutParameter": {"dropout_ratio": 1},
    "DummyDataParameter": {"data_filler": 1, "shape": 6, "num": 2, "channels": 3, "height": 4, "width": 5},
    "EltwiseParameter": {"operation": 1, "coeff": 2, "stable_prod_grad": 3},
    "ELUParameter": {"alpha": 1},
    "ExpParameter": {"base": 1, "scale": 2, "shift": 3},
    "FlattenParameter": {"axis": 1, "end_axis": 2},
    "HingeLossParameter": {"norm": 1},
    "InnerProductParameter": {"num_output": 1, "bias_term": 2, "weight_filler": 3, "bias_filler": 4, "axis": 5,
                              "transpose": 6},
    "InputParameter": {"shape": 1},
    "LogParameter": {"base": 1, "scale": 2, "shift": 3},
    "LRNParameter": {"local_size": 1, "alpha": 2, "beta": 3, "norm_region": 4, "k": 5, "engine": 6},
    "MemoryDataParameter": {"batch_size": 1, "channels": 2, "height": 3, "width": 4},
    "MVNParameter": {"normalize_variance": 1, "across_channels": 2, "eps": 3},
    "PoolingParameter": {"pool": 1, "pad": 4, "pad_h": 9, "pad_w": 10, "kernel_size": 2, "kernel_h": 5,
                         "kernel_w": 6, "stride": 3, "stride_h": 7, "stride_w": 8, "engine": 11,
                         "global_pooling": 12, "round_mode": 13},
    "PowerParameter": {"power": 1, "scale": 2, "shift": 3},
    "PReLUParameter": {"filler": 1, "channel_shared": 2},
    "PythonParameter": {"module": 1, "layer": 2, "param_str": 3, "share_in_parallel": 4},
    "ReductionParameter": {"operation": 1, "axis": 2, "coeff": 3},
    "ReLUParameter": {"negative_slope": 1, "engine": 2},
    "ReshapeParameter": {"shape": 1, "axis": 2, "num_axes": 3},
    "ScaleParameter": {"axis": 1, "num_axes": 2, "filler": 3, "bias_term": 4, "bias_filler": 5},
    "SigmoidParameter": {"engine": 1},
    "SliceParameter": {"axis": 3, "slice_point": 2, "slice_dim": 1},
    "SoftmaxParameter": {"engine": 1, "axis": 2},
    "TanHParameter": {"engine": 1},
    # unimplemented data layers whose source the not-implemented error names
    "HDF5DataParameter": {"source": 1, "batch_size": 2, "shuffle": 3},
    "ImageDataParameter": {"source": 1, "batch_size": 4, "rand_skip": 7, "shuffle": 8, "new_height": 9,
                           "new_width": 10, "is_color": 11, "scale": 2, "mean_file": 3, "crop_size": 5,
                           "mirror": 6, "root_folder": 12},
    "WindowDataParameter": {"source": 1, "scale": 2, "mean_file": 3, "batch_size": 4, "crop_size": 5,
                            "mirror": 6, "fg_threshold": 7, "bg_threshold": 8, "fg_fraction": 9,
                            "context_pad": 10, "crop_mode": 11, "cache_images": 12, "root_folder": 13},
}

# Enum values a binary file stores as numbers (V1 layer types, phases, modes).
CAFFE_ENUMS = {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "FillerParameter.VarianceNorm": {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2},
    "ParamSpec.DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1},
    "LossParameter.NormalizationMode": {"FULL": 0, "VALID": 1, "BATCH_SIZE": 2, "NONE": 3},
    "ConvolutionParameter.Engine": {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2},
    "DataParameter.DB": {"LEVELDB": 0, "LMDB": 1},
    "EltwiseParameter.EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2},
    "HingeLossParameter.Norm": {"L1": 1, "L2": 2},
    "LRNParameter.NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "PoolingParameter.PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "PoolingParameter.RoundMode": {"CEIL": 0, "FLOOR": 1},
    "ReductionParameter.ReductionOp": {"SUM": 1, "ASUM": 2, "SUMSQ": 3, "MEAN": 4},
    "SolverParameter.SnapshotFormat": {"HDF5": 0, "BINARYPROTO": 1},
    "SolverParameter.SolverMode": {"CPU": 0, "GPU": 1},
    "SolverParameter.SolverType": {"SGD": 0, "NESTEROV": 1, "ADAGRAD": 2, "RMSPROP": 3, "ADADELTA": 4, "ADAM": 5},
    "V1LayerParameter.LayerType": {
        "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3, "CONTRASTIVE_LOSS": 37,
        "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7,
        "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28,
        "IM2COL": 11, "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
        "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
        "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22,
        "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31},
}

# dualnet's own fields and enum values in the shared messages start here.
FIRST_DUALNET_NUMBER = 1000


def message_descriptor(name):
    return pb.DESCRIPTOR.message_types_by_name[name]


@pytest.mark.parametrize("message", sorted(CAFFE_FIELDS))
def test_shared_message_has_caffes_field_names_and_numbers(message):
    ours = {field.name: field.number for field in message_descriptor(message).fields}
    theirs = CAFFE_FIELDS[message]
    assert not sorted(set(theirs) - set(ours)), "fields of Caffe's message missing from dualnet.proto"
    assert {name: ours[name] for name in theirs} == theirs
    invented = sorted(name for name, number in ours.items()
                      if number < FIRST_DUALNET_NUMBER and name not in theirs)
    assert not invented, f"fields below {FIRST_DUALNET_NUMBER} that Caffe's {message} does not have"


@pytest.mark.parametrize("enum", sorted(CAFFE_ENUMS))
def test_shared_enum_has_caffes_values(enum):
    message, _, name = enum.rpartition(".")
    scope = message_descriptor(message) if message else pb.DESCRIPTOR
    ours = {value.name: value.number for value in scope.enum_types_by_name[name].values}
    theirs = CAFFE_ENUMS[enum]
    assert {value: ours.get(value) for value in theirs} == theirs
    assert all(number >= FIRST_DUALNET_NUMBER for value, number in ours.items() if value not in theirs)


DUALNET_FIELDS = [("LayerParameter", "hbnn_param"), ("SolverParameter", "dual_param"),
                  ("SolverState", "solver_type"), ("SolverState", "dual_state"),
                  ("DataParameter", "shuffle"), ("DataParameter", "shuffle_seed"), ("BlobProto", "packed")]


@pytest.mark.parametrize("message,field", DUALNET_FIELDS)
def test_dualnet_extensions_are_far_from_caffe_numbers(message, field):
    assert pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number >= 1000
