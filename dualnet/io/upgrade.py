"""Bring legacy Caffe nets and solvers to the current format, as Caffe does.

- V1 nets (`layers { type: CONVOLUTION blobs_lr: 1 ... }`) become `layer`
  blocks: the type enum becomes its string name, `blobs_lr` / `weight_decay`
  become ParamSpec lr_mult / decay_mult, named params become ParamSpec names.
- Transformation fields given in data_param (scale, mean_file, crop_size,
  mirror) move into transform_param.
- Deprecated net inputs (`input:` with `input_shape` or `input_dim`) become
  an Input layer named "input".
- Old BatchNorm layers declaring three param specs get lr_mult and
  decay_mult 0 on each (the statistics are not learned).
- Solvers: the deprecated `solver_type` enum becomes the `type` string.
V0 nets (a `layer` nested in `layers`) are refused with the Caffe tool to run.
"""
from .. import dualnet_pb2 as pb
from ..errors import PrototxtError


class UpgradeError(PrototxtError):
    """A legacy construct that cannot be upgraded.

    `subject` says what it concerns, so that the text reader can add the
    line: "input" (the deprecated net inputs), "solver_type", or the index
    of a V1 layer in NetParameter.layers.
    """

    def __init__(self, source, reason, subject=None):
        super().__init__(source, 0, 0, reason)
        self.reason, self.subject = reason, subject


V1_TYPE_NAMES = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# V1 fields copied unchanged into the same-named LayerParameter field.
_V1_COPIED = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param",
    "eltwise_param", "exp_param", "hdf5_data_param", "hdf5_output_param",
    "hinge_loss_param", "image_data_param", "infogain_loss_param",
    "inner_product_param", "lrn_param", "memory_data_param", "mvn_param",
    "pooling_param", "power_param", "relu_param", "sigmoid_param",
    "softmax_param", "slice_param", "tanh_param", "threshold_param",
    "window_data_param", "transform_param", "loss_param",
)


def upgrade_v1_layer(v1, source="<net>", index=None):
    """One V1LayerParameter as a LayerParameter."""
    if v1.HasField("layer"):
        raise UpgradeError(
            source,
            f"layer '{v1.name or v1.layer.name}' uses the V0 format (a nested 'layer' block), "
            "which predates V1 and is not read by dualnet; convert the file with Caffe's "
            "upgrade_net_proto_text (or upgrade_net_proto_binary for weights) first",
            index,
        )
    layer = pb.LayerParameter()
    layer.name = v1.name
    layer.type = V1_TYPE_NAMES[pb.V1LayerParameter.LayerType.Name(v1.type)]
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    for rule in v1.include:
        layer.include.add().CopyFrom(rule)
    for rule in v1.exclude:
        layer.exclude.add().CopyFrom(rule)
    for blob in v1.blobs:
        layer.blobs.add().CopyFrom(blob)
    count = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))
    for i in range(count):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    layer.loss_weight.extend(v1.loss_weight)
    for field in _V1_COPIED:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))
    return layer


def _upgrade_data_transformation(layer):
    """Move deprecated transformation fields of data_param into transform_param."""
    if not layer.HasField("data_param"):
        return
    data, transform = layer.data_param, layer.transform_param
    if data.HasField("scale"):
        transform.scale = data.scale
        data.ClearField("scale")
    if data.HasField("mean_file"):
        transform.mean_file = data.mean_file
        data.ClearField("mean_file")
    if data.HasField("crop_size"):
        transform.crop_size = data.crop_size
        data.ClearField("crop_size")
    if data.HasField("mirror"):
        transform.mirror = data.mirror
        data.ClearField("mirror")


def _upgrade_input(net, source):
    """Deprecated `input` fields become an Input layer at the front."""
    if not net.input:
        if net.input_shape or net.input_dim:
            raise UpgradeError(source, "input_shape / input_dim given without 'input' blob names", "input")
        return
    shapes = []
    if net.input_shape:
        if len(net.input_shape) != len(net.input):
            raise UpgradeError(
                source,
                f"{len(net.input)} 'input' blobs but {len(net.input_shape)} 'input_shape' entries; "
                "give one input_shape per input",
                "input",
            )
        shapes = [list(s.dim) for s in net.input_shape]
    elif net.input_dim:
        if len(net.input_dim) != 4 * len(net.input):
            raise UpgradeError(
                source,
                f"{len(net.input)} 'input' blobs need {4 * len(net.input)} 'input_dim' values "
                f"(num, channels, height, width each), got {len(net.input_dim)}",
                "input",
            )
        dims = list(net.input_dim)
        shapes = [dims[4 * i: 4 * i + 4] for i in range(len(net.input))]
    layer = pb.LayerParameter(name="input", type="Input")
    layer.top.extend(net.input)
    for shape in shapes:
        layer.input_param.shape.add().dim.extend(shape)
    existing = [pb.LayerParameter.FromString(l.SerializeToString()) for l in net.layer]
    del net.layer[:]
    net.layer.extend([layer] + existing)
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


def _upgrade_batch_norm(layer):
    # The old BatchNorm definition declared three param specs; its statistics
    # are not learned, so Caffe sets their lr_mult and decay_mult to 0 (and
    # keeps the rest of each spec, e.g. its name).
    if layer.type == "BatchNorm" and len(layer.param) == 3:
        for spec in layer.param:
            spec.lr_mult = 0.0
            spec.decay_mult = 0.0


def upgrade_net(net, source="<net>"):
    """Upgrade a NetParameter in place; return True if anything changed."""
    changed = False
    if net.layers:
        if net.layer:
            raise UpgradeError(
                source,
                "the net mixes 'layer' (current format) and 'layers' (legacy V1 format); "
                "write every layer as 'layer { type: \"...\" }'",
            )
        upgraded = [upgrade_v1_layer(v1, source, i) for i, v1 in enumerate(net.layers)]
        del net.layers[:]
        net.layer.extend(upgraded)
        changed = True
    for layer in net.layer:
        before = layer.SerializeToString()
        _upgrade_data_transformation(layer)
        _upgrade_batch_norm(layer)
        changed |= before != layer.SerializeToString()
    if net.input or net.input_shape or net.input_dim:
        _upgrade_input(net, source)
        changed = True
    return changed


_SOLVER_TYPE_NAMES = {
    pb.SolverParameter.SGD: "SGD",
    pb.SolverParameter.NESTEROV: "Nesterov",
    pb.SolverParameter.ADAGRAD: "AdaGrad",
    pb.SolverParameter.RMSPROP: "RMSProp",
    pb.SolverParameter.ADADELTA: "AdaDelta",
    pb.SolverParameter.ADAM: "Adam",
}


def upgrade_solver(solver, source="<solver>"):
    if solver.HasField("solver_type"):
        if solver.HasField("type"):
            raise UpgradeError(
                source,
                f"give either 'type' or the deprecated 'solver_type', not both "
                f"(type: \"{solver.type}\", solver_type: {pb.SolverParameter.SolverType.Name(solver.solver_type)})",
                "solver_type",
            )
        solver.type = _SOLVER_TYPE_NAMES[solver.solver_type]
        solver.ClearField("solver_type")
    for net in list(solver.test_net_param) + [solver.net_param, solver.train_net_param]:
        upgrade_net(net, source)
