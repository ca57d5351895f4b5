"""Cut one net into net1 and net2 at a blob.

net1 is every layer needed to compute the cut blob from the data (the data
layers stay in net1; in-place layers on the cut blob belong to net1, so the
cut is the blob's final value); net2 is the rest, starting from an Input layer
that provides the cut blob and the data-layer tops net2 reads (the labels,
which travel with the activations). A cut is valid only if net2 reads nothing
else computed in net1.

net1 also gets the consistency loss (TRAIN phase only):
  ADMM        EuclideanLoss(cut, <cut>_target), loss_weight w
  DUAL_LAYER  a copy of net2's first layer L after the cut ("conv3'"), named
              <L>_dual, and EuclideanLoss (or NormalizedEuclideanLoss) between
              its output and <L's top>_target, which net2 sends back.
net2 gets force_backward so the gradient reaches its cut input.
Hand-written halves (split_from_pair; `dualnet split` writes such a pair)
get the same; a consistency loss net1 already has takes the solver's
consistency_weight and loss type, since net2's z-step size N / w assumes them.

Shapes come from building the whole net once per phase.
"""
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import DualnetError
from ..log import get_logger
from ..net import Net, filter_net

ADMM, DUAL_LAYER = pb.DualParameter.ADMM, pb.DualParameter.DUAL_LAYER
PHASES = (pb.TRAIN, pb.TEST)
PHASE_NAMES = {pb.TRAIN: "TRAIN", pb.TEST: "TEST"}
log = get_logger("dualnet.dual")


class SplitError(DualnetError):
    """The net cannot be cut at the requested blob."""


@dataclass
class Split:
    net1: pb.NetParameter
    net2: pb.NetParameter
    cut: str
    mode: int
    label_blobs: list                      # data-layer tops net2 reads, besides the cut
    cut_shapes: dict                       # phase -> shape of the cut blob
    label_shapes: dict                     # phase -> {name: shape}
    first_layers: list                     # names of the net2 layers that read the cut (TRAIN)
    target_blob: str                       # the blob net2 sends back (DUAL_LAYER) or the cut (ADMM)
    target_shapes: dict = field(default_factory=dict)   # phase -> shape of the target blob


def _is_data_layer(layer):
    return not layer.bottom and layer.type not in ("Input",)


def net1_layers(layers, cut):
    """Names of the layers needed for the cut blob's final value."""
    needed, members = {cut}, set()
    for layer in reversed(layers):
        if set(layer.top) & needed:
            members.add(layer.name)
            needed.update(layer.bottom)
    return members


def _check_cut(layers, cut, phase, source):
    names = [t for layer in layers for t in layer.top]
    if cut not in names:
        raise SplitError(f"{source}: no blob named '{cut}' in the {PHASE_NAMES[phase]} net "
                         f"(blobs: {', '.join(dict.fromkeys(names))})")
    members = net1_layers(layers, cut)
    produced_in_net1 = {t for layer in layers if layer.name in members for t in layer.top}
    data_tops = {t for layer in layers if layer.name in members and _is_data_layer(layer) for t in layer.top}
    labels = []
    for layer in layers:
        if layer.name in members:
            continue
        for bottom in layer.bottom:
            if bottom == cut or bottom not in produced_in_net1:
                continue
            if bottom in data_tops:
                if bottom not in labels:
                    labels.append(bottom)
                continue
            raise SplitError(
                f"{source}: cannot cut at '{cut}': layer '{layer.name}' after the cut reads '{bottom}', which "
                f"is computed before the cut; pick a blob that every later layer reaches only through it"
            )
        if cut in layer.top and cut not in layer.bottom:
            raise SplitError(f"{source}: cannot cut at '{cut}': layer '{layer.name}' after the cut writes it again")
    if len(members) == len(layers):
        raise SplitError(f"{source}: cutting at '{cut}' leaves nothing for net2 ('{cut}' is the net's last blob)")
    if all(_is_data_layer(layer) for layer in layers if layer.name in members):
        raise SplitError(f"{source}: cutting at '{cut}' leaves only the data layers in net1; cut after a layer that computes")
    return members, labels


