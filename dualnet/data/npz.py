"""NumPy .npz data sets: arrays `data` and `label`.

    data:  N x C x H x W, or N x H x W (one channel); uint8 is kept as bytes,
           any other numeric type becomes float32
    label: N (or N x 1)

Loaded with allow_pickle=False: an .npz holding object arrays is refused.
"""
import zipfile

import numpy as np

from ..errors import DataError


def read_npz(path):
    """(images N x C x H x W, labels N) from the .npz file `path`."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("data", "label") if key not in archive.files]
            if missing:
                raise DataError(
                    f"NPZ file '{path}' has no array named {' or '.join(repr(m) for m in missing)} "
                    f"(it holds: {', '.join(archive.files) or 'nothing'}); save it with "
                    f"np.savez(path, data=images, label=labels)"
                )
            data, label = archive["data"], archive["label"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read NPZ file '{path}': {error}") from None
    if data.ndim == 3:
        data = data[:, None]
    if data.ndim != 4:
        raise DataError(f"NPZ file '{path}': 'data' has shape {data.shape}; expected N x C x H x W or N x H x W")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise DataError(f"NPZ file '{path}': 'data' has dtype {data.dtype}; expected uint8 or float")
    if data.dtype != np.uint8:
        data = data.astype(np.float32)
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]
    if label.ndim != 1 or not np.issubdtype(label.dtype, np.number):
        raise DataError(f"NPZ file '{path}': 'label' has shape {label.shape} and dtype {label.dtype}; "
                        f"expected one number per sample (N)")
    if len(label) != len(data):
        raise DataError(f"NPZ file '{path}' holds {len(data)} samples in 'data' but {len(label)} in 'label'")
    data.flags.writeable = False
    label.flags.writeable = False
    return data, label
