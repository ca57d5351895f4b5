"""The data sources behind the Data layer: IDX, NPZ, LMDB, detection, order."""
import gzip
import os
import struct
import sys

import numpy as np
import pytest

from dualnet import dualnet_pb2 as pb
from dualnet.data.idx import read_idx, read_idx_pair
from dualnet.data.npz import read_npz
from dualnet.data.order import EpochOrder
from dualnet.data.sources import open_source
from dualnet.errors import DataError
from layer_harness import FASHION, needs_fashion_mnist, import_optional

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def write_idx(path, array, dtype="u1"):
    """An IDX file written from the format's definition (gzip when the name ends in .gz)."""
    array = np.asarray(array).astype(dtype)
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if str(path).endswith(".gz") else raw)
    return str(path)


def write_pair(folder, prefix, images, labels, suffix=""):
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return str(folder / prefix)


def data_param(**fields):
    return pb.DataParameter(batch_size=1, **fields)


def small_images(n=5, h=3, w=4):
    return (np.arange(n * h * w) % 251).reshape(n, h, w).astype(np.uint8)


# ---------------------------------------------------------------- IDX

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_reads_plain_and_gzip_files(tmp_path, suffix):
    images = small_images()
    path = write_idx(tmp_path / f"x-images-idx3-ubyte{suffix}", images)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (5, 3, 4)
    np.testing.assert_array_equal(got, images)


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">f4", ">f8", "i1"])
def test_idx_big_endian_types_come_back_native(tmp_path, dtype):
    values = np.array([[-3, 0, 7], [1000 if dtype != "i1" else 100, 2, -1]])
    got = read_idx(write_idx(tmp_path / "v.idx", values, dtype))
    np.testing.assert_array_equal(got, values)
    assert got.dtype.isnative


def test_idx_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte' is not an IDX file.*0x12340803"):
        read_idx(str(path))


def test_idx_truncated_data_is_refused(tmp_path):
    path = write_idx(tmp_path / "t.idx", small_images())
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) - 7)
    with pytest.raises(DataError, match="declares shape \\(5, 3, 4\\)"):
        read_idx(path)


def test_idx_label_and_image_counts_must_agree(tmp_path):
    images = write_idx(tmp_path / "a-images-idx3-ubyte", small_images(5))
    labels = write_idx(tmp_path / "a-labels-idx1-ubyte", np.arange(4))
    with pytest.raises(DataError, match="holds 5 images but .*a-labels-idx1-ubyte' holds 4 labels"):
        read_idx_pair(images, labels)


def test_idx_pair_gives_one_channel_images(tmp_path):
    prefix = write_pair(tmp_path, "train", small_images(), [3, 1, 4, 1, 5], ".gz")
    source = open_source(data_param(source=prefix), None)
    assert source.num_records == 5 and source.datum_shape == (1, 3, 4)
    pixels, labels = source.read(np.array([4, 0]))
    np.testing.assert_array_equal(pixels[:, 0], small_images()[[4, 0]])
    np.testing.assert_array_equal(labels, [5, 3])


def test_idx_source_may_name_the_images_file(tmp_path):
    write_pair(tmp_path, "t10k", small_images(), [0, 1, 2, 3, 4])
    source = open_source(data_param(source=str(tmp_path / "t10k-images-idx3-ubyte")), None)
    np.testing.assert_array_equal(source.read(np.arange(5))[1], [0, 1, 2, 3, 4])


def test_idx_original_mnist_dot_names_are_found(tmp_path):
    write_idx(tmp_path / "train-images.idx3-ubyte", small_images())
    write_idx(tmp_path / "train-labels.idx1-ubyte", np.arange(5))
    assert open_source(data_param(source=str(tmp_path / "train")), None).num_records == 5


