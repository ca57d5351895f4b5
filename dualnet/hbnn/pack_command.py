"""`dualnet pack` and packed snapshots: a model's HBNN layers saved as sign bits + alpha.

    dualnet pack --model M --weights W --out P
builds net M (TEST phase) with weights W, writes P with the weight blob of every HBNN layer
packed (PackedSigns: sign bits + per-segment alpha; all other blobs float32, as Caffe writes
them) and prints P's size against the same weights as float32. P loads back like any
.caffemodel and computes the same outputs (alpha (.) sign(W) binarises to itself); it keeps
no latent float weights, so it is for deployment, not for resuming training.

A solver with `snapshot_packed_hbnn: true` also writes, at every snapshot, the packed weights
to <prefix>_iter_N.packed.caffemodel beside the float .caffemodel that resuming reads
(save_packed_snapshot). Every packed save logs its size against float32
(dualnet.io.caffemodel.save_net).
"""
import os

from ..errors import DualnetError

PACKED_SUFFIX = ".packed.caffemodel"


def add_pack_parser(verbs):
    """The `pack` verb on `dualnet`'s subparsers; returns its parser."""
    pack = verbs.add_parser("pack", help="write a model with its HBNN layers packed (sign bits + alpha)")
    pack.add_argument("--model", required=True, metavar="M", help="net prototxt")
    pack.add_argument("--weights", required=True, metavar="W", help="its trained .caffemodel")
    pack.add_argument("--out", required=True, metavar="P", help="the packed .caffemodel to write")
    return pack


def pack_model(model, weights, out):
    """Write `out` from net `model` with `weights`, HBNN layers packed; (packed, float32) bytes
    and the names of the packed layers."""
    from .. import dualnet_pb2 as pb
    from ..io.caffemodel import encode_net
    from ..net import Net

    if weights is not None and not os.path.isfile(weights):     # before building and logging the net
        raise DualnetError(f"{weights}: no such weights file; pass the trained .caffemodel to pack")
    net = Net(model, pb.TEST, weights=weights)
    packed_layers = [name for name, layer in net.layer_dict.items() if hasattr(layer, "packed_blob")]
    if not packed_layers:
        raise DualnetError(f"{model}: has no HBNNInnerProduct or HBNNConvolution layer; nothing to pack")
    packed_bytes = net.save(out, packed_hbnn=True)
    return packed_bytes, len(encode_net(net)), packed_layers


def pack_main(args):
    """`dualnet pack`: write args.out and print its size against float32; exit status 0."""
    packed_bytes, float_bytes, packed_layers = pack_model(args.model, args.weights, args.out)
    print(f"{args.out}: {packed_bytes} bytes with {', '.join(packed_layers)} packed; "
          f"{float_bytes} bytes as float32 ({float_bytes / packed_bytes:.1f}x smaller)")
    return 0


def packed_snapshot_path(model_path):
    """<prefix>_iter_N.packed.caffemodel for the snapshot <prefix>_iter_N.caffemodel."""
    stem = model_path[:-len(".caffemodel")] if model_path.endswith(".caffemodel") else model_path
    return stem + PACKED_SUFFIX


def save_packed_snapshot(net, model_path):
    """Beside a snapshot's float .caffemodel, its weights with the HBNN layers packed; the path."""
    path = packed_snapshot_path(model_path)
    net.save(path, packed_hbnn=True)
    return path