def _full_nets(net_param, origin):
    nets = {}
    for phase in PHASES:
        try:
            nets[phase] = Net(net_param, phase, origin=origin)
        except DualnetError as error:
            raise SplitError(f"cannot build the {PHASE_NAMES[phase]} net to split it: {error}") from None
    return nets


def _input_layer(name, tops, shapes, phase):
    layer = pb.LayerParameter(name=name, type="Input")
    layer.top.extend(tops)
    for shape in shapes:
        layer.input_param.shape.add().dim.extend(int(d) for d in shape)
    layer.include.add().phase = phase
    return layer


def split_net(net_param, cut, mode=ADMM, origin=None, consistency_weight=1.0, normalize=False, nets=None):
    """The Split of `net_param` at blob `cut` (see the module docstring)."""
    source = origin.path if origin is not None and origin.path else net_param.name or "<net>"
    nets = nets or _full_nets(net_param, origin)
    per_phase, labels = {}, []
    for phase in PHASES:
        layers = list(filter_net(net_param, pb.NetState(phase=phase)).layer)
        members, phase_labels = _check_cut(layers, cut, phase, source)
        per_phase[phase] = members
        labels += [name for name in phase_labels if name not in labels]
    in_net1 = per_phase[pb.TRAIN] | per_phase[pb.TEST]
    cut_shapes = {phase: nets[phase].blobs[cut].shape for phase in PHASES}
    label_shapes = {phase: {name: nets[phase].blobs[name].shape for name in labels} for phase in PHASES}
    train_layers = list(filter_net(net_param, pb.NetState(phase=pb.TRAIN)).layer)
    first = [l.name for l in train_layers if l.name not in per_phase[pb.TRAIN] and cut in l.bottom]

    net1 = pb.NetParameter(name=f"{net_param.name}_net1" if net_param.name else "net1")
    net2 = pb.NetParameter(name=f"{net_param.name}_net2" if net_param.name else "net2", force_backward=True)
    for phase in PHASES:
        shapes = [cut_shapes[phase]] + [label_shapes[phase][name] for name in labels]
        net2.layer.append(_input_layer(f"{cut}_input_{PHASE_NAMES[phase].lower()}", [cut] + labels, shapes, phase))
    for layer in net_param.layer:
        (net1 if layer.name in in_net1 else net2).layer.add().CopyFrom(layer)
    if labels:
        # net1 only forwards the labels to net2; a Silence keeps them off its outputs.
        silence = net1.layer.add(name="labels_to_net2", type="Silence")
        silence.bottom.extend(labels)

    target_blob, target_shapes, prediction = cut, dict(cut_shapes), cut
    if mode == DUAL_LAYER:
        layer, target_shapes = _dual_layer_source(first, train_layers, cut, nets, source)
        target_blob = layer.top[0]
        prediction = _add_dual_layer(net1, layer)
    _add_consistency(net1, prediction, target_blob, target_shapes[pb.TRAIN], consistency_weight, normalize)
    return Split(net1, net2, cut, mode, labels, cut_shapes, label_shapes, first, target_blob, target_shapes)


def _dual_layer_source(first, layers, cut, nets, source):
    """net2's one layer L after the cut that DUAL_LAYER copies into net1, and its top's shape per phase."""
    if len(first) != 1:
        raise SplitError(f"{source}: DUAL_LAYER needs exactly one layer reading '{cut}' after the cut, "
                         f"found {len(first)} ({', '.join(first) or 'none'})")
    layer = next(l for l in layers if l.name == first[0])
    if len(layer.top) != 1:
        raise SplitError(f"{source}: DUAL_LAYER copies '{layer.name}', which must have one top")
    return layer, {phase: nets[phase].blobs[layer.top[0]].shape for phase in PHASES
                   if layer.top[0] in nets[phase].blobs}