def test_idx_missing_labels_file_is_named(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", small_images())
    with pytest.raises(DataError, match="train-labels-idx1-ubyte\\[.gz\\]"):
        open_source(data_param(source=str(tmp_path / "train")), None)


# ---------------------------------------------------------------- NPZ

def test_npz_3d_data_gets_a_channel_axis(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, data=small_images(), label=np.array([1, 0, 1, 0, 1]))
    data, label = read_npz(str(path))
    assert data.shape == (5, 1, 3, 4) and data.dtype == np.uint8
    np.testing.assert_array_equal(data[:, 0], small_images())
    np.testing.assert_array_equal(label, [1, 0, 1, 0, 1])


def test_npz_4d_float_data_is_float32(tmp_path):
    path = tmp_path / "d.npz"
    values = np.linspace(-1, 1, 2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    np.savez(path, data=values, label=np.array([[7.0], [8.0]]))
    data, label = read_npz(str(path))
    assert data.dtype == np.float32 and data.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(data, values, rtol=1e-7)
    np.testing.assert_array_equal(label, [7, 8])


def test_npz_missing_array_lists_what_it_holds(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=small_images(), label=np.arange(5))
    with pytest.raises(DataError, match="no array named 'data' \\(it holds: images, label\\)"):
        read_npz(str(path))


def test_npz_with_object_arrays_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, data=np.array([object()], dtype=object), label=np.arange(1))
    with pytest.raises(DataError, match="cannot read NPZ file"):
        read_npz(str(path))


def test_npz_count_mismatch_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, data=small_images(5), label=np.arange(3))
    with pytest.raises(DataError, match="5 samples in 'data' but 3 in 'label'"):
        read_npz(str(path))


# ---------------------------------------------------------------- LMDB

def write_lmdb(path, records, encoded=False):
    lmdb = import_optional("lmdb", "the lmdb package is not installed (pip install lmdb)")
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, (pixels, label) in enumerate(records):
            c, h, w = pixels.shape
            datum = pb.Datum(channels=c, height=h, width=w, label=label, encoded=encoded)
            if pixels.dtype == np.uint8:
                datum.data = pixels.tobytes()
            else:
                datum.float_data.extend(pixels.ravel().tolist())
            txn.put(f"{i:08d}".encode(), datum.SerializeToString())
    env.close()
    return str(path)


def test_lmdb_round_trip_of_uint8_datums(tmp_path):
    pixels = np.arange(6 * 2 * 3 * 3, dtype=np.uint8).reshape(6, 2, 3, 3)
    path = write_lmdb(tmp_path / "train_lmdb", [(p, i % 3) for i, p in enumerate(pixels)])
    source = open_source(data_param(source=path), None)
    assert source.num_records == 6 and source.datum_shape == (2, 3, 3)
    got, labels = source.read(np.array([5, 0, 3]))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, pixels[[5, 0, 3]])
    np.testing.assert_array_equal(labels, [2, 0, 0])


def test_lmdb_float_datums(tmp_path):
    pixels = np.linspace(0, 1, 3 * 4).reshape(3, 1, 2, 2).astype(np.float32)
    path = write_lmdb(tmp_path / "f_lmdb", [(p, 1) for p in pixels])
    source = open_source(data_param(source=path, backend=pb.DataParameter.LMDB), None)
    got, _ = source.read(np.arange(3))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, pixels)


def test_lmdb_encoded_datums_are_refused(tmp_path):
    path = write_lmdb(tmp_path / "jpg_lmdb", [(np.zeros((1, 2, 2), np.uint8), 0)], encoded=True)
    with pytest.raises(DataError, match="encoded .*not"):
        open_source(data_param(source=path), None)


