"""MNIST-style IDX files, plain or gzip-compressed.

An IDX file is a 4-byte magic number 0x00 0x00 <type> <ndim>, then ndim
big-endian uint32 dimensions, then the values in C order, big-endian:

    type 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64

A data set is a pair of files sharing a prefix: `<prefix>-images-idx3-ubyte`
(N x H x W, or N x C x H x W) and `<prefix>-labels-idx1-ubyte` (N), each
optionally ending in .gz ("train-images.idx3-ubyte" with a dot is accepted
too). A source names the prefix ("<dir>/train") or the images file itself.
"""
import gzip
import os
import zlib

import numpy as np

from ..errors import DataError

_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
_IMAGE_STEMS = ("-images-idx3-ubyte", "-images.idx3-ubyte")
_LABEL_STEMS = ("-labels-idx1-ubyte", "-labels.idx1-ubyte")


def read_idx(path):
    """The array stored in IDX file `path` (native byte order, read-only).

    The data is read straight into one preallocated array (decompressing a
    .gz as it streams), so reading costs the array's size and little more.
    """
    try:
        with open(path, "rb") as raw_file:
            compressed = raw_file.read(2) == _GZIP_MAGIC
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _TYPES or magic[3] == 0:
                raise DataError(
                    f"'{path}' is not an IDX file: its magic number is 0x{magic.hex() or 'empty'} "
                    f"(an IDX file starts with 00 00, a type byte 08/09/0B/0C/0D/0E and the number of dimensions)"
                )
            ndim = magic[3]
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"IDX file '{path}' is truncated inside its header")
            dims = tuple(int(d) for d in np.frombuffer(dims_raw, ">u4"))
            dtype = np.dtype(_TYPES[magic[2]])
            expected = int(np.prod(dims)) * dtype.itemsize
            array = np.empty(dims, dtype)
            got = _read_into(f, memoryview(array.reshape(-1).view(np.uint8)))
            extra = len(f.read(1))
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read IDX file '{path}': {error}") from None
    if got != expected or extra:
        held = f"{got} bytes" if not extra else f"more than {expected} bytes"
        raise DataError(
            f"IDX file '{path}' declares shape {dims} ({expected} bytes of data) "
            f"but holds {held} after its header"
        )
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    array.flags.writeable = False
    return array


def idx_header(path):
    """(dims, dtype) from an IDX file's header, without reading its data."""
    try:
        with open(path, "rb") as raw_file:
            compressed = raw_file.read(2) == _GZIP_MAGIC
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _TYPES or magic[3] == 0:
                raise DataError(
                    f"'{path}' is not an IDX file: its magic number is 0x{magic.hex() or 'empty'} "
                    f"(an IDX file starts with 00 00, a type byte 08/09/0B/0C/0D/0E and the number of dimensions)"
                )
            dims_raw = f.read(4 * magic[3])
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read IDX file '{path}': {error}") from None
    if len(dims_raw) < 4 * magic[3]:
        raise DataError(f"IDX file '{path}' is truncated inside its header")
    return tuple(int(d) for d in np.frombuffer(dims_raw, ">u4")), np.dtype(_TYPES[magic[2]])


def _read_into(stream, view, chunk=1 << 22):
    """Fill `view` from `stream` in chunks; returns the number of bytes read."""
    done = 0
    while done < len(view):
        got = stream.readinto(view[done: done + chunk])
        if not got:
            break
        done += got
    return done


def _existing(stem_path):
    for path in (stem_path, stem_path + ".gz"):
        if os.path.isfile(path):
            return path
    return None


def idx_pair_candidates(base):
    """The images files that `base` (a prefix or an images file) may name."""
    name = os.path.basename(base)
    if any(stem in name for stem in _IMAGE_STEMS):
        return [base]
    return [base + stem + suffix for stem in _IMAGE_STEMS for suffix in ("", ".gz")]


def find_idx_pair(base):
    """(images path, labels path or None) for a prefix or images file, or None."""
    for images in idx_pair_candidates(base):
        if not os.path.isfile(images):
            continue
        for image_stem, label_stem in zip(_IMAGE_STEMS, _LABEL_STEMS):
            head, sep, _ = images.rpartition(image_stem)
            if sep:
                return images, _existing(head + label_stem)
        return images, None
    return None


def label_path_for(images):
    for image_stem, label_stem in zip(_IMAGE_STEMS, _LABEL_STEMS):
        head, sep, _ = images.rpartition(image_stem)
        if sep:
            return head + label_stem + "[.gz]"
    return "<labels file>"


def probe_idx_pair(images_path, labels_path):
    """(number of records, datum shape C x H x W) of an IDX pair, from the headers alone."""
    dims, _dtype = idx_header(images_path)
    if len(dims) not in (3, 4):
        raise DataError(f"IDX images file '{images_path}' has shape {dims}; expected N x H x W or N x C x H x W")
    label_dims, _ = idx_header(labels_path)
    if len(label_dims) != 1:
        raise DataError(f"IDX labels file '{labels_path}' has shape {label_dims}; expected one label per image (N)")
    if label_dims[0] != dims[0]:
        raise DataError(
            f"IDX files disagree: '{images_path}' holds {dims[0]} images "
            f"but '{labels_path}' holds {label_dims[0]} labels"
        )
    return dims[0], ((1,) + dims[1:]) if len(dims) == 3 else dims[1:]


def read_idx_pair(images_path, labels_path):
    """images (N x C x H x W, uint8 or float32) and labels (N,) from an IDX pair."""
    images = read_idx(images_path)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise DataError(
            f"IDX images file '{images_path}' has shape {images.shape}; "
            f"expected N x H x W or N x C x H x W"
        )
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
    labels = read_idx(labels_path)
    if labels.ndim != 1:
        raise DataError(f"IDX labels file '{labels_path}' has shape {labels.shape}; expected one label per image (N)")
    if len(labels) != len(images):
        raise DataError(
            f"IDX files disagree: '{images_path}' holds {len(images)} images "
            f"but '{labels_path}' holds {len(labels)} labels"
        )
    return images, labels
