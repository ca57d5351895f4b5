"""Caffe's public model zoo, unchanged: the deploy nets build and compute what
OpenCV's independent Caffe importer computes; the train_val nets, whose LMDBs
are not here, fail with one clear line.

The prototxts in tests/zoo/ are BVLC Caffe's files byte for byte (see
tests/zoo/README.md). For each deploy net: fill every parameter blob with a
seeded gaussian (He scale, sqrt(2 / fan_in); biases uniform in +-0.1; the
classifier scaled down so the softmax is not saturated), write the weights with
`net.save`, then run the same batch of image-scale input (values in +-120, as
mean-subtracted pixels) through a fresh dualnet.Net loaded from that
.caffemodel and through cv2.dnn.readNetFromCaffe(prototxt, caffemodel).

Agreement measure, per blob:  max|dualnet - opencv| / max|opencv|  <  1e-3.

Only blobs that no in-place layer overwrites are compared (conv1 after relu1
in place is one blob in Caffe but two outputs in OpenCV); the pre-softmax
classifier output is always among them.
"""
import hashlib
import os
import sys

import numpy as np
import pytest

import dualnet
from layer_harness import import_optional, missing_optional

ZOO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo")
TOLERANCE = 1e-3
BATCH = 2

OPENCV_MISSING = ("OpenCV's Caffe importer is not available: pip install 'opencv-python-headless<5' "
                  "(OpenCV 5 dropped readNetFromCaffe)")

# The files exactly as BVLC Caffe ships them (models/<net>/ at master).
SHA256 = {
    "bvlc_alexnet/deploy.prototxt": "b564ba76416b4ac1e062c6621cbd80d9c19304ba152d9d791c75870f3182c4fa",
    "bvlc_alexnet/train_val.prototxt": "e17cc959f1f8b67c9c9cbd10db5ab8aa4513d0c2429c292391c04c1d9c949023",
    "bvlc_reference_caffenet/deploy.prototxt": "922248a4d2f6aac1cc8e7e5dbd996cc2ecd3356480d67c198f6cf96b12311a04",
    "bvlc_reference_caffenet/train_val.prototxt": "7053c6a0210b3f4575283f6e1ea63408057d48741de827204d0a11b5adeb5c8f",
    "bvlc_googlenet/deploy.prototxt": "fa36cd4112a3240a29600a5aa35333f31bec33daa1a6085b0af308a9f50f0c50",
    "bvlc_googlenet/train_val.prototxt": "18ddbb88c588600354625ecccd85dfe9a142b7d79778f4b8728cb2d5fe056784",
    "bvlc_reference_rcnn_ilsvrc13/deploy.prototxt": "64beca73e61443ed475c27e9ddbd445ee193cba9ace01a96cfc2f30679d91a40",
    "finetune_flickr_style/deploy.prototxt": "6845c36941f777cea8feec626b7d04a5d390bd30e32c4141921196d4f5290d68",
    "finetune_flickr_style/train_val.prototxt": "2ab76aa192d7f748b13944e491edf192af2bec3606fc3d66e5cd6fb1de247698",
}

# net -> (classifier layer, its output width, blobs compared with OpenCV)
DEPLOY = {
    "bvlc_alexnet": ("fc8", 1000, ["norm1", "pool1", "norm2", "pool2", "pool5", "fc8", "prob"]),
    "bvlc_reference_caffenet": ("fc8", 1000, ["pool1", "norm1", "pool2", "norm2", "pool5", "fc8", "prob"]),
    "bvlc_googlenet": ("loss3/classifier", 1000, [
        "pool1/3x3_s2", "pool1/norm1", "conv2/norm2", "pool2/3x3_s2", "inception_3a/output",
        "inception_4c/output", "inception_5b/output", "pool5/7x7_s1", "loss3/classifier", "prob"]),
    "bvlc_reference_rcnn_ilsvrc13": ("fc-rcnn", 200, ["pool1", "norm1", "pool2", "norm2", "pool5", "fc-rcnn"]),
    "finetune_flickr_style": ("fc8_flickr", 20, ["pool1", "norm1", "pool2", "norm2", "pool5", "fc8_flickr", "prob"]),
}

