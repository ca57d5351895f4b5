#!/usr/bin/env python
"""The geometry of HBNN binarisation: the angle between a weight row w and W~ = alpha (.) sign(w).

With alpha the mean |w| of each segment (dualnet.hbnn.kernel.binarize, the layers' own
binarisation), <w, w~> = |w~|^2 = sum_seg |w_seg|_1^2 / s_seg, so
    cos angle = sqrt(sum_seg |w_seg|_1^2 / s_seg) / |w|.
For iid Gaussian entries and one alpha per row (segment_size 0) this tends to
E|w| / sqrt(E w^2) = sqrt(2/pi) as d grows: the angle tends to arccos(sqrt(2/pi)) = 37.07 deg.
With segments of s entries it tends to arccos(sqrt(2/pi + (1 - 2/pi) / s)): a few degrees
less (36.7 deg at s = 64, 34.3 deg at s = 8). Per-segment alpha matters much more when the
magnitude of the weights varies along the row: one alpha then fits none of them, and
segments that follow the variation recover the iid angle.

Printed: the mean angle over --rows random rows against d for iid rows and each segment
size (with the limit), then at d = --structured-dim the iid rows against rows whose scale
ramps along the row (geometrically from 1/--ramp to 1) and rows made of blocks of 64
entries with scales drawn log-uniformly in [1/--spread, 1]. Plotted to --out (PNG) when
matplotlib is installed.

    python scripts/hbnn_angles.py --out hbnn_angles.png
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dualnet.hbnn import kernel  # noqa: E402

SEGMENT_SIZES = (0, 64, 32, 16, 8)
DIMS = (8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
LIMIT_DEGREES = math.degrees(math.acos(math.sqrt(2 / math.pi)))  # 37.07


def angles(rows, segment_size):
    """Angle in degrees between each row of `rows` (R, d) and its binarisation."""
    binary, _ = kernel.binarize(rows, segment_size)
    cosine = (rows * binary).sum(axis=1) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(binary, axis=1))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def limit_angle(segment_size):
    """The d -> infinity angle for iid Gaussian rows (segment_size 0: one alpha per row)."""
    extra = 0.0 if segment_size == 0 else (1 - 2 / math.pi) / segment_size
    return math.degrees(math.acos(math.sqrt(2 / math.pi + extra)))


def gaussian_rows(rng, count, d):
    return rng.standard_normal((count, d))


def ramp_rows(rng, count, d, ramp):
    """Gaussian rows whose scale grows geometrically from 1/ramp to 1 along the row."""
    return rng.standard_normal((count, d)) * np.geomspace(1.0 / ramp, 1.0, d)


def block_rows(rng, count, d, spread, block=64):
    """Gaussian rows in blocks of `block` entries, each with a log-uniform scale in [1/spread, 1]."""
    blocks = -(-d // block)
    scales = np.exp(rng.uniform(-math.log(spread), 0.0, size=(count, blocks)))
    return rng.standard_normal((count, d)) * np.repeat(scales, block, axis=1)[:, :d]


def label(segment_size):
    return "per row" if segment_size == 0 else f"s={segment_size}"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100, help="random rows averaged per entry (default 100)")
    parser.add_argument("--dims", default=",".join(map(str, DIMS)), help="comma-separated dimensions d")
    parser.add_argument("--structured-dim", type=int, default=1024,
                        help="d of the ramp / block comparison (default 1024)")
    parser.add_argument("--ramp", type=float, default=100.0, help="ramp rows: scale from 1/RAMP to 1 (default 100)")
    parser.add_argument("--spread", type=float, default=100.0,
                        help="block rows: block scales log-uniform in [1/SPREAD, 1] (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="hbnn_angles.png", help="PNG to plot to (default hbnn_angles.png)")
    return parser.parse_args()


def main():
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    dims = [int(d) for d in args.dims.split(",")]

    print(f"Angle (degrees) between w and alpha (.) sign(w), iid N(0, 1) rows, mean of {args.rows} rows")
    print(f"{'d':>8}" + "".join(f"{label(s):>10}" for s in SEGMENT_SIZES))
    iid = {s: [] for s in SEGMENT_SIZES}
    for d in dims:
        rows = gaussian_rows(rng, args.rows, d)
        for s in SEGMENT_SIZES:
            iid[s].append(angles(rows, s).mean())
        print(f"{d:>8}" + "".join(f"{iid[s][-1]:>10.2f}" for s in SEGMENT_SIZES))
    print(f"{'limit':>8}" + "".join(f"{limit_angle(s):>10.2f}" for s in SEGMENT_SIZES)
          + f"    (per row: arccos(sqrt(2/pi)) = {LIMIT_DEGREES:.2f})")

    d = args.structured_dim
    families = {
        "iid": gaussian_rows(rng, args.rows, d),
        f"ramp x{args.ramp:g}": ramp_rows(rng, args.rows, d, args.ramp),
        f"blocks of 64, x{args.spread:g}": block_rows(rng, args.rows, d, args.spread),
    }
    print(f"\nRows whose magnitude varies along the row, d = {d}")
    print(f"{'rows':>22}" + "".join(f"{label(s):>10}" for s in SEGMENT_SIZES))
    structured = {}
    for name, rows in families.items():
        structured[name] = [angles(rows, s).mean() for s in SEGMENT_SIZES]
        print(f"{name:>22}" + "".join(f"{a:>10.2f}" for a in structured[name]))

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\nmatplotlib is not installed, so no plot was written to {args.out}; the tables above are "
              "the whole result (pip install matplotlib for the plot)", file=sys.stderr)
        return 0
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for s in SEGMENT_SIZES:
        line, = left.plot(dims, iid[s], marker="o", label=label(s))
        left.axhline(limit_angle(s), color=line.get_color(), linestyle=":", linewidth=1)
    left.axhline(LIMIT_DEGREES, color="gray", linestyle="--", label=f"arccos(sqrt(2/pi)) = {LIMIT_DEGREES:.2f}")
    left.set_xscale("log", base=2)
    left.set_xlabel("dimension d")
    left.set_ylabel("angle between w and alpha * sign(w) (degrees)")
    left.set_title("iid Gaussian rows (dotted: the d -> infinity limits)")
    left.legend()
    positions = np.arange(len(SEGMENT_SIZES))
    width = 0.8 / len(structured)
    for k, (name, values) in enumerate(structured.items()):
        right.bar(positions + k * width, values, width, label=name)
    right.set_xticks(positions + width * (len(structured) - 1) / 2, [label(s) for s in SEGMENT_SIZES])
    right.set_ylabel("angle (degrees)")
    right.set_title(f"magnitude varying along the row, d = {d}")
    right.legend()
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"\nplot written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
