"""The Data layer: batch order, shuffle, rand_skip, Caffe's transforms, source lookup."""
import os

import numpy as np
import pytest

import dualnet
from dualnet import dualnet_pb2 as pb
from dualnet.errors import DualnetError, LayerError
from layer_harness import FASHION, needs_fashion_mnist, build, forward, import_optional

TRAIN, TEST = pb.TRAIN, pb.TEST


def distinct_images(n, c=1, h=3, w=4):
    """uint8 images whose pixels all differ, so any crop/flip is identifiable."""
    return (np.arange(n * c * h * w) % 256).reshape(n, c, h, w).astype(np.uint8)


@pytest.fixture
def npz(tmp_path):
    def make(images, labels=None, name="set.npz"):
        labels = np.arange(len(images)) if labels is None else labels
        path = tmp_path / name
        np.savez(path, data=images, label=labels)
        return str(path)
    return make


def data_layer(source, batch=4, extra="", transform="", phase=TRAIN, tops=2, seed=1234):
    top = 'top: "data" top: "label"' if tops == 2 else 'top: "data"'
    text = (f'name: "d" type: "Data" {top} data_param {{ source: "{source}" batch_size: {batch} {extra} }} '
            f'transform_param {{ {transform} }}')
    return build(text, [], phase=phase, dtype=np.float32, seed=seed)


def batches(layer, top, count):
    out = []
    for _ in range(count):
        forward(layer, [], top)
        out.append(layer.last_indices.copy())
    return out


# ---------------------------------------------------------------- shapes and order

def test_tops_are_batch_of_images_and_labels(npz):
    layer, _, top = data_layer(npz(distinct_images(10)))
    assert top[0].shape == (4, 1, 3, 4) and top[1].shape == (4,)
    forward(layer, [], top)
    assert top[0].dtype == np.float32 and top[1].dtype == np.float32


def test_label_top_is_optional(npz):
    layer, _, top = data_layer(npz(distinct_images(10)), tops=1)
    forward(layer, [], top)
    assert len(top) == 1 and top[0].shape == (4, 1, 3, 4)


def test_batches_cycle_in_record_order_and_wrap_around(npz):
    images = distinct_images(10)
    layer, _, top = data_layer(npz(images, labels=np.arange(10) * 10))
    expected = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]
    for indices in expected:
        data, labels = forward(layer, [], top)
        assert layer.last_indices.tolist() == indices
        assert layer.last_indices.dtype == np.int64
        np.testing.assert_array_equal(labels, np.array(indices) * 10)
        np.testing.assert_array_equal(data, images[indices].astype(np.float32))


def test_batch_size_is_required(npz):
    with pytest.raises(LayerError, match="batch_size"):
        data_layer(npz(distinct_images(4)), batch=0)


def test_shuffle_with_the_same_seed_gives_the_same_order(npz):
    source = npz(distinct_images(12))
    a, _, top_a = data_layer(source, extra="shuffle: true shuffle_seed: 3")
    b, _, top_b = data_layer(source, extra="shuffle: true shuffle_seed: 3", seed=99)
    np.testing.assert_array_equal(np.concatenate(batches(a, top_a, 9)), np.concatenate(batches(b, top_b, 9)))


def test_shuffle_visits_every_record_once_per_epoch(npz):
    layer, _, top = data_layer(npz(distinct_images(12)), extra="shuffle: true shuffle_seed: 3")
    epochs = np.concatenate(batches(layer, top, 12)).reshape(4, 12)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(12))
    assert epochs[0].tolist() != list(range(12))
    assert len({tuple(e) for e in epochs}) > 1


def test_shuffle_seeds_differ(npz):
    source = npz(distinct_images(12))
    a, _, top_a = data_layer(source, extra="shuffle: true shuffle_seed: 3")
    b, _, top_b = data_layer(source, extra="shuffle: true shuffle_seed: 4")
    assert np.concatenate(batches(a, top_a, 3)).tolist() != np.concatenate(batches(b, top_b, 3)).tolist()


def test_shuffle_without_seed_follows_the_global_seed(npz):
    source = npz(distinct_images(12))
    orders = []
    for seed in (7, 7, 8):
        layer, _, top = data_layer(source, extra="shuffle: true", seed=seed)
        orders.append(np.concatenate(batches(layer, top, 3)).tolist())
    assert orders[0] == orders[1] and orders[0] != orders[2]


def test_rand_skip_1_skips_nothing(npz):
    layer, _, top = data_layer(npz(distinct_images(10)), extra="rand_skip: 1")
    assert batches(layer, top, 1)[0].tolist() == [0, 1, 2, 3]


def test_rand_skip_starts_at_a_random_record_below_it(npz):
    source = npz(distinct_images(10))
    starts = set()
    for seed in range(20):
        layer, _, top = data_layer(source, extra="rand_skip: 6", seed=seed)
        first = batches(layer, top, 1)[0]
        assert 0 <= first[0] < 6
        assert first.tolist() == [(first[0] + k) % 10 for k in range(4)]
        starts.add(int(first[0]))
    assert len(starts) > 1


