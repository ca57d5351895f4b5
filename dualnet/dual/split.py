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

Shapes come from building the whole net once per phase.
"""
from dataclasses import dataclass, field

import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import DualnetError
from ..net import Net, filter_net

ADMM, DUAL_LAYER = pb.DualParameter.ADMM, pb.DualParameter.DUAL_LAYER
PHASES = (pb.TRAIN, pb.TEST)
PHASE_NAMES = {pb.TRAIN: "TRAIN", pb.TEST: "TEST"}


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

    target_blob, target_shapes = cut, dict(cut_shapes)
    prediction = cut
    if mode == DUAL_LAYER:
        if len(first) != 1:
            raise SplitError(f"{source}: DUAL_LAYER needs exactly one layer reading '{cut}' after the cut, "
                             f"found {len(first)} ({', '.join(first) or 'none'})")
        layer = next(l for l in train_layers if l.name == first[0])
        if len(layer.top) != 1:
            raise SplitError(f"{source}: DUAL_LAYER copies '{layer.name}', which must have one top")
        target_blob = layer.top[0]
        target_shapes = {phase: nets[phase].blobs[target_blob].shape for phase in PHASES
                         if target_blob in nets[phase].blobs}
        dual = net1.layer.add()
        dual.CopyFrom(layer)
        dual.name, dual.top[0] = f"{layer.name}_dual", f"{target_blob}_dual"
        del dual.include[:]
        del dual.exclude[:]
        dual.include.add().phase = pb.TRAIN
        for spec in dual.param:
            spec.ClearField("name")           # its own weights, not shared with anything in net1
        prediction = dual.top[0]
    target = _input_layer(f"{target_blob}_target", [f"{target_blob}_target"], [target_shapes[pb.TRAIN]], pb.TRAIN)
    net1.layer.append(target)
    loss = net1.layer.add(name="consistency_loss", type="NormalizedEuclideanLoss" if normalize else "EuclideanLoss")
    loss.bottom.extend([prediction, f"{target_blob}_target"])
    loss.top.append("consistency_loss")
    loss.loss_weight.append(consistency_weight)
    loss.propagate_down.extend([True, False])
    loss.include.add().phase = pb.TRAIN
    return Split(net1, net2, cut, mode, labels, cut_shapes, label_shapes, first, target_blob, target_shapes)


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


def candidate_cuts(net_param, origin=None):
    """Every valid cut with its cost: [(blob, net1 FLOPs, net2 FLOPs, cut bytes)], in net order."""
    nets = _full_nets(net_param, origin)
    train = nets[pb.TRAIN]
    flops = {name: f + b for name, _kind, f, b in layer_flops(train)}
    train_layers = list(filter_net(net_param, pb.NetState(phase=pb.TRAIN)).layer)
    seen, rows = set(), []
    for layer in train_layers:
        for blob in layer.top:
            if blob in seen or blob not in train.blobs:
                continue
            seen.add(blob)
            try:
                for phase in PHASES:
                    _check_cut(list(filter_net(net_param, pb.NetState(phase=phase)).layer), blob, phase, "")
            except SplitError:
                continue
            members = net1_layers(train_layers, blob)
            first = sum(cost for name, cost in flops.items() if name in members)
            total = sum(flops.values())
            rows.append((blob, first, total - first, int(np.prod(train.blobs[blob].shape)) * 4))
    return rows


def best_cut(rows, tolerance=0.02):
    """The most balanced cut: the smallest larger half; among cuts within
    `tolerance` of that, the one that sends the fewest bytes."""
    if not rows:
        return None
    smallest = min(max(row[1], row[2]) for row in rows)
    close = [row for row in rows if max(row[1], row[2]) <= smallest * (1 + tolerance)]
    return min(close, key=lambda row: (row[3], max(row[1], row[2])))


def split_from_pair(net1, net2, cut, mode=ADMM, origin1=None, origin2=None, consistency_weight=1.0,
                    normalize=False):
    """A Split from hand-written halves.

    net1: the data layers and every layer up to the cut blob (the consistency
    target and loss are added when it does not have a `<cut>_target` Input);
    net2: an Input layer per phase providing the cut blob and the labels,
    then the rest of the net.
    """
    if mode == DUAL_LAYER:
        raise SplitError("DUAL_LAYER copies net2's first layer into net1: let dualnet make the halves "
                         "(dual_param.split_at with `net:`), or use mode ADMM with a hand-written pair")
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
    net1 = _copy(net1)
    if not any(layer.name == f"{cut}_target" for layer in net1.layer):
        if labels:
            silence = net1.layer.add(name="labels_to_net2", type="Silence")
            silence.bottom.extend(labels)
        net1.layer.append(_input_layer(f"{cut}_target", [f"{cut}_target"], [cut_shapes[pb.TRAIN]], pb.TRAIN))
        loss = net1.layer.add(name="consistency_loss",
                              type="NormalizedEuclideanLoss" if normalize else "EuclideanLoss")
        loss.bottom.extend([cut, f"{cut}_target"])
        loss.top.append("consistency_loss")
        loss.loss_weight.append(consistency_weight)
        loss.propagate_down.extend([True, False])
        loss.include.add().phase = pb.TRAIN
    train2 = list(filter_net(net2, pb.NetState(phase=pb.TRAIN)).layer)
    first = [l.name for l in train2 if cut in l.bottom and l.type != "Input"]
    return Split(net1, net2, cut, mode, labels, cut_shapes, label_shapes, first, cut, dict(cut_shapes))


def _copy(net_param):
    out = pb.NetParameter()
    out.CopyFrom(net_param)
    return out


def _build(net_param, phase, origin, name):
    try:
        return Net(net_param, phase, origin=origin)
    except DualnetError as error:
        raise SplitError(f"cannot build {name} ({PHASE_NAMES[phase]}): {error}") from None
