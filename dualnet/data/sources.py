"""Opening the data source a Data layer names, whatever its backend.

open_source(data_param, source_dir) returns an object with
    num_records, datum_shape (C, H, W), description,
    read(indices) -> (pixels n x C x H x W, uint8 or float32; labels n)

Backends: IDX file pairs and NPZ files are decoded once into memory (uint8
stays uint8) and a batch is one fancy-indexing gather; LMDB is read lazily.
An IDX pair is only probed (its headers) when opened and decoded at the first
read, so building a net for its shapes (e.g. to split it) costs no memory.
With `backend` unset (Caffe's default LEVELDB) the kind is detected from the
path: IDX prefix or images file, .npz file, folder holding data.mdb. LevelDB
is not supported. Decoded arrays are shared between sources opened on the
same files (a train and a test net reading one file decode it once); the
order in which records are read belongs to each layer.
"""
import os
import weakref

from .. import dualnet_pb2 as pb
from ..errors import DataError
from ..log import get_logger
from .idx import find_idx_pair, label_path_for, probe_idx_pair, read_idx_pair
from .lmdb_source import LmdbSource, is_leveldb, is_lmdb, require_lmdb
from .npz import read_npz
from .paths import candidate_paths, log_resolution

log = get_logger("dualnet.data")
DB = pb.DataParameter
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

# (kind, file identities) -> source; entries vanish when no layer holds them.
_open_sources = weakref.WeakValueDictionary()


class ArraySource:
    """A data set held in memory: pixels N x C x H x W and labels N, decoded by
    `load()` at first use."""

    def __init__(self, num_records, datum_shape, load, description):
        self.num_records, self.datum_shape = num_records, tuple(datum_shape)
        self._load, self._arrays, self.description = load, None, description

    def _decoded(self):
        if self._arrays is None:
            self._arrays = self._load()
        return self._arrays

    @property
    def images(self):
        return self._decoded()[0]

    @property
    def labels(self):
        return self._decoded()[1]

    def read(self, indices):
        images, labels = self._decoded()
        return images[indices], labels[indices]


def _identity(*paths):
    # A changed file (new mtime or size) is decoded again.
    stats = [os.stat(p) for p in paths]
    return tuple((os.path.realpath(p), s.st_mtime_ns, s.st_size) for p, s in zip(paths, stats))


def _shared(kind, paths, make):
    key = (kind, _identity(*paths))
    source = _open_sources.get(key)
    if source is None:
        source = make()
        _open_sources[key] = source
    return source


def _open_idx(images, labels):
    if labels is None:
        raise DataError(f"found the IDX images file '{images}' but not its labels file {label_path_for(images)}")
    log.info("Opening IDX files %s and %s", images, labels)
    return _shared("IDX", (images, labels),
                   lambda: ArraySource(*probe_idx_pair(images, labels), lambda: read_idx_pair(images, labels),
                                       f"IDX {images}"))


def _open_npz(path):
    log.info("Opening NPZ file %s", path)
    def make():
        data, label = read_npz(path)
        return ArraySource(len(data), data.shape[1:], lambda: (data, label), f"NPZ {path}")

    return _shared("NPZ", (path,), make)


def _open_lmdb(path):
    log.info("Opening LMDB %s", path)
    return _shared("LMDB", (os.path.join(path, "data.mdb"),), lambda: LmdbSource(path))


def _leveldb_error(path):
    return DataError(
        f"'{path}' is a LevelDB, which dualnet does not read; convert it to LMDB "
        f"(e.g. Caffe's convert_imageset / convert_mnist_data with --backend=lmdb) or to IDX/NPZ files"
    )


def _detect(base, backend):
    """Open `base` as `backend` (None: whatever it is); None if nothing is there."""
    if backend in (None, DB.IDX):
        pair = find_idx_pair(base)
        if pair:
            return _open_idx(*pair)
    if backend in (None, DB.NPZ) and os.path.isfile(base) and (backend == DB.NPZ or base.endswith(".npz")):
        return _open_npz(base)
    if backend in (None, DB.LMDB) and is_lmdb(base):
        return _open_lmdb(base)
    if backend is None and is_leveldb(base):
        raise _leveldb_error(base)
    if backend in (None, DB.IDX) and os.path.isdir(base):
        names = [name for name in os.listdir(base) if "-images" in name and "idx" in name]
        prefixes = sorted({name.split("-images")[0] for name in names})
        if prefixes:
            choices = " or ".join(f'"{os.path.join(base, p)}"' for p in prefixes)
            raise DataError(f"'{base}' is a folder of IDX files; name the set inside it: source: {choices}")
    if backend is None and os.path.isfile(base):
        raise DataError(
            f"cannot tell what kind of data source '{base}' is: name an IDX prefix "
            f"(<dir>/train for <dir>/train-images-idx3-ubyte[.gz]), an IDX images file, "
            f"a .npz file or an LMDB folder, or set data_param.backend"
        )
    return None


def _looked_for(backend):
    idx = "IDX files <path>-images-idx3-ubyte[.gz] and <path>-labels-idx1-ubyte[.gz]"
    return {
        DB.IDX: idx + " (or <path> being the images file)",
        DB.NPZ: "a .npz file",
        DB.LMDB: "an LMDB folder holding data.mdb",
    }.get(backend, "an LMDB folder, a .npz file or " + idx)


def _missing_hint(source):
    name = os.path.basename(os.path.normpath(source)).lower()
    hint = ""
    if "lmdb" in name or "leveldb" in name:
        if "cifar" in name:
            maker = "Caffe's examples/cifar10/create_cifar10.sh"
        elif "mnist" in name:
            maker = "Caffe's examples/mnist/create_mnist.sh"
        elif "ilsvrc" in name or "imagenet" in name:
            maker = "Caffe's examples/imagenet/create_imagenet.sh"
        else:
            maker = "Caffe's convert_imageset tool"
        hint = (
            f" It looks like a database made with {maker}: create it (from Caffe's root folder), "
            f"or read raw files instead: source: \"<dir>/train\" with backend: IDX, or a .npz file with backend: NPZ."
        )
    if "mnist" in name and os.path.isdir(FASHION_MNIST):
        split = "t10k" if "test" in name or "t10k" in name else "train"
        hint += f" Fashion-MNIST IDX files are installed here: source: \"{FASHION_MNIST}/{split}\" backend: IDX."
    return hint


def open_source(data_param, source_dir=None):
    """The source a DataParameter names, looked up as paths.py says."""
    source = data_param.source
    if not source:
        raise DataError("data_param needs a source (an IDX prefix, a .npz file or an LMDB folder)")
    explicit = data_param.HasField("backend")
    backend = data_param.backend if explicit else None
    if backend == DB.LMDB:
        require_lmdb(source)
    tried = candidate_paths(source, source_dir)
    for base in tried:
        if backend == DB.LEVELDB:
            if is_leveldb(base):
                raise _leveldb_error(base)
            opened = _detect(base, None)
            if opened is not None:
                log.warning("data_param says backend: LEVELDB but '%s' is an %s; reading it as such",
                            base, opened.description.split()[0])
        else:
            opened = _detect(base, backend)
        if opened is not None:
            log_resolution(source, base)
            return opened
    raise DataError(
        f"data source '{source}' not found: looked for {_looked_for(backend)} "
        f"with <path> = {' or '.join(tried)}.{_missing_hint(source)}"
    )