# The ImageNet train_val nets, and the LMDB their data layer reads in each phase
LMDB_NETS = ["bvlc_alexnet", "bvlc_reference_caffenet", "bvlc_googlenet"]
SOURCES = {
    dualnet.TRAIN: "examples/imagenet/ilsvrc12_train_lmdb",
    dualnet.TEST: "examples/imagenet/ilsvrc12_val_lmdb",
}


def zoo_path(net, kind):
    return os.path.join(ZOO, net, f"{kind}.prototxt")


def fill_weights(net, classifier, seed):
    """Seeded He-scale weights, small biases; the classifier 100x smaller."""
    rng = np.random.default_rng(seed)
    for name, blobs in net.params.items():
        weights = blobs[0].data
        fan_in = int(np.prod(weights.shape[1:]))
        std = np.sqrt(2.0 / fan_in) * (0.01 if name == classifier else 1.0)
        weights[...] = rng.standard_normal(weights.shape, dtype=np.float32) * np.float32(std)
        if len(blobs) > 1:
            blobs[1].data[...] = rng.uniform(-0.1, 0.1, blobs[1].data.shape).astype(np.float32)


def data_layer_block(path, phase_word):
    """(1-based line of its `layer {`, its lines) of the layer named "data" included in `phase_word`."""
    with open(path) as handle:
        lines = handle.read().splitlines()
    starts = [i for i, text in enumerate(lines) if text == "layer {"] + [len(lines)]
    for start, end in zip(starts, starts[1:]):
        block = lines[start:end]
        if '  name: "data"' in block and f"    phase: {phase_word}" in block:
            return start + 1, block
    raise AssertionError(f"no data layer for {phase_word} in {path}")


def data_source_position(path, phase_word):
    """'line:column' (1-based) of that layer's `source:` field."""
    first, block = data_layer_block(path, phase_word)
    row = next(i for i, text in enumerate(block) if text.lstrip().startswith("source:"))
    return f"{first + row}:{block[row].index('source:') + 1}"


def run_both(cv2, name, folder):
    """Save seeded weights for `name`, run dualnet and OpenCV on them: {blob: (ours, theirs)}."""
    classifier, _, compared = DEPLOY[name]
    prototxt = zoo_path(name, "deploy")
    weights = str(folder / f"{name}.caffemodel")

    filled = dualnet.Net(prototxt, dualnet.TEST)
    fill_weights(filled, classifier, seed=sorted(DEPLOY).index(name))
    filled.save(weights)
    input_shape = (BATCH,) + filled.blobs["data"].shape[1:]
    del filled

    rng = np.random.default_rng(99)
    images = rng.uniform(-120.0, 120.0, input_shape).astype(np.float32)

    ours = dualnet.Net(prototxt, dualnet.TEST, weights=weights)
    ours.blobs["data"].reshape(images.shape)
    ours.reshape()
    ours.forward(data=images)
    our_blobs = {blob: ours.blobs[blob].data.copy() for blob in compared}
    del ours

    theirs = cv2.dnn.readNetFromCaffe(prototxt, weights)
    theirs.setInput(images)
    their_blobs = dict(zip(compared, theirs.forward(compared)))
    del theirs
    os.remove(weights)  # ~240 MB for the AlexNet family
    return {blob: (our_blobs[blob], their_blobs[blob]) for blob in compared}


def load_opencv():
    """cv2 with its Caffe importer; a skip where it is missing (a failure under CI)."""
    cv2 = import_optional("cv2", OPENCV_MISSING)
    if not hasattr(getattr(cv2, "dnn", None), "readNetFromCaffe"):
        missing_optional(OPENCV_MISSING)
    return cv2


@pytest.fixture(scope="module")
def opencv():
    return load_opencv()


@pytest.fixture(scope="module")
def zoo_runs(opencv, tmp_path_factory):
    """run_both(name), computed once per net for the whole module."""
    runs = {}

    def run(name):
        if name not in runs:
            runs[name] = run_both(opencv, name, tmp_path_factory.mktemp(name))
        return runs[name]
    return run


@pytest.mark.parametrize("required", ["", "0"])
def test_missing_opencv_skips_the_comparison_on_a_developer_machine(required, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)             # `import cv2` now raises ImportError
    monkeypatch.setenv("DUALNET_REQUIRE_OPTIONAL", required)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="OpenCV's Caffe importer is not available"):
        load_opencv()