def test_train_and_test_layers_on_one_file_keep_their_own_cursors(npz):
    source = npz(distinct_images(10))
    train, _, top_train = data_layer(source)
    test, _, top_test = data_layer(source, phase=TEST, batch=5)
    batches(train, top_train, 2)
    assert batches(test, top_test, 1)[0].tolist() == [0, 1, 2, 3, 4]
    assert train.source is test.source


# ---------------------------------------------------------------- transforms

def test_scale_multiplies_pixels(npz):
    images = distinct_images(4)
    layer, _, top = data_layer(npz(images), transform="scale: 0.00390625")
    data, _ = forward(layer, [], top)
    np.testing.assert_array_equal(data, images / np.float32(256))


def test_mean_value_is_subtracted_before_scale(npz):
    images = distinct_images(4, c=3)
    layer, _, top = data_layer(npz(images), transform="mean_value: 10 mean_value: 20 mean_value: 30 scale: 0.5")
    data, _ = forward(layer, [], top)
    means = np.array([10, 20, 30], np.float32)[None, :, None, None]
    np.testing.assert_allclose(data, (images.astype(np.float32) - means) * np.float32(0.5), rtol=1e-6)


def test_one_mean_value_applies_to_every_channel(npz):
    images = distinct_images(4, c=3)
    layer, _, top = data_layer(npz(images), transform="mean_value: 100")
    np.testing.assert_array_equal(forward(layer, [], top)[0], images.astype(np.float32) - 100)


def write_mean_file(path, mean):
    proto = pb.BlobProto(num=1, channels=mean.shape[0], height=mean.shape[1], width=mean.shape[2])
    proto.data.extend(mean.ravel().tolist())
    path.write_bytes(proto.SerializeToString())
    return str(path)


def test_mean_file_is_subtracted_per_pixel(npz, tmp_path):
    images = distinct_images(4, c=2)
    mean = np.linspace(0, 50, 2 * 3 * 4).reshape(2, 3, 4).astype(np.float32)
    mean_file = write_mean_file(tmp_path / "mean.binaryproto", mean)
    layer, _, top = data_layer(npz(images), transform=f'mean_file: "{mean_file}" scale: 2')
    data, _ = forward(layer, [], top)
    np.testing.assert_allclose(data, (images - mean[None]) * 2, rtol=1e-6)


def test_mean_file_and_mean_value_together_are_refused(npz, tmp_path):
    mean_file = write_mean_file(tmp_path / "m.binaryproto", np.zeros((1, 3, 4), np.float32))
    with pytest.raises(LayerError, match="both mean_file and mean_value"):
        data_layer(npz(distinct_images(4)), transform=f'mean_file: "{mean_file}" mean_value: 1')


def test_mean_file_of_another_size_is_refused(npz, tmp_path):
    mean_file = write_mean_file(tmp_path / "m.binaryproto", np.zeros((1, 5, 5), np.float32))
    with pytest.raises(LayerError, match="is 1x5x5 but the data is 1x3x4"):
        data_layer(npz(distinct_images(4)), transform=f'mean_file: "{mean_file}"')


def test_missing_mean_file_is_named(npz, tmp_path):
    with pytest.raises(LayerError, match="mean_file 'nope.binaryproto' not found"):
        data_layer(npz(distinct_images(4)), transform='mean_file: "nope.binaryproto"')


def test_wrong_number_of_mean_values_is_refused(npz):
    with pytest.raises(LayerError, match="1 mean_value or one per channel \\(3\\), got 2"):
        data_layer(npz(distinct_images(4, c=3)), transform="mean_value: 1 mean_value: 2")


def test_force_color_is_refused_for_raw_pixels(npz):
    with pytest.raises(LayerError, match="force_color / force_gray"):
        data_layer(npz(distinct_images(4)), transform="force_color: true")


def test_crop_larger_than_the_images_is_refused(npz):
    with pytest.raises(LayerError, match="crop_size 4 is larger than the 3x4 images"):
        data_layer(npz(distinct_images(4)), transform="crop_size: 4")


def test_centre_crop_in_test(npz):
    images = distinct_images(4, c=2, h=5, w=6)
    layer, _, top = data_layer(npz(images), transform="crop_size: 3", phase=TEST)
    data, _ = forward(layer, [], top)
    assert data.shape == (4, 2, 3, 3)
    # offsets (5 - 3) // 2 = 1 and (6 - 3) // 2 = 1
    np.testing.assert_array_equal(data, images[:, :, 1:4, 1:4])


def windows(image, k):
    """Every k x k window of a C x H x W image, with its offsets."""
    _, h, w = image.shape
    return {(i, j): image[:, i:i + k, j:j + k] for i in range(h - k + 1) for j in range(w - k + 1)}


