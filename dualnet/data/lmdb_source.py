"""LMDB databases of Caffe Datum records, read lazily.

Records are taken in key order (Caffe's cursor order); record i is the i-th
key. Each Datum holds C x H x W pixels as uint8 bytes (`data`) or floats
(`float_data`) and an integer label; every record must have the shape of the
first. Encoded Datum (JPEG/PNG bytes, convert_imageset --encoded) is refused.

The keys are listed once when the database is opened; a batch is fetched by
key inside one read transaction, parsed, and its pixels decoded with a single
np.frombuffer over the joined bytes. Needs the optional `lmdb` package.
"""
import os

import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import DataError


def is_lmdb(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "data.mdb"))


def is_leveldb(path):
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    return "CURRENT" in names and any(n.startswith("MANIFEST-") or n.endswith((".ldb", ".sst")) for n in names)


def require_lmdb(path):
    try:
        import lmdb
    except ImportError:
        raise DataError(
            f"reading the LMDB '{path}' needs the lmdb package: pip install lmdb "
            f"(or pip install dualnet[lmdb])"
        ) from None
    return lmdb


class LmdbSource:
    """The Datum records of the LMDB at `path`, fetched by record index."""

    def __init__(self, path):
        lmdb = require_lmdb(path)
        self.path = path
        try:
            self.env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True)
            with self.env.begin() as txn:
                self.keys = list(txn.cursor().iternext(keys=True, values=False))
                first = txn.get(self.keys[0]) if self.keys else None
        except lmdb.Error as error:
            raise DataError(f"cannot open LMDB '{path}': {error}") from None
        if first is None:
            raise DataError(f"LMDB '{path}' holds no records")
        datum = self._parse(first, self.keys[0])
        self.datum_shape = (datum.channels, datum.height, datum.width)
        self.num_records = len(self.keys)
        self.description = f"LMDB {path}"

    def _parse(self, value, key):
        datum = pb.Datum()
        try:
            datum.ParseFromString(value)
        except Exception:
            raise DataError(f"LMDB '{self.path}': record {key!r} is not a Caffe Datum") from None
        if datum.encoded:
            raise DataError(
                f"LMDB '{self.path}' holds encoded (JPEG/PNG) Datum records, which dualnet does not "
                f"decode; rebuild it with Caffe's convert_imageset without --encoded, or use IDX/NPZ files"
            )
        return datum

    def read(self, indices):
        """(pixels n x C x H x W as uint8 or float32, labels n) for record `indices`."""
        with self.env.begin() as txn:
            values = [txn.get(self.keys[i]) for i in indices]
        datums = [self._parse(v, self.keys[i]) for v, i in zip(values, indices)]
        shape = self.datum_shape
        size = shape[0] * shape[1] * shape[2]
        for datum, i in zip(datums, indices):
            if (datum.channels, datum.height, datum.width) != shape:
                raise DataError(
                    f"LMDB '{self.path}': record {self.keys[i]!r} has shape "
                    f"{datum.channels}x{datum.height}x{datum.width}, the first record {'x'.join(map(str, shape))}"
                )
        if all(len(d.data) == size for d in datums):
            pixels = np.frombuffer(b"".join(d.data for d in datums), np.uint8)
        elif all(len(d.float_data) == size for d in datums):
            pixels = np.concatenate([np.asarray(d.float_data, np.float32) for d in datums])
        else:
            bad = next(i for d, i in zip(datums, indices) if len(d.data) != size and len(d.float_data) != size)
            raise DataError(
                f"LMDB '{self.path}': record {self.keys[bad]!r} does not hold {size} values "
                f"(channels x height x width) in data or float_data"
            )
        labels = np.fromiter((d.label for d in datums), np.int64, len(datums))
        return pixels.reshape((len(datums),) + shape), labels
