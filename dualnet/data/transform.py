"""Caffe's DataTransformer, applied to a whole batch at once.

For a batch x (n x C x H x W, uint8 or float) and transform_param:

    crop:   crop_size k gives a k x k window at (h_off, w_off); in TRAIN the
            offsets are drawn per sample uniformly from 0..H-k and 0..W-k, in
            TEST the window is centred: ((H-k)//2, (W-k)//2)
    mirror: each sample is flipped left-right with probability 1/2 (Caffe
            draws this in TEST too when mirror is set)
    y[n, c, i, j] = (x[n, c, h_off+i, w_off+j'] - mean) * scale,
            j' = k-1-j for a mirrored sample, j otherwise

mean is mean_file (a BlobProto of 1 x C x H x W, indexed at the source pixel,
before the crop) or mean_value (one value, or one per channel), not both.
Arithmetic happens in the output dtype (float32 in nets), as Caffe's does in
Dtype. Random draws come from dualnet.random.rng().
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import DataError, LayerError
from ..io.blobproto import proto_array
from ..random import rng
from .paths import resolve_file


def read_mean_file(path, source_dir=None):
    """The mean image (C x H x W) stored in the binaryproto `path`."""
    found, tried = resolve_file(path, source_dir, "mean_file")
    if found is None:
        raise DataError(f"mean_file '{path}' not found; tried: {', '.join(tried)}")
    proto = pb.BlobProto()
    try:
        with open(found, "rb") as f:
            proto.ParseFromString(f.read())
        mean = proto_array(proto, np.float64)
    except Exception as error:
        raise DataError(f"mean_file '{found}' is not a BlobProto binaryproto: {error}") from None
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 3:
        raise DataError(f"mean_file '{found}' holds a blob of shape {mean.shape}; expected 1 x C x H x W")
    return mean


class DataTransformer:
    def __init__(self, param, phase, source_dir=None):
        if param.force_color or param.force_gray:
            raise LayerError(
                "force_color / force_gray apply only to encoded images, which dualnet does not read; "
                "remove them from transform_param"
            )
        if param.HasField("mean_file") and len(param.mean_value):
            raise LayerError("transform_param gives both mean_file and mean_value; give one of them")
        self.scale = param.scale
        self.mirror = param.mirror
        self.crop_size = param.crop_size
        self.train = phase == pb.TRAIN
        self.mean_file = read_mean_file(param.mean_file, source_dir) if param.HasField("mean_file") else None
        self.mean_values = list(param.mean_value)
        self.param = param

    def output_shape(self, datum_shape):
        """The (C, H, W) of a transformed sample; checks the mean and crop fit the data."""
        C, H, W = datum_shape
        if self.mean_file is not None and self.mean_file.shape != (C, H, W):
            raise LayerError(
                f"mean_file '{self.param.mean_file}' is {'x'.join(map(str, self.mean_file.shape))} "
                f"but the data is {C}x{H}x{W} (the mean must match the uncropped images)"
            )
        if self.mean_values and len(self.mean_values) not in (1, C):
            raise LayerError(f"give either 1 mean_value or one per channel ({C}), got {len(self.mean_values)}")
        k = self.crop_size
        if k and (k > H or k > W):
            raise LayerError(f"crop_size {k} is larger than the {H}x{W} images")
        return (C, k, k) if k else (C, H, W)

    def __call__(self, x, dtype=np.float32):
        """Transform the batch `x` (n x C x H x W) into a new array of `dtype`."""
        n, C, H, W = x.shape
        k = self.crop_size
        h, w = (k, k) if k else (H, W)
        mirrored = rng().integers(0, 2, n).astype(bool) if self.mirror else None
        if k and self.train:
            h_off = rng().integers(0, H - k + 1, n)
            w_off = rng().integers(0, W - k + 1, n)
        else:
            h_off = np.full(n, (H - k) // 2 if k else 0)
            w_off = np.full(n, (W - k) // 2 if k else 0)
        mean = self.mean_file
        if mirrored is None and not (k and self.train):
            # The same window for every sample: plain slicing.
            rows, cols = slice(h_off[0], h_off[0] + h), slice(w_off[0], w_off[0] + w)
            y = x[:, :, rows, cols].astype(dtype)
            if mean is not None:
                mean = mean[:, rows, cols]
        else:
            rows = h_off[:, None] + np.arange(h)                 # n x h
            cols = w_off[:, None] + np.arange(w)                 # n x w
            if mirrored is not None:
                cols = np.where(mirrored[:, None], cols[:, ::-1], cols)
            channel = np.arange(C)[None, :, None, None]
            rows, cols = rows[:, None, :, None], cols[:, None, None, :]
            y = x[np.arange(n)[:, None, None, None], channel, rows, cols].astype(dtype)
            if mean is not None:
                mean = mean[channel, rows, cols]
        if mean is not None:
            y -= mean.astype(dtype)
        elif self.mean_values:
            values = np.broadcast_to(np.asarray(self.mean_values, dtype), (C,))
            y -= values[None, :, None, None]
        if self.scale != 1:
            y *= np.asarray(self.scale, dtype=y.dtype)
        return y