def test_random_crop_in_train_takes_a_window_per_sample(npz):
    images = distinct_images(32, c=2, h=6, w=6)
    layer, _, top = data_layer(npz(images), batch=32, transform="crop_size: 4")
    data, _ = forward(layer, [], top)
    offsets = []
    for sample, image in zip(data, images):
        matches = [off for off, win in windows(image, 4).items() if np.array_equal(win, sample)]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 1


def test_mirror_in_train_flips_a_random_half_with_a_fixed_seed(npz):
    images = distinct_images(64, c=2)
    source = npz(images)
    runs = []
    for _ in range(2):
        layer, _, top = data_layer(source, batch=64, transform="mirror: true", seed=42)
        runs.append(forward(layer, [], top, seed=42)[0])
    np.testing.assert_array_equal(runs[0], runs[1])
    flipped = [np.array_equal(out, image[:, :, ::-1]) for out, image in zip(runs[0], images)]
    kept = [np.array_equal(out, image) for out, image in zip(runs[0], images)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_mirror_applies_in_test_too_as_in_caffe(npz):
    images = distinct_images(64)
    layer, _, top = data_layer(npz(images), batch=64, transform="mirror: true", phase=TEST)
    data, _ = forward(layer, [], top)
    assert any(np.array_equal(out, image[:, :, ::-1]) for out, image in zip(data, images))


def test_mirror_and_crop_take_the_mean_at_the_source_pixel(npz, tmp_path):
    images = distinct_images(32, h=5, w=5)
    mean = np.arange(25, dtype=np.float32).reshape(1, 5, 5) * 0.5
    mean_file = write_mean_file(tmp_path / "m.binaryproto", mean)
    layer, _, top = data_layer(npz(images), batch=32, transform=f'crop_size: 3 mirror: true mean_file: "{mean_file}"')
    data, _ = forward(layer, [], top)
    centred = images.astype(np.float32) - mean
    for sample, image in zip(data, centred):
        candidates = list(windows(image, 3).values())
        candidates += [c[:, :, ::-1] for c in candidates]
        assert sum(np.array_equal(sample, c) for c in candidates) == 1


def test_float_data_is_transformed_too(npz):
    images = np.linspace(-1, 1, 4 * 3 * 4).reshape(4, 1, 3, 4)
    layer, _, top = data_layer(npz(images), transform="scale: 10 mean_value: 0.5")
    data, _ = forward(layer, [], top)
    np.testing.assert_allclose(data, (images.astype(np.float32) - 0.5) * 10, rtol=1e-6)


def test_lmdb_source_feeds_the_layer(tmp_path):
    lmdb = import_optional("lmdb", "the lmdb package is not installed (pip install lmdb)")
    pixels = distinct_images(6, c=3, h=2, w=2)
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        for i, p in enumerate(pixels):
            datum = pb.Datum(channels=3, height=2, width=2, data=p.tobytes(), label=i + 1)
            txn.put(f"{i:05d}".encode(), datum.SerializeToString())
    env.close()
    layer, _, top = data_layer(str(tmp_path / "db"), extra="backend: LMDB", transform="scale: 0.5")
    forward(layer, [], top)
    data, labels = forward(layer, [], top)
    np.testing.assert_array_equal(labels, [5, 6, 1, 2])
    np.testing.assert_array_equal(data, pixels[[4, 5, 0, 1]] * np.float32(0.5))


# ---------------------------------------------------------------- in a net

NET = """name: "n"
layer {
  name: "mnist"
  type: "Data"
  top: "data"
  top: "label"
  data_param { source: "%s" batch_size: 2 }
}
"""


def test_relative_source_is_found_beside_the_prototxt(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    np.savez(models / "set.npz", data=distinct_images(3), label=np.array([4, 5, 6]))
    (models / "net.prototxt").write_text(NET % "set.npz")
    monkeypatch.chdir(tmp_path)
    net = dualnet.Net(str(models / "net.prototxt"), dualnet.TRAIN)
    net.forward()
    np.testing.assert_array_equal(net.blobs["label"].data, [4, 5])
    assert net.blobs["data"].data.dtype == np.float32


def test_missing_source_in_a_net_names_file_line_layer_and_path(tmp_path, monkeypatch):
    (tmp_path / "net.prototxt").write_text(NET % "mnist_train_lmdb")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DualnetError) as error:
        dualnet.Net(str(tmp_path / "net.prototxt"), dualnet.TRAIN)
    message = str(error.value)
    assert "net.prototxt:7:16:" in message and "'mnist'" in message      # at the source field
    assert str(tmp_path / "mnist_train_lmdb") in message and "create_mnist.sh" in message


@needs_fashion_mnist
def test_fashion_mnist_through_the_layer():
    layer, _, top = data_layer(f"{FASHION}/t10k", batch=10, transform="scale: 0.00390625", phase=TEST)
    data, labels = forward(layer, [], top)
    assert data.shape == (10, 1, 28, 28) and 0 <= data.min() and data.max() < 1
    assert labels.tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
