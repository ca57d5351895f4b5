"""`dualnet split`: write net1/net2 prototxts for a cut, or suggest the cut.

    dualnet split --model M --at BLOB --out DIR [--mode ADMM|DUAL_LAYER]
    dualnet split --model M --suggest

--suggest prints, for every blob the net can be cut at, per TRAIN iteration:
each half's forward+backward FLOPs, each half's activation bytes (data and
diff of the blobs it holds, float32; split.activation_bytes) and the bytes
that cross the cut (float32 cut out, float32 target back); then it names the
cut whose larger half (in FLOPs) is smallest and, when another, the cut whose
larger half in activation bytes is smallest, and how large a share of the
unsplit net's activation bytes that larger half holds at the least.
"""
import logging
import os

from google.protobuf import text_format

from .. import dualnet_pb2 as pb
from ..errors import DualnetError
from ..io.text import read_net_param
from .split import DUAL_LAYER, MEMORY_HALVES, best_cut, candidate_cuts, split_net, unsplit_activation_bytes

HEADER = "{:<16} {:>12} {:>12} {:>15} {:>15} {:>9} {:>14}"


def suggestion_table(rows):
    lines = [HEADER.format("cut", "net1 MFLOP", "net2 MFLOP", "net1 act bytes", "net2 act bytes", "balance",
                           "cut bytes/iter")]
    for row in rows:
        first, second = row.net1_flops, row.net2_flops
        balance = min(first, second) / max(first, second) if max(first, second) else 0.0
        lines.append(HEADER.format(row.blob, f"{first / 1e6:.1f}", f"{second / 1e6:.1f}", f"{row.net1_bytes:,}",
                                   f"{row.net2_bytes:,}", f"{balance:.2f}", f"{2 * row.cut_bytes:,}"))
    return lines


def training_hint(cut, mode, paths):
    """The dual_param that trains the written pair."""
    fields = [f'split_at: "{cut}"']
    if mode == DUAL_LAYER:
        # DESIGN.md: with weight 1 DUAL_LAYER diverged within a few iterations; 0.01 trained.
        fields += ["mode: DUAL_LAYER", "consistency_weight: 0.01"]
    fields += [f'net1: "{paths["net1"]}"', f'net2: "{paths["net2"]}"']
    return "dual_param { " + " ".join(fields) + " }"


def run_split(args):
    net_param, origin = read_net_param(args.model)
    if args.suggest:
        logger = logging.getLogger("dualnet")
        level = logger.level
        logger.setLevel(logging.WARNING)        # the table, not the log of building each half
        try:
            rows = candidate_cuts(net_param, origin)
            whole = unsplit_activation_bytes(net_param, origin)
        finally:
            logger.setLevel(level)
        if not rows:
            raise DualnetError(f"{args.model}: no blob cuts this net into two halves with a loss after the cut")
        for line in suggestion_table(rows):
            print(line)
        best = best_cut(rows)
        print(f"best balanced cut: {best.blob} (net1 {best.net1_flops / 1e6:.1f} MFLOP and {best.net1_bytes:,} "
              f"activation bytes, net2 {best.net2_flops / 1e6:.1f} MFLOP and {best.net2_bytes:,} activation bytes "
              "per training iteration)")
        lightest = best_cut(rows, halves=MEMORY_HALVES)
        if lightest.blob != best.blob:
            # early layers hold the large feature maps: the cut that splits the work evenly
            # rarely splits the memory evenly, and a net that outgrows one machine needs the latter
            print(f"cut that balances memory instead: {lightest.blob} (net1 {lightest.net1_bytes:,} and net2 "
                  f"{lightest.net2_bytes:,} activation bytes; {lightest.net1_flops / 1e6:.1f} and "
                  f"{lightest.net2_flops / 1e6:.1f} MFLOP)")
        even = min(rows, key=lambda row: max(row.net1_bytes, row.net2_bytes))
        print(f"the unsplit net holds {whole:,} activation bytes; no cut leaves the larger half less than "
              f"{max(even.net1_bytes, even.net2_bytes) / whole:.2f} of that ({even.blob})")
        return 0
    if not args.at or not args.out:
        raise DualnetError("dualnet split needs --at BLOB and --out DIR (or --suggest)")
    mode = pb.DualParameter.Mode.Value(args.mode)
    split = split_net(net_param, args.at, mode, origin)
    os.makedirs(args.out, exist_ok=True)
    paths = {}
    for role in ("net1", "net2"):
        paths[role] = os.path.join(args.out, f"{role}.prototxt")
        with open(paths[role], "w") as handle:
            handle.write(f"# {role} of {args.model} cut at '{args.at}' ({args.mode}), written by dualnet split\n")
            if role == "net1":
                handle.write("# consistency_loss: the solver's dual_param sets its loss_weight (consistency_weight) "
                             "and type (normalize_consistency)\n")
            handle.write(text_format.MessageToString(getattr(split, role)))
    shape = " x ".join(map(str, split.cut_shapes[pb.TRAIN]))
    print(f"wrote {paths['net1']} and {paths['net2']}: '{args.at}' ({shape}) and "
          f"{', '.join(split.label_blobs) or 'no labels'} cross from net1 to net2")
    print(f"to train them: {training_hint(args.at, mode, paths)} in the solver")
    return 0
