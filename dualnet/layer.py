"""The layer contract and the registry of layer types.

Every layer follows Caffe's lifecycle, driven by the Net:

    setup(bottom, top)      read the LayerParameter, create parameter blobs
    reshape(bottom, top)    shape the tops from the bottoms (called before
                            every forward; must be cheap when nothing changed)
    forward(bottom, top)    compute top.data from bottom.data
    backward(top, propagate_down, bottom)
                            compute bottom.diff (overwrite) where
                            propagate_down[i], and accumulate (+=) parameter
                            diffs where self.param_propagate_down[j]

`bottom` and `top` are lists of Blob. Work in the bottom's dtype (float32 in
nets, float64 in gradient checks). State a layer keeps between its forward and
the matching backward lives in `self.cache`, never longer.

A layer module registers its class with `@register("TypeName")`; adding a
layer is adding a file to dualnet/layers/.
"""
import numpy as np

from . import dualnet_pb2 as pb
from .blob import Blob
from .errors import LayerError, did_you_mean

LAYER_TYPES = {}


def register(type_name):
    """Class decorator: make `type_name` usable as a prototxt layer type."""

    def decorate(cls):
        if type_name in LAYER_TYPES:
            raise RuntimeError(f"layer type {type_name!r} registered twice")
        cls.type = type_name
        LAYER_TYPES[type_name] = cls
        return cls

    return decorate


# Caffe layer types dualnet does not implement, with what to do instead.
NOT_IMPLEMENTED = {
    "ImageData": "convert the image list to an LMDB with Caffe's convert_imageset (or to an NPZ) and use a Data layer",
    "WindowData": "crop the windows into an LMDB or NPZ and use a Data layer",
    "HDF5Data": "convert the HDF5 file to an NPZ (arrays 'data' and 'label') and use a Data layer",
    "HDF5Output": "save outputs from Python with net.forward() instead",
    "Im2col": "use a Convolution layer",
    "Threshold": "use a Python layer",
    "SPP": "use Pooling layers and Concat",
    "Embed": "use an InnerProduct layer on one-hot inputs",
    "RNN": "recurrent layers are not supported",
    "LSTM": "recurrent layers are not supported",
    "Tile": "use Concat of the same blob",
    "InfogainLoss": "use SoftmaxWithLoss, or a Python layer for the infogain matrix",
    "ContrastiveLoss": "use a Python layer",
}


# The parameter message whose `source` an unimplemented data layer would read.
SOURCE_PARAMS = {"ImageData": "image_data_param", "WindowData": "window_data_param", "HDF5Data": "hdf5_data_param"}


def not_implemented_reason(param):
    """Why `param.type` cannot be built and what to do instead, naming the data it would read."""
    field = SOURCE_PARAMS.get(param.type)
    source = getattr(param, field).source if field else ""
    reads = f" (it would read {field}.source '{source}')" if source else ""
    return f"layer type '{param.type}' is not implemented by dualnet{reads}: {NOT_IMPLEMENTED[param.type]}"


def create_layer(param, phase=pb.TRAIN, source_dir=None):
    """Instantiate the layer class named by `param.type`."""
    _load_layer_modules()
    cls = LAYER_TYPES.get(param.type)
    if cls is None and param.type in NOT_IMPLEMENTED:
        raise LayerError(not_implemented_reason(param), field="type")
    if cls is None:
        known = ", ".join(sorted(LAYER_TYPES))
        raise LayerError(
            f"unknown layer type '{param.type}'{did_you_mean(param.type, LAYER_TYPES)} "
            f"(known types: {known})",
            field="type",
        )
    return cls(param, phase, source_dir)


def _load_layer_modules():
    # Importing the packages runs every @register.
    from . import layers  # noqa: F401
    from .hbnn import layers as hbnn_layers  # noqa: F401