@pytest.mark.parametrize("variable", ["DUALNET_REQUIRE_OPTIONAL", "CI"])
def test_missing_opencv_fails_where_optional_packages_are_required(variable, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.delenv("DUALNET_REQUIRE_OPTIONAL", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(variable, "true")
    with pytest.raises(pytest.fail.Exception, match="OpenCV's Caffe importer is not available.*requires the optional"):
        load_opencv()


@pytest.mark.parametrize("name", sorted(SHA256))
def test_zoo_fixture_is_the_unchanged_bvlc_file(name):
    with open(os.path.join(ZOO, name), "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == SHA256[name]


@pytest.mark.parametrize("name", sorted(DEPLOY))
def test_deploy_prototxt_builds_unchanged(name):
    classifier, width, _ = DEPLOY[name]
    net = dualnet.Net(zoo_path(name, "deploy"), dualnet.TEST)
    assert net.inputs == ["data"]
    assert net.blobs["data"].shape == ((10, 3, 224, 224) if name == "bvlc_googlenet" else (10, 3, 227, 227))
    assert net.blobs[classifier].shape == (10, width)


@pytest.mark.parametrize("name, blob", [(name, blob) for name in sorted(DEPLOY) for blob in DEPLOY[name][2]])
def test_deploy_net_agrees_with_opencv(zoo_runs, name, blob):
    ours, theirs = zoo_runs(name)[blob]
    assert ours.shape == theirs.shape
    assert np.all(np.isfinite(ours))
    relative = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert relative < TOLERANCE, f"max|dualnet - opencv| / max|opencv| = {relative:.3g} for '{blob}'"


@pytest.mark.parametrize("name", [name for name in sorted(DEPLOY) if "prob" in DEPLOY[name][2]])
def test_compared_softmax_is_not_saturated(zoo_runs, name):
    # Keeps the prob comparison meaningful: a one-hot softmax would agree trivially.
    prob = zoo_runs(name)["prob"][1]
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    assert 2.0 / prob.shape[1] < prob.max() < 0.9


@pytest.mark.parametrize("phase", [dualnet.TRAIN, dualnet.TEST], ids=["TRAIN", "TEST"])
@pytest.mark.parametrize("name", LMDB_NETS)
def test_train_val_without_lmdb_names_data_layer_and_source(name, phase, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # wherever the tests run, the LMDBs are not there
    path = zoo_path(name, "train_val")
    with pytest.raises(dualnet.DualnetError) as raised:
        dualnet.Net(path, phase)
    message = str(raised.value)
    assert "\n" not in message
    phase_name = "TRAIN" if phase == dualnet.TRAIN else "TEST"
    assert message.startswith(f"{path}:{data_source_position(path, phase_name)}: "), message
    assert "layer 'data' (Data)" in message
    assert f"'{SOURCES[phase]}'" in message


def test_test_phase_error_points_at_the_test_phase_data_layer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = zoo_path("bvlc_alexnet", "train_val")
    with pytest.raises(dualnet.DualnetError) as raised:
        dualnet.Net(path, dualnet.TEST)
    assert str(raised.value).startswith(f"{path}:{data_source_position(path, 'TEST')}: ")


# The image lists the Flickr-style train_val's ImageData layers read in each phase
FLICKR_SOURCES = {
    dualnet.TRAIN: "data/flickr_style/train.txt",
    dualnet.TEST: "data/flickr_style/test.txt",
}


@pytest.mark.parametrize("phase", [dualnet.TRAIN, dualnet.TEST], ids=["TRAIN", "TEST"])
def test_flickr_train_val_names_the_unimplemented_imagedata_type_and_its_source(phase, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = zoo_path("finetune_flickr_style", "train_val")
    with pytest.raises(dualnet.DualnetError) as raised:
        dualnet.Net(path, phase)
    message = str(raised.value)
    assert "\n" not in message
    phase_name = "TRAIN" if phase == dualnet.TRAIN else "TEST"
    type_line = data_layer_block(path, phase_name)[0] + 2          # the block's `type:` field, the one at fault
    with open(path) as handle:
        assert handle.read().splitlines()[type_line - 1] == '  type: "ImageData"'
    assert message.startswith(f"{path}:{type_line}:3: "), message
    assert "layer 'data' (ImageData)" in message
    assert "layer type 'ImageData' is not implemented" in message and "convert_imageset" in message
    assert f"image_data_param.source '{FLICKR_SOURCES[phase]}'" in message