def _add_dual_layer(net1, layer):
    """net1's copy <L>_dual of net2's first layer L (TRAIN only, its own weights); returns its top."""
    dual = net1.layer.add()
    dual.CopyFrom(layer)
    dual.name, dual.top[0] = f"{layer.name}_dual", f"{layer.top[0]}_dual"
    del dual.include[:]
    del dual.exclude[:]
    dual.include.add().phase = pb.TRAIN
    for spec in dual.param:
        spec.ClearField("name")           # its own weights, not shared with anything in net1
    return dual.top[0]


def _consistency_type(normalize):
    return "NormalizedEuclideanLoss" if normalize else "EuclideanLoss"


def _add_consistency(net1, prediction, target_blob, target_shape, weight, normalize):
    """The `<target>_target` Input and the consistency loss between `prediction` and it (TRAIN only)."""
    net1.layer.append(_input_layer(f"{target_blob}_target", [f"{target_blob}_target"], [target_shape], pb.TRAIN))
    loss = net1.layer.add(name="consistency_loss", type=_consistency_type(normalize))
    loss.bottom.extend([prediction, f"{target_blob}_target"])
    loss.top.append("consistency_loss")
    loss.loss_weight.append(weight)
    loss.propagate_down.extend([True, False])
    loss.include.add().phase = pb.TRAIN


def _apply_consistency(net1, target_layer, weight, normalize, source):
    """Give a hand-written (or `dualnet split`-written) consistency loss the solver's weight and type.

    The solver's dual_param is authoritative: net2's z-step size defaults to
    N / consistency_weight, which reproduces backpropagation only when net1's
    loss has that same weight.
    """
    target = next(l for l in net1.layer if l.name == target_layer)
    readers = [l for l in net1.layer if set(l.bottom) & set(target.top)]
    if len(readers) != 1 or readers[0].type not in ("EuclideanLoss", "NormalizedEuclideanLoss"):
        raise SplitError(f"{source}: net1's target '{target_layer}' must be read by exactly one EuclideanLoss or "
                         f"NormalizedEuclideanLoss (the consistency loss), found "
                         f"{', '.join(f'{l.name} ({l.type})' for l in readers) or 'none'}")
    loss = readers[0]
    changes = []
    wanted = _consistency_type(normalize)
    if loss.type != wanted:
        changes.append(f"type {loss.type} -> {wanted} (normalize_consistency: {str(normalize).lower()})")
        loss.type = wanted
    old_weight = loss.loss_weight[0] if loss.loss_weight else 1.0
    if old_weight != weight or len(loss.loss_weight) != 1:
        changes.append(f"loss_weight {old_weight:g} -> {weight:g} (consistency_weight)")
        del loss.loss_weight[:]
        loss.loss_weight.append(weight)
    if changes:
        log.info("%s: consistency loss '%s' takes the solver's dual_param: %s", source, loss.name, "; ".join(changes))


# ---------------------------------------------------------------- costs