class Layer:
    type = None

    # Blob-count contract, checked before setup (None = unconstrained).
    exact_num_bottom = None
    min_bottom = None
    max_bottom = None
    exact_num_top = None
    min_top = None
    max_top = None
    equal_num_bottom_top = False
    # Create unnamed tops when the prototxt lists fewer than needed (loss layers).
    auto_top_blobs = False
    # Loss weight of each top when the prototxt gives none (loss layers: 1 for top 0).
    default_loss_weight = 0.0
    # Whether every array this layer leaves in its tops is its own: one it computed into
    # (Blob.output_data), never an array shared with another blob (Split, Reshape and
    # Input tops are shared). The Net lets an in-place layer after such a layer
    # overwrite its bottom; it sets `overwrite_bottom` on that layer.
    owns_tops = False
    overwrite_bottom = False

    def __init__(self, param, phase=pb.TRAIN, source_dir=None):
        self.param = param
        self.phase = phase
        self.source_dir = source_dir
        self.blobs = []
        self.param_propagate_down = []
        self.cache = {}

    @property
    def name(self):
        return self.param.name

    # ---- the lifecycle (override these) ---------------------------------
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        raise NotImplementedError

    def forward(self, bottom, top):
        raise NotImplementedError

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise LayerError(f"{self.type} layers have no backward pass")

    def allow_force_backward(self, bottom_index):
        return True

    # ---- helpers for subclasses ----------------------------------------
    def check_blob_counts(self, bottom, top):
        nb, nt = len(bottom), len(top)

        def plural(n):
            return f"{n} blob" + ("" if n == 1 else "s")

        if self.exact_num_bottom is not None and nb != self.exact_num_bottom:
            raise LayerError(f"{self.type} takes {plural(self.exact_num_bottom)} as bottom, got {nb}")
        if self.min_bottom is not None and nb < self.min_bottom:
            raise LayerError(f"{self.type} takes at least {plural(self.min_bottom)} as bottom, got {nb}")
        if self.max_bottom is not None and nb > self.max_bottom:
            raise LayerError(f"{self.type} takes at most {plural(self.max_bottom)} as bottom, got {nb}")
        if self.exact_num_top is not None and nt != self.exact_num_top:
            raise LayerError(f"{self.type} produces {plural(self.exact_num_top)} as top, got {nt}")
        if self.min_top is not None and nt < self.min_top:
            raise LayerError(f"{self.type} produces at least {plural(self.min_top)} as top, got {nt}")
        if self.max_top is not None and nt > self.max_top:
            raise LayerError(f"{self.type} produces at most {plural(self.max_top)} as top, got {nt}")
        if self.equal_num_bottom_top and nb != nt:
            raise LayerError(f"{self.type} needs one top per bottom, got {nb} bottoms and {nt} tops")

    def needed_top_count(self):
        return max(self.exact_num_top or 0, self.min_top or 0)

    def load_blobs_from_param(self):
        """Use weights given inside the LayerParameter (`blobs { ... }`), as Caffe does."""
        given = self.param.blobs
        if not given:
            return False
        from .io.blobproto import blob_from_proto, proto_shape, shape_matches

        if self.blobs and len(given) != len(self.blobs):
            raise LayerError(f"the prototxt gives {len(given)} blobs, the layer has {len(self.blobs)}")
        for i, proto in enumerate(given):
            # Caffe's ShapeEquals: the same shape, or legacy 4-D dims that pad to it.
            if self.blobs and not shape_matches(proto, self.blobs[i].shape):
                raise LayerError(
                    f"blob {i} given in the prototxt has shape {proto_shape(proto)}, but with its "
                    f"parameters and bottom shapes the layer needs {self.blobs[i].shape}"
                )
        loaded = [blob_from_proto(b) for b in given]
        for i, blob in enumerate(loaded):
            if self.blobs:
                blob.data = blob.data.reshape(self.blobs[i].shape).astype(self.blobs[i].dtype, copy=False)
                blob.diff = np.zeros_like(blob.data)
        self.blobs = loaded
        return True

    def new_param_blob(self, shape, filler_param=None, default_filler=None):
        """A parameter blob of `shape`, filled by a FillerParameter."""
        from .fillers import fill

        blob = Blob(shape)
        if filler_param is None or not filler_param.ListFields():
            filler_param = default_filler
        if filler_param is not None:
            fill(blob.data, filler_param)
        return blob

    def __repr__(self):
        return f"<{self.type} layer '{self.name}'>"


def canonical_axis(axis, num_axes, field=None):
    """Caffe's CanonicalAxisIndex: a possibly negative axis as 0..num_axes-1.

    `field` names the parameter the axis came from ("softmax_param.axis"),
    so that an error points at it.
    """
    if not -num_axes <= axis < num_axes:
        raise LayerError(f"axis {axis} is out of range for a blob with {num_axes} axes", field=field)
    return axis + num_axes if axis < 0 else axis


class NeuronLayer(Layer):
    """One bottom, one top of the same shape; may run in place."""

    exact_num_bottom = 1
    exact_num_top = 1

    def reshape(self, bottom, top):
        top[0].reshape(bottom[0].shape)


class LossLayer(Layer):
    """Predictions and targets in, a scalar loss out (loss weight 1 by default)."""

    exact_num_bottom = 2
    exact_num_top = 1
    auto_top_blobs = True
    default_loss_weight = 1.0

    def reshape(self, bottom, top):
        if bottom[0].shape[0] != bottom[1].shape[0]:
            raise LayerError(
                f"the data and label should have the same first dimension, "
                f"got {bottom[0].shape} and {bottom[1].shape}"
            )
        top[0].reshape(())

    def allow_force_backward(self, bottom_index):
        # Labels never take a gradient.
        return bottom_index != 1
