"""Net: a directed acyclic graph of layers built from a NetParameter.

Building follows Caffe's Net::Init:
  1. keep the layers whose include/exclude rules match the NetState
     (phase, level, stages);
  2. insert Split layers where a blob feeds several layers (so that their
     gradients add up), naming them as Caffe does;
  3. create each layer, connect bottoms to existing blobs (in place when a top
     repeats the bottom at the same index), set it up and infer top shapes;
  4. decide which layers need backward: a layer does when a bottom needs a
     gradient or it has a parameter with lr_mult != 0, and it contributes to a
     loss; propagate_down and force_backward override, as in Caffe.

The public surface is pycaffe's: blobs, params, layers, inputs, outputs,
forward, backward, reshape, copy_from, save, share_with.
"""
import os
from collections import OrderedDict

import numpy as np

from . import dualnet_pb2 as pb
from . import random as dn_random
from .blob import Blob
from .errors import DualnetError, LayerError, NetError
from .layer import LAYER_TYPES, _load_layer_modules, create_layer
from .log import get_logger

TRAIN, TEST = pb.TRAIN, pb.TEST
log = get_logger("dualnet.net")


# ---------------------------------------------------------------- filtering

def state_meets_rule(state, rule):
    """Caffe's StateMeetsRule."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(stage not in stages for stage in rule.stage):
        return False
    if any(stage in stages for stage in rule.not_stage):
        return False
    return True


def filter_net(net_param, state, origin=None, kept=None):
    """The layers of `net_param` that the NetState includes (Caffe's FilterNet).

    `kept`, when given a list, receives the index in `net_param` of each kept layer.
    """
    filtered = pb.NetParameter()
    filtered.CopyFrom(net_param)
    del filtered.layer[:]
    for index, layer in enumerate(net_param.layer):
        if layer.include and layer.exclude:
            where = origin.where(layer.name) if origin else "<net>"
            if origin is not None and index < len(origin.block_lines):
                where = f"{origin.path or '<net>'}:{origin.block_lines[index]}"
            raise NetError(
                f"{where}: layer '{layer.name}': give either include or exclude rules, not both"
            )
        included = not layer.include
        if any(state_meets_rule(state, rule) for rule in layer.exclude):
            included = False
        if any(state_meets_rule(state, rule) for rule in layer.include):
            included = True
        if included:
            filtered.layer.add().CopyFrom(layer)
            if kept is not None:
                kept.append(index)
    return filtered


# ---------------------------------------------------------------- splits

def split_layer_name(layer_name, blob_name, top_index):
    return f"{blob_name}_{layer_name}_{top_index}_split"


def split_blob_name(layer_name, blob_name, top_index, split_index):
    return f"{blob_name}_{layer_name}_{top_index}_split_{split_index}"


def top_loss_weights(layer):
    """The loss weight of each listed top: as given, or the type's default
    (1 on a loss layer's first top). Unknown types count as no loss."""
    if layer.loss_weight:
        return list(layer.loss_weight)
    _load_layer_modules()
    default = getattr(LAYER_TYPES.get(layer.type), "default_loss_weight", 0.0)
    return [default if j == 0 else 0.0 for j in range(len(layer.top))] if default else []


def insert_splits(net_param):
    """Caffe's InsertSplits: a Split layer after every top read by several layers.

    A top with a loss weight that is also read by other layers counts the
    loss as one more reader; the Split then carries that loss weight on its
    first top and the producing layer's own weight on that top becomes 0.
    Unlike Caffe, a loss layer's default weight (no `loss_weight` given)
    counts too: Caffe's InsertSplits sees only explicit weights, so it keeps
    the default weight in the top's diff, where the reader's backward then
    overwrites it (the gradient and the reported loss come out wrong).
    """
    last_producer = {}            # blob name -> (layer index, top index)
    readers = {}                  # (layer, top) -> number of bottoms reading it
    source_of_bottom = {}         # (layer, bottom index) -> (layer, top)
    loss_weight_of_top = {}
    for i, layer in enumerate(net_param.layer):
        for j, name in enumerate(layer.bottom):
            if name not in last_producer:
                # Unknown bottoms are reported with context when the net is built.
                continue
            source = last_producer[name]
            source_of_bottom[(i, j)] = source
            readers[source] = readers.get(source, 0) + 1
        for j, name in enumerate(layer.top):
            last_producer[name] = (i, j)
        for j, weight in enumerate(top_loss_weights(layer)):
            if j < len(layer.top) and weight:
                loss_weight_of_top[(i, j)] = weight
                readers[(i, j)] = readers.get((i, j), 0) + 1

    result = pb.NetParameter()
    result.CopyFrom(net_param)
    del result.layer[:]
    next_split_index = {}
    for i, layer in enumerate(net_param.layer):
        copy = result.layer.add()
        copy.CopyFrom(layer)
        for j, name in enumerate(layer.bottom):
            source = source_of_bottom.get((i, j))
            if source is not None and readers[source] > 1:
                producer = net_param.layer[source[0]]
                k = next_split_index.get(source, 0)
                next_split_index[source] = k + 1
                copy.bottom[j] = split_blob_name(producer.name, name, source[1], k)
        for j, name in enumerate(layer.top):
            count = readers.get((i, j), 0)
            if count <= 1:
                continue
            split = result.layer.add()
            split.name = split_layer_name(layer.name, name, j)
            split.type = "Split"
            split.bottom.append(name)
            for k in range(count):
                split.top.append(split_blob_name(layer.name, name, j, k))
            weight = loss_weight_of_top.get((i, j))
            if weight:
                # The loss moves onto the split's first top.
                split.loss_weight.append(weight)
                split.loss_weight.extend([0.0] * (count - 1))
                if not copy.loss_weight:
                    copy.loss_weight.extend(top_loss_weights(layer))
                copy.loss_weight[j] = 0.0
                next_split_index[(i, j)] = 1
    return result


# ---------------------------------------------------------------- the net

def _shape_text(shape):
    """Caffe's shape_string: '2 3 (6)'."""
    count = int(np.prod(shape)) if shape else 1
    return f"{' '.join(str(d) for d in shape)} ({count})"


class Net:
    """A network of layers, pycaffe-style.

    Net(model, phase)                      model: prototxt path or NetParameter
    Net(model, phase, weights=path)        also copy weights from a .caffemodel
    Net(model, weights_path, phase)        pycaffe's older argument order
    """

    def __init__(self, model, phase=TRAIN, weights=None, *, level=0, stages=(), state=None, origin=None):
        if isinstance(phase, (str, os.PathLike)) and not isinstance(weights, (str, os.PathLike)):
            # pycaffe's Net(model, weights, phase)
            phase, weights = (weights if weights is not None else TRAIN), phase
        from .io.text import Origin, read_net_param
        from .io.upgrade import upgrade_net

        if isinstance(model, pb.NetParameter):
            net_param = pb.NetParameter()
            net_param.CopyFrom(model)
            upgrade_net(net_param)
            self.origin = origin or Origin(None)
        else:
            model = os.fspath(model)
            net_param, self.origin = read_net_param(model)
        if state is None:
            # As Caffe's Net(file, phase, level, stages): phase and level
            # replace the file's, stages are added to its own.
            if phase not in (TRAIN, TEST):
                raise DualnetError(f"phase must be dualnet.TRAIN or dualnet.TEST, got {phase!r}")
            state = pb.NetState()
            state.CopyFrom(net_param.state)
            state.phase, state.level = phase, level
            state.stage.extend(stages)
        self.state = state
        self.phase = state.phase
        phase = state.phase
        self.name = net_param.name
        self.force_backward = net_param.force_backward
        kept = []
        filtered = filter_net(net_param, state, self.origin, kept)
        block_lines = self.origin.block_lines
        self._lines = {layer.name: block_lines[i] for layer, i in zip(filtered.layer, kept)} if block_lines else {}
        block_fields = self.origin.block_fields
        self._fields = {layer.name: block_fields[i] for layer, i in zip(filtered.layer, kept) if i < len(block_fields)}
        for layer in filtered.layer:
            if not layer.HasField("phase"):
                layer.phase = phase
        self.param = insert_splits(filtered)
        self._build()
        if weights:
            self.copy_from(weights)

    # ------------------------------------------------------------ building
    def _where(self, layer_param, field=None):
        """'file:line: layer 'name' (Type)', at field's line:column when the file gives it.

        `field` is a path in the LayerParameter ("type", "inner_product_param.axis"),
        or (path, index) for one value of a repeated field (("bottom", 1)).
        """
        line = self._lines.get(layer_param.name)
        where = f"{self.origin.path or '<net>'}:{line}" if line else self.origin.where(layer_param.name)
        if field is not None:
            path, index = field if isinstance(field, tuple) else (field, 0)
            places = self._fields.get(layer_param.name, {}).get(path, [])
            if places:
                line, column = places[min(index, len(places) - 1)]
                where = f"{self.origin.path or '<net>'}:{line}:{column}"
        return f"{where}: layer '{layer_param.name}' ({layer_param.type})"

    def _fail(self, layer_param, reason, error_type=NetError, field=None):
        raise error_type(f"{self._where(layer_param, field)}: {reason}") from None

    def _build(self):
        self.blobs = OrderedDict()
        self.layers = []
        self._layer_names = []
        self.bottom_names = OrderedDict()
        self.top_names = OrderedDict()
        self._bottoms, self._tops = [], []
        self._loss_weights = []          # per layer: list of (top index, weight)
        self.inputs = []
        self._param_owner = {}           # param name -> (Blob, learnable index, layer name, param index)
        self.learnable_params = []
        self.params_lr = []
        self.params_weight_decay = []
        self._params_given = []          # per learnable param: [lr_mult given, decay_mult given]
        available = OrderedDict()
        writer = {}                      # blob name -> the layer that last wrote it
        blob_needs_grad = {}
        bottom_need_backward = []
        layer_need_backward = []
        names_seen = set()

        for position, param in enumerate(self.param.layer):
            if not param.name:
                self._fail(param, "every layer needs a name")
            if param.name in names_seen:
                self._fail(param, f"another layer is also named '{param.name}'; layer names must be unique")
            names_seen.add(param.name)
            try:
                layer = create_layer(param, self.phase, self.origin.folder)
            except LayerError as error:
                self._fail(param, str(error), field=error.field)
            # bottoms
            bottoms, bottom_grad = [], []
            need_backward = False
            for j, name in enumerate(param.bottom):
                if name not in available:
                    hint = ""
                    later = next((p.name for p in self.param.layer[position + 1:] if name in p.top), None)
                    if later is not None:
                        hint = f"; it is produced by layer '{later}' further down, and layers run in file order"
                    elif name in self.blobs:
                        hint = " (it was consumed by an earlier layer; is an in-place layer out of order?)"
                    elif available:
                        from .errors import did_you_mean

                        hint = did_you_mean(name, list(available))
                    self._fail(param, f"unknown bottom blob '{name}' (bottom {j}){hint}", field=("bottom", j))
                blob = available.pop(name)
                bottoms.append(blob)
                grad = blob_needs_grad[name]
                need_backward |= grad
                if param.propagate_down:
                    if len(param.propagate_down) != len(param.bottom):
                        self._fail(param, "propagate_down must be given once per bottom or not at all",
                                   field="propagate_down")
                    grad = bool(param.propagate_down[j])
                bottom_grad.append(grad)
            # tops
            tops = []
            top_names = list(param.top)
            if layer.auto_top_blobs:
                while len(top_names) < layer.needed_top_count():
                    top_names.append(f"({param.name} automatic {len(top_names)})")
            for j, name in enumerate(top_names):
                if j < len(param.bottom) and param.bottom[j] == name:
                    blob = bottoms[j]          # in place
                    # no other blob holds the array when the layer before made it
                    layer.overwrite_bottom = getattr(writer.get(name), "owns_tops", False)
                elif name in self.blobs:
                    self._fail(param, f"top blob '{name}' is produced by more than one layer", field=("top", j))
                else:
                    blob = Blob()
                    self.blobs[name] = blob
                tops.append(blob)
                writer[name] = layer
                if not name.startswith(f"({param.name} automatic"):
                    available[name] = blob
            if param.type == "Input":
                self.inputs.extend(top_names)
            try:
                layer.check_blob_counts(bottoms, tops)
                with dn_random.layer_stream(param.name):
                    layer.setup(bottoms, tops)
                layer.load_blobs_from_param()
                layer.reshape(bottoms, tops)
            except (LayerError, NetError) as error:
                if isinstance(error, NetError):
                    raise
                self._fail(param, str(error), field=error.field)
            except DualnetError as error:
                self._fail(param, str(error))
            except Exception as error:  # a bug, or a user's Python layer
                if param.type == "Python":
                    raise
                raise NetError(f"{self._where(param)}: setting up failed: {type(error).__name__}: {error}") from error
            self._log_setup(param, top_names, tops)
            # loss weights
            weights = list(param.loss_weight)
            if weights and len(weights) != len(tops):
                self._fail(param, f"loss_weight must be given once per top ({len(tops)}) or not at all",
                           field="loss_weight")
            if not weights:
                weights = [layer.default_loss_weight if j == 0 else 0.0 for j in range(len(tops))]
            self._loss_weights.append([(j, w) for j, w in enumerate(weights) if w])
            # parameters
            layer.param_propagate_down = []
            self._append_params(layer, param)
            for j, spec_grad in enumerate(layer.param_propagate_down):
                need_backward |= spec_grad
            for name in top_names:
                blob_needs_grad[name] = need_backward
            self.layers.append(layer)
            self._layer_names.append(param.name)
            self.bottom_names[param.name] = list(param.bottom)
            self.top_names[param.name] = top_names
            self._bottoms.append(bottoms)
            self._tops.append(tops)
            bottom_need_backward.append(bottom_grad)
            layer_need_backward.append(need_backward)

        # Caffe keeps the remaining blobs in a std::set: outputs come sorted by name.
        self.outputs = sorted(available)
        self._decide_backward(layer_need_backward, bottom_need_backward)
        self.layer_dict = OrderedDict(zip(self._layer_names, self.layers))
        self.params = OrderedDict(
            (name, layer.blobs) for name, layer in zip(self._layer_names, self.layers) if layer.blobs
        )
        log.info("Network initialization done.")

    def _log_setup(self, param, top_names, tops):
        if not log.isEnabledFor(20):
            return
        log.info("Creating Layer %s", param.name)
        for name in param.bottom:
            log.info("%s <- %s", param.name, name)
        for name in top_names:
            log.info("%s -> %s", param.name, name)
        log.info("Setting up %s", param.name)
        for blob in tops:
            log.info("Top shape: %s (%d)", " ".join(str(d) for d in blob.shape), blob.count)

    def _append_params(self, layer, param):
        """Caffe's AppendParam: own each parameter blob, or share a named one."""
        specs = list(param.param)
        if len(specs) > len(layer.blobs):
            self._fail(param, f"{len(specs)} 'param' specs given but the layer has {len(layer.blobs)} parameter blobs")
        for j, blob in enumerate(layer.blobs):
            spec = specs[j] if j < len(specs) else pb.ParamSpec()
            owner = self._param_owner.get(spec.name) if spec.name else None
            if owner is None:
                index = len(self.learnable_params)
                if spec.name:
                    self._param_owner[spec.name] = (blob, index, param.name, j)
                self.learnable_params.append(blob)
                self.params_lr.append(spec.lr_mult)
                self.params_weight_decay.append(spec.decay_mult)
                self._params_given.append([spec.HasField("lr_mult"), spec.HasField("decay_mult")])
                layer.param_propagate_down.append(spec.lr_mult != 0)
                continue
            owner_blob, index, owner_layer, owner_j = owner
            sharing = (f"cannot share param '{spec.name}' owned by layer '{owner_layer}' (its param {owner_j}) "
                       f"with this layer's param {j}")
            if spec.share_mode == pb.ParamSpec.PERMISSIVE:
                if owner_blob.count != blob.count:
                    self._fail(param, f"{sharing}: count mismatch; the owner's shape is "
                                      f"{_shape_text(owner_blob.shape)}, this layer's is {_shape_text(blob.shape)}")
                if owner_blob.shape != blob.shape:
                    self._fail(param, f"{sharing}: share_mode PERMISSIVE between different shapes "
                                      f"({_shape_text(owner_blob.shape)} and {_shape_text(blob.shape)}) would make "
                                      "this layer read the owner's values in another layout, which dualnet does not "
                                      "do; give both layers parameters of the same shape")
            elif owner_blob.shape != blob.shape:
                self._fail(param, f"{sharing}: shape mismatch; the owner's shape is {_shape_text(owner_blob.shape)}, "
                                  f"this layer expects {_shape_text(blob.shape)}; give both layers parameters "
                                  "of the same shape, or the params different names")
            given = self._params_given[index]
            for k, (field, values) in enumerate((("lr_mult", self.params_lr),
                                                 ("decay_mult", self.params_weight_decay))):
                if not spec.HasField(field):
                    continue
                value = getattr(spec, field)
                if given[k] and values[index] != value:
                    self._fail(param, f"shared param '{spec.name}' has mismatched {field}: {value:g} here, "
                                      f"{values[index]:g} earlier (owner layer '{owner_layer}'); give it the "
                                      "same value everywhere")
                given[k] = True
                values[index] = value
            layer.blobs[j] = owner_blob
            layer.param_propagate_down.append(self.params_lr[index] != 0)

    def _decide_backward(self, layer_need_backward, bottom_need_backward):
        """Caffe's pass from the top: only layers under a loss run backward."""
        under_loss, skip_backprop = set(), set()
        for i in range(len(self.layers) - 1, -1, -1):
            names = self.top_names[self._layer_names[i]]
            weighted = {j for j, _ in self._loss_weights[i]}
            contributes = any(j in weighted or name in under_loss for j, name in enumerate(names))
            skip = all(name in skip_backprop for name in names) if names else True
            if layer_need_backward[i] and skip:
                layer_need_backward[i] = False
                bottom_need_backward[i] = [False] * len(bottom_need_backward[i])
            if not contributes:
                layer_need_backward[i] = False
            for j, name in enumerate(self.bottom_names[self._layer_names[i]]):
                if contributes:
                    under_loss.add(name)
                else:
                    bottom_need_backward[i][j] = False
                if not bottom_need_backward[i][j]:
                    skip_backprop.add(name)
        if self.force_backward:
            for i, layer in enumerate(self.layers):
                layer_need_backward[i] = True
                bottom_need_backward[i] = [
                    grad or layer.allow_force_backward(j) for j, grad in enumerate(bottom_need_backward[i])
                ]
                layer.param_propagate_down = [True] * len(layer.blobs)
        self.layer_need_backward = layer_need_backward
        self.bottom_need_backward = bottom_need_backward
        for name, need in zip(self._layer_names, layer_need_backward):
            log.info("%s %s backward computation.", name, "needs" if need else "does not need")

    # ------------------------------------------------------------ running
    def _index(self, name, default):
        if name is None:
            return default
        if isinstance(name, int):
            return name
        try:
            return self._layer_names.index(name)
        except ValueError:
            raise NetError(f"no layer named '{name}' in net '{self.name}'") from None

    def forward_layers(self, start=0, end=None):
        """Run layers start..end (inclusive); return the weighted loss they add."""
        end = len(self.layers) - 1 if end is None else end
        loss = 0.0
        for i in range(start, end + 1):
            layer, bottom, top = self.layers[i], self._bottoms[i], self._tops[i]
            try:
                layer.reshape(bottom, top)
                layer.forward(bottom, top)
            except LayerError as error:
                self._fail(self.param.layer[i], str(error), field=error.field)
            for j, weight in self._loss_weights[i]:
                loss += weight * float(top[j].data.sum())
        return loss

    def backward_layers(self, start=None, end=0):
        """Run backward of layers start..end (start >= end, inclusive)."""
        start = len(self.layers) - 1 if start is None else start
        for i in range(start, end - 1, -1):
            for j, weight in self._loss_weights[i]:
                self._tops[i][j].diff[...] = weight
        for i in range(start, end - 1, -1):
            if not self.layer_need_backward[i]:
                continue
            layer = self.layers[i]
            try:
                layer.backward(self._tops[i], self.bottom_need_backward[i], self._bottoms[i])
            except LayerError as error:
                self._fail(self.param.layer[i], str(error), field=error.field)

    def forward(self, blobs=None, start=None, end=None, **kwargs):
        """Run the net; keyword arrays are copied into input blobs first.

        Returns {output name: array} for the net outputs and any names in `blobs`.
        """
        for name, value in kwargs.items():
            if name not in self.blobs:
                raise NetError(f"forward(): '{name}' is not a blob of net '{self.name}'")
            target = self.blobs[name]
            value = np.asarray(value)
            if value.shape != target.shape:
                if value.size == target.count:
                    value = value.reshape(target.shape)
                else:
                    raise NetError(
                        f"forward(): input '{name}' has shape {value.shape}, the blob has {target.shape}; "
                        f"call net.blobs['{name}'].reshape(...) and net.reshape() first"
                    )
            target.data[...] = value
        first = self._index(start, 0)
        last = self._index(end, len(self.layers) - 1)
        self.loss = self.forward_layers(first, last)
        names = set(self.outputs if end is None else self.top_names[self._layer_names[last]])
        names.update(blobs or [])
        return {name: self.blobs[name].data for name in self.blobs if name in names}

    def backward(self, diffs=None, start=None, end=None, **kwargs):
        """Backpropagate; keyword arrays are copied into the outputs' diffs first.

        Returns {input name: diff} for the net inputs and any names in `diffs`.
        """
        for name, value in kwargs.items():
            if name not in self.blobs:
                raise NetError(f"backward(): '{name}' is not a blob of net '{self.name}'")
            self.blobs[name].diff[...] = np.asarray(value).reshape(self.blobs[name].shape)
        first = self._index(start, len(self.layers) - 1)
        last = self._index(end, 0)
        self.backward_layers(first, last)
        names = set(self.inputs if end is None else self.bottom_names[self._layer_names[last]])
        names.update(diffs or [])
        return {name: self.blobs[name].diff for name in self.blobs if name in names}

    def forward_backward(self):
        """One training pass: forward, then backward; returns the loss."""
        loss = self.forward_layers()
        self.loss = loss
        self.backward_layers()
        return loss

    def reshape(self):
        """Propagate input shape changes through every layer."""
        for i, layer in enumerate(self.layers):
            try:
                layer.reshape(self._bottoms[i], self._tops[i])
            except LayerError as error:
                self._fail(self.param.layer[i], str(error), field=error.field)

    def clear_param_diffs(self):
        for blob in self.learnable_params:
            blob.diff[...] = 0

    def first_nonfinite(self):
        """(layer name, blob name) of the first top with NaN/Inf data, or None."""
        for i, name in enumerate(self._layer_names):
            for top_name, top in zip(self.top_names[name], self._tops[i]):
                if top.data.size and not np.isfinite(top.data).all():
                    return name, top_name
        return None

    def loss_tops(self):
        """[(layer index, top index, weight)] of every weighted top."""
        return [(i, j, w) for i, pairs in enumerate(self._loss_weights) for j, w in pairs]

    def output_weight(self, name):
        """The loss weight of net output `name` (0 if it is not a loss)."""
        for i, pairs in enumerate(self._loss_weights):
            for j, weight in pairs:
                if self.top_names[self._layer_names[i]][j] == name:
                    return weight
        return 0.0

    # ------------------------------------------------------------ weights
    def share_with(self, other):
        """Use `other`'s parameter blobs (same data and diff), by layer name."""
        for name, blobs in self.params.items():
            if name not in other.params:
                continue
            theirs = other.params[name]
            if len(theirs) != len(blobs):
                raise NetError(f"cannot share layer '{name}': {len(blobs)} vs {len(theirs)} parameter blobs")
            for j, blob in enumerate(blobs):
                if theirs[j].shape != blob.shape:
                    raise NetError(
                        f"cannot share layer '{name}' param {j}: shape {blob.shape} vs {theirs[j].shape}"
                    )
                owner = theirs[j]
                self.layer_dict[name].blobs[j] = owner
                for k, learnable in enumerate(self.learnable_params):
                    if learnable is blob:
                        self.learnable_params[k] = owner
            self.params[name] = self.layer_dict[name].blobs

    def share_data_cursors_with(self, other):
        """Make same-named data layers draw from `other`'s cursors, so that several
        instances of one net (e.g. for pipelining) read consecutive batches."""
        for name, layer in self.layer_dict.items():
            theirs = other.layer_dict.get(name)
            if theirs is not None and hasattr(layer, "share_cursor") and type(theirs) is type(layer):
                layer.share_cursor(theirs)

    def copy_from(self, path):
        """Copy weights from a .caffemodel, matching layers by name."""
        from .io.caffemodel import copy_weights

        copy_weights(self, path)

    def save(self, path, packed_hbnn=False):
        """Write the weights as a .caffemodel (atomically); returns bytes written."""
        from .io.caffemodel import save_net

        return save_net(self, path, packed_hbnn=packed_hbnn)

    def to_proto(self, write_diff=False):
        from .io.caffemodel import net_to_proto

        return net_to_proto(self, write_diff=write_diff)

    def __repr__(self):
        return f"<Net '{self.name}' phase={'TRAIN' if self.phase == TRAIN else 'TEST'} layers={len(self.layers)}>"