def layer_flops(net):
    """[(name, type, forward FLOPs, backward FLOPs)] for a built net (its batch)."""
    out = []
    for name, layer, bottoms, tops in zip(net._layer_names, net.layers, net._bottoms, net._tops):
        kind = layer.type
        top_count = sum(t.count for t in tops)
        weights = layer.blobs[0].count if layer.blobs else 0
        if kind in ("Convolution", "HBNNConvolution") and weights:
            # each output value: (C_in/group * kh * kw) multiply-adds
            per_output = weights // layer.blobs[0].shape[0]
            forward = 2 * tops[0].count * per_output
            backward = 2 * forward
        elif kind == "Deconvolution" and weights:
            per_input = weights // layer.blobs[0].shape[0]
            forward = 2 * bottoms[0].count * per_input
            backward = 2 * forward
        elif kind in ("InnerProduct", "HBNNInnerProduct") and weights:
            forward = 2 * tops[0].count * (weights // max(1, tops[0].shape[-1]))
            backward = 2 * forward
        elif kind == "Pooling":
            forward = sum(b.count for b in bottoms)
            backward = forward
        elif kind in ("Input", "Data", "MemoryData", "DummyData", "Split", "Silence"):
            forward = backward = 0
        else:
            forward = max(top_count, sum(b.count for b in bottoms))
            backward = forward
        out.append((name, kind, int(forward), int(backward)))
    return out


class Cut(NamedTuple):
    """One candidate cut and what each half costs per TRAIN iteration."""
    blob: str
    net1_flops: int           # forward + backward FLOPs of net1's layers
    net2_flops: int
    cut_bytes: int            # the cut blob in float32 (crosses once each way)
    net1_bytes: int           # activations net1 holds: data + diff (float32) of each of its blobs
    net2_bytes: int


def activation_bytes(train, train_layers, members, cut, labels):
    """(net1, net2) bytes of activations, data and diff in float32, per TRAIN iteration.

    net1 holds the blobs its layers compute, plus the cut's target and the
    (scalar) consistency loss that the ADMM split adds; net2 holds its inputs
    (the cut and the labels) and the blobs its layers compute. A blob is
    counted once however many in-place layers write it; Caffe's automatic
    Split copies are not counted.
    """
    count = {name: int(np.prod(blob.shape, dtype=np.int64)) for name, blob in train.blobs.items()}
    net1 = {top for layer in train_layers if layer.name in members for top in layer.top}
    net2 = {top for layer in train_layers if layer.name not in members for top in layer.top} | {cut, *labels}
    values1 = sum(count[name] for name in net1) + count[cut] + 1
    values2 = sum(count[name] for name in net2)
    return 2 * 4 * values1, 2 * 4 * values2


def candidate_cuts(net_param, origin=None):
    """Every valid cut with its costs (a list of Cut, in net order)."""
    nets = _full_nets(net_param, origin)
    train = nets[pb.TRAIN]
    flops = {name: f + b for name, _kind, f, b in layer_flops(train)}
    total = sum(flops.values())
    layers = {phase: list(filter_net(net_param, pb.NetState(phase=phase)).layer) for phase in PHASES}
    seen, rows = set(), []
    for layer in layers[pb.TRAIN]:
        for blob in layer.top:
            if blob in seen or blob not in train.blobs:
                continue
            seen.add(blob)
            try:
                members, labels = _check_cut(layers[pb.TRAIN], blob, pb.TRAIN, "")
                _check_cut(layers[pb.TEST], blob, pb.TEST, "")
            except SplitError:
                continue
            first = sum(cost for name, cost in flops.items() if name in members)
            rows.append(Cut(blob, first, total - first, int(np.prod(train.blobs[blob].shape)) * 4,
                            *activation_bytes(train, layers[pb.TRAIN], members, blob, labels)))
    return rows


def unsplit_activation_bytes(net_param, origin=None):
    """Bytes of activations the whole net holds per TRAIN iteration, counted as activation_bytes
    counts each half's: data and diff (float32) of every blob a layer computes."""
    train = _full_nets(net_param, origin)[pb.TRAIN]
    layers = filter_net(net_param, pb.NetState(phase=pb.TRAIN)).layer
    names = {top for layer in layers for top in layer.top if top in train.blobs}
    return 2 * 4 * sum(int(np.prod(train.blobs[name].shape, dtype=np.int64)) for name in names)


def best_cut(rows, tolerance=0.02, halves=(1, 2)):
    """The most balanced cut: the smallest larger half, in FLOPs (halves (1, 2),
    the default) or in activation bytes (halves (4, 5), the memory each half
    needs); among cuts within `tolerance` of that, the one that sends the
    fewest bytes."""
    if not rows:
        return None
    first, second = halves
    smallest = min(max(row[first], row[second]) for row in rows)
    close = [row for row in rows if max(row[first], row[second]) <= smallest * (1 + tolerance)]
    return min(close, key=lambda row: (row[3], max(row[first], row[second])))


MEMORY_HALVES = (4, 5)      # best_cut(rows, halves=MEMORY_HALVES): the cut that balances activation bytes


def split_from_pair(net1, net2, cut, mode=ADMM, origin1=None, origin2=None, consistency_weight=1.0,
                    normalize=False):
    """A Split from hand-written halves (or halves written by `dualnet split`).

    net1: the data layers and every layer up to the cut blob; net2: an Input
    layer per phase providing the cut blob and the labels, then the rest of
    the net. The consistency target and loss (and, for DUAL_LAYER, the copy
    <L>_dual of net2's first layer L) are added when net1 lacks them; a
    consistency loss net1 has takes the solver's weight and type.
    """
    name1 = origin1.path if origin1 is not None and origin1.path else "net1"
    name2 = origin2.path if origin2 is not None and origin2.path else "net2"
    net2 = _copy(net2)
    net2.force_backward = True
    nets1 = {phase: _build(net1, phase, origin1, name1) for phase in PHASES}
    nets2 = {phase: _build(net2, phase, origin2, name2) for phase in PHASES}
    cut_shapes, label_shapes, labels = {}, {}, []
    for phase in PHASES:
        n1, n2 = nets1[phase], nets2[phase]
        if cut not in n1.blobs:
            raise SplitError(f"{name1}: net1 does not produce the cut blob '{cut}' in the {PHASE_NAMES[phase]} phase")
        inputs = [top for layer, tops in zip(n2.layers, n2.top_names.values()) if layer.type == "Input" for top in tops]
        if cut not in inputs:
            raise SplitError(f"{name2}: net2 needs an Input layer with top '{cut}' in the {PHASE_NAMES[phase]} phase")
        if n1.blobs[cut].shape != n2.blobs[cut].shape:
            raise SplitError(f"the cut '{cut}' is {n1.blobs[cut].shape} in net1 but net2's Input gives "
                             f"{n2.blobs[cut].shape} ({PHASE_NAMES[phase]} phase)")
        for top in inputs:
            if top != cut and top not in labels:
                if top not in n1.blobs:
                    raise SplitError(f"{name2}: net2's input '{top}' is not a blob of net1 (only the cut and the "
                                     "data layers' tops, such as labels, travel to net2)")
                labels.append(top)
        cut_shapes[phase] = n1.blobs[cut].shape
    for phase in PHASES:
        label_shapes[phase] = {name: nets2[phase].blobs[name].shape for name in labels}
    train2 = list(filter_net(net2, pb.NetState(phase=pb.TRAIN)).layer)
    first = [l.name for l in train2 if cut in l.bottom and l.type != "Input"]
    net1 = _copy(net1)
    target_blob, target_shapes, prediction = cut, dict(cut_shapes), cut
    if mode == DUAL_LAYER:
        layer, target_shapes = _dual_layer_source(first, train2, cut, nets2, name2)
        target_blob = layer.top[0]
        copy = next((l for l in net1.layer if l.name == f"{layer.name}_dual"), None)
        prediction = copy.top[0] if copy is not None else None
    target_layer = f"{target_blob}_target"
    others = [l.name for l in net1.layer if l.type == "Input" and l.name.endswith("_target") and l.name != target_layer]
    if others:
        mode_name = pb.DualParameter.Mode.Name(mode)
        raise SplitError(f"{name1}: net1 has the target Input '{others[0]}', but {mode_name} at '{cut}' sends "
                         f"'{target_layer}': was the pair written for the other mode? Set dual_param.mode to match")
    if any(layer.name == target_layer for layer in net1.layer):
        _apply_consistency(net1, target_layer, consistency_weight, normalize, name1)
    else:
        if prediction is None:
            prediction = _add_dual_layer(net1, layer)
        if labels:
            silence = net1.layer.add(name="labels_to_net2", type="Silence")
            silence.bottom.extend(labels)
        _add_consistency(net1, prediction, target_blob, target_shapes[pb.TRAIN], consistency_weight, normalize)
    return Split(net1, net2, cut, mode, labels, cut_shapes, label_shapes, first, target_blob, target_shapes)


def _copy(net_param):
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    return out


def _build(net_param, phase, origin, name):
    try:
        return Net(net_param, phase, origin=origin)
    except DualnetError as error:
        raise SplitError(f"cannot build {name} ({PHASE_NAMES[phase]}): {error}") from None