def test_lmdb_without_the_package_says_pip_install_lmdb(tmp_path, monkeypatch):
    folder = tmp_path / "x_lmdb"
    folder.mkdir()
    (folder / "data.mdb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(DataError, match="pip install lmdb"):
        open_source(data_param(source=str(folder)), None)


def test_leveldb_is_not_supported(tmp_path):
    folder = tmp_path / "mnist_train_leveldb"
    folder.mkdir()
    for name in ("CURRENT", "MANIFEST-000002", "000003.ldb"):
        (folder / name).write_bytes(b"")
    with pytest.raises(DataError, match="LevelDB.*convert it to LMDB"):
        open_source(data_param(source=str(folder), backend=pb.DataParameter.LEVELDB), None)


# ---------------------------------------------------------------- finding the source

def test_missing_source_names_the_paths_tried(tmp_path):
    with pytest.raises(DataError) as error:
        open_source(data_param(source=str(tmp_path / "nothing")), None)
    message = str(error.value)
    assert "nothing' not found" in message
    assert "<path>-images-idx3-ubyte[.gz]" in message and "a .npz file" in message
    assert f"<path> = {tmp_path / 'nothing'}." in message


def test_a_folder_of_idx_files_names_the_sets_inside(tmp_path):
    write_pair(tmp_path, "train", small_images(), np.arange(5))
    write_pair(tmp_path, "t10k", small_images(), np.arange(5))
    with pytest.raises(DataError, match=f'folder of IDX files; .*"{tmp_path}/t10k" or "{tmp_path}/train"'):
        open_source(data_param(source=str(tmp_path)), None)


def test_missing_caffe_example_lmdb_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="create_mnist.sh") as error:
        open_source(data_param(source="examples/mnist/mnist_train_lmdb"), str(tmp_path / "models"))
    assert str(tmp_path / "models" / "examples/mnist/mnist_train_lmdb") in str(error.value)


def test_relative_source_prefers_the_current_directory(tmp_path, monkeypatch):
    here, there = tmp_path / "cwd", tmp_path / "proto"
    for folder, label in ((here, 1), (there, 2)):
        (folder / "d").mkdir(parents=True)
        np.savez(folder / "d" / "set.npz", data=small_images(1), label=np.array([label]))
    monkeypatch.chdir(here)
    assert open_source(data_param(source="d/set.npz"), str(there)).read(np.array([0]))[1][0] == 1
    monkeypatch.chdir(tmp_path)
    assert open_source(data_param(source="d/set.npz"), str(there)).read(np.array([0]))[1][0] == 2


def test_sources_on_the_same_file_share_the_decoded_arrays(tmp_path):
    prefix = write_pair(tmp_path, "train", small_images(), np.arange(5))
    first = open_source(data_param(source=prefix), None)
    second = open_source(data_param(source=prefix + "-images-idx3-ubyte"), None)
    assert first is second


def test_decoded_arrays_are_read_only(tmp_path):
    source = open_source(data_param(source=write_pair(tmp_path, "train", small_images(), np.arange(5))), None)
    with pytest.raises(ValueError):
        source.images[0, 0, 0, 0] = 1


# ---------------------------------------------------------------- order

def test_order_cycles_through_records_and_wraps():
    order = EpochOrder(10)
    batches = [order.next(4).tolist() for _ in range(4)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]


def test_order_batch_larger_than_the_data_set_wraps_several_times():
    assert EpochOrder(3).next(7).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_shuffled_order_makes_each_epoch_a_permutation():
    order = EpochOrder(12, np.random.default_rng(5))
    epochs = [np.concatenate([order.next(4) for _ in range(3)]) for _ in range(4)]
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(12))
    assert len({tuple(e) for e in epochs}) > 1


def test_shuffled_order_repeats_with_the_same_seed():
    a, b = EpochOrder(50, np.random.default_rng(9)), EpochOrder(50, np.random.default_rng(9))
    np.testing.assert_array_equal(a.next(120), b.next(120))


# ---------------------------------------------------------------- the real Fashion-MNIST

@needs_fashion_mnist
def test_fashion_mnist_files_load():
    train = open_source(data_param(source=f"{FASHION}/train"), None)
    test = open_source(data_param(source=f"{FASHION}/t10k"), None)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 1, 28, 28)
    assert train.labels.min() == 0 and train.labels.max() == 9
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(test.labels).tolist() == [1000] * 10
