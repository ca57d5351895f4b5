"""`dualnet split`: write net1/net2 prototxts for a cut, or suggest the cut.

    dualnet split --model M --at BLOB --out DIR [--mode ADMM|DUAL_LAYER]
    dualnet split --model M --suggest

--suggest prints, for every blob the net can be cut at, the forward+backward
FLOPs per iteration of each half and the bytes of activations that cross
per iteration (float32 cut out, float32 target back), then names the cut
whose larger half is smallest.
"""
import os

from google.protobuf import text_format

from .. import dualnet_pb2 as pb
from ..errors import DualnetError
from ..io.text import read_net_param
from .split import best_cut, candidate_cuts, split_net

HEADER = "{:<16} {:>12} {:>12} {:>9} {:>14}"


def suggestion_table(rows):
    lines = [HEADER.format("cut", "net1 MFLOP", "net2 MFLOP", "balance", "bytes/iter")]
    for blob, first, second, cut_bytes in rows:
        balance = min(first, second) / max(first, second) if max(first, second) else 0.0
        lines.append(HEADER.format(blob, f"{first / 1e6:.1f}", f"{second / 1e6:.1f}", f"{balance:.2f}",
                                   f"{2 * cut_bytes:,}"))
    return lines


def run_split(args):
    net_param, origin = read_net_param(args.model)
    if args.suggest:
        rows = candidate_cuts(net_param, origin)
        if not rows:
            raise DualnetError(f"{args.model}: no blob cuts this net into two halves with a loss after the cut")
        for line in suggestion_table(rows):
            print(line)
        best = best_cut(rows)
        print(f"best balanced cut: {best[0]} (net1 {best[1] / 1e6:.1f} MFLOP, net2 {best[2] / 1e6:.1f} MFLOP "
              "per training iteration)")
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
            handle.write(text_format.MessageToString(getattr(split, role)))
    shape = " x ".join(map(str, split.cut_shapes[pb.TRAIN]))
    print(f"wrote {paths['net1']} and {paths['net2']}: '{args.at}' ({shape}) and "
          f"{', '.join(split.label_blobs) or 'no labels'} cross from net1 to net2")
    print("to train them: dual_param { split_at: \"%s\" net1: \"%s\" net2: \"%s\" } in the solver"
          % (args.at, paths["net1"], paths["net2"]))
    return 0
