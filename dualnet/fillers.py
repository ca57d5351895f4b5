"""Caffe's weight fillers, selected by FillerParameter.type.

fan_in = count / shape[0] and fan_out = count / shape[1] as in Caffe, so
for an InnerProduct weight (out x in) fan_in is `in`, and for a convolution
weight (out x in x kh x kw) it is in*kh*kw.
"""
import numpy as np

from . import dualnet_pb2 as pb
from .errors import LayerError, did_you_mean
from .random import rng


def _fans(shape):
    count = int(np.prod(shape))
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _variance_n(param, shape):
    fan_in, fan_out = _fans(shape)
    norm = param.variance_norm
    if norm == pb.FillerParameter.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if norm == pb.FillerParameter.FAN_OUT:
        return float(fan_out)
    return float(fan_in)


def _constant(out, p):
    out[...] = p.value


def _uniform(out, p):
    out[...] = rng().uniform(p.min, p.max, out.shape)


def _gaussian(out, p):
    out[...] = rng().normal(p.mean, p.std, out.shape)
    if p.sparse >= 0:
        # Keep each weight with probability sparse / num_outputs.
        if out.ndim < 1:
            raise LayerError("a sparse gaussian filler needs a blob with at least one axis")
        keep = min(1.0, p.sparse / out.shape[0])
        out *= rng().random(out.shape) < keep


def _positive_unitball(out, p):
    values = rng().uniform(0.0, 1.0, out.shape).reshape(out.shape[0], -1)
    values /= values.sum(axis=1, keepdims=True)
    out[...] = values.reshape(out.shape)


def _xavier(out, p):
    scale = np.sqrt(3.0 / _variance_n(p, out.shape))
    out[...] = rng().uniform(-scale, scale, out.shape)


def _msra(out, p):
    std = np.sqrt(2.0 / _variance_n(p, out.shape))
    out[...] = rng().normal(0.0, std, out.shape)


def _bilinear(out, p):
    # Upsampling kernel for a Deconvolution: weights fall off linearly from
    # the kernel's centre c in both directions.
    if out.ndim != 4 or out.shape[2] != out.shape[3]:
        raise LayerError(f"the bilinear filler needs a 4-D blob with square kernels, got {out.shape}")
    size = out.shape[3]
    f = np.ceil(size / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1 - np.abs(np.arange(size) / f - c)
    out[...] = ramp[:, None] * ramp[None, :]


FILLERS = {
    "constant": _constant,
    "uniform": _uniform,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}


def fill(out, filler_param):
    """Fill the array `out` in place as FillerParameter `filler_param` says."""
    filler = FILLERS.get(filler_param.type)
    if filler is None:
        raise LayerError(
            f"unknown filler type '{filler_param.type}'{did_you_mean(filler_param.type, FILLERS)} "
            f"(known: {', '.join(FILLERS)})"
        )
    if out.size:
        filler(out, filler_param)
    return out


def filler(type_name, **fields):
    """A FillerParameter, e.g. filler('constant', value=0.1)."""
    return pb.FillerParameter(type=type_name, **fields)
