import numpy as np
import pytest

from dualnet.errors import LayerError
from layer_harness import build, forward

ACCURACY = 'type: "Accuracy" %s'


def reference_accuracy(x, labels, top_k=1, ignore=None):
    """Per sample: rank the classes by score; the true class must be strictly among the top_k,
    i.e. fewer than top_k other classes score at least as high as it does."""
    hits, counted = 0, 0
    for scores, label in zip(x, labels):
        label = int(label)
        if label == ignore:
            continue
        rivals = sum(1 for c, s in enumerate(scores) if c != label and s >= scores[label])
        hits += rivals < top_k
        counted += 1
    return hits / counted if counted else 0.0


def test_hand_computed_top_1():
    x = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.0, 0.9, 0.1]])
    layer, bottom, top = build(ACCURACY % "", [x, np.array([1, 0, 0, 2.0])])
    assert forward(layer, bottom, top)[0] == pytest.approx(0.5)


def test_tie_with_the_true_class_counts_as_wrong():
    x = np.array([[0.4, 0.4, 0.2]])
    for label in (0.0, 1.0):
        layer, bottom, top = build(ACCURACY % "", [x, np.array([label])])
        assert forward(layer, bottom, top)[0] == 0.0


def test_tie_inside_top_k_still_counts_as_right():
    # one rival ties with the true class: 1 rival < top_k 2
    layer, bottom, top = build(ACCURACY % "accuracy_param { top_k: 2 }", [np.array([[0.4, 0.4, 0.2]]), np.array([0.0])])
    assert forward(layer, bottom, top)[0] == 1.0


def test_tie_at_the_edge_of_top_k_counts_as_wrong():
    # true class 2 at 0.3 ties with class 1; class 0 is higher: 2 rivals, not < 2
    layer, bottom, top = build(ACCURACY % "accuracy_param { top_k: 2 }", [np.array([[0.5, 0.3, 0.3]]), np.array([2.0])])
    assert forward(layer, bottom, top)[0] == 0.0


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_top_k_matches_reference_with_ties(top_k):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (40, 5)).astype(float)          # many ties
    labels = rng.integers(0, 5, 40).astype(float)
    layer, bottom, top = build(ACCURACY % f"accuracy_param {{ top_k: {top_k} }}", [x, labels])
    assert forward(layer, bottom, top)[0] == pytest.approx(reference_accuracy(x, labels, top_k))


def test_ignore_label_samples_are_not_counted():
    x = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
    layer, bottom, top = build(ACCURACY % "accuracy_param { ignore_label: 1 }", [x, np.array([0, 1, 1.0])])
    assert forward(layer, bottom, top)[0] == 1.0


def test_everything_ignored_gives_zero():
    layer, bottom, top = build(ACCURACY % "accuracy_param { ignore_label: 0 }", [np.ones((2, 3)), np.zeros(2)])
    assert forward(layer, bottom, top)[0] == 0.0


def test_spatial_labels_on_axis_1():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 2, 2))
    labels = rng.integers(0, 3, (2, 1, 2, 2)).astype(float)
    layer, bottom, top = build(ACCURACY % "", [x, labels])
    flat_x = np.moveaxis(x, 1, -1).reshape(-1, 3)
    assert forward(layer, bottom, top)[0] == pytest.approx(reference_accuracy(flat_x, labels.ravel()))


def test_last_axis_as_class_axis():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 4))
    labels = rng.integers(0, 4, (3, 2)).astype(float)
    layer, bottom, top = build(ACCURACY % "accuracy_param { axis: -1 }", [x, labels])
    assert forward(layer, bottom, top)[0] == pytest.approx(reference_accuracy(x.reshape(6, 4), labels.ravel()))


def test_per_class_accuracy_top():
    x = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.8, 0.2, 0.0], [0.9, 0.1, 0.0]])
    labels = np.array([0, 1, 1, 1.0])
    layer, bottom, top = build(ACCURACY % "", [x, labels], num_tops=2)
    accuracy, per_class = forward(layer, bottom, top)
    assert accuracy == pytest.approx(0.5)
    np.testing.assert_allclose(per_class, [1.0, 1 / 3, 0.0])


def test_no_backward():
    layer, bottom, top = build(ACCURACY % "", [np.ones((2, 3)), np.zeros(2)])
    forward(layer, bottom, top)
    with pytest.raises(LayerError, match="no backward"):
        layer.backward(top, [True, False], bottom)
    assert not layer.allow_force_backward(0)


def test_top_k_above_class_count_is_refused():
    with pytest.raises(LayerError, match="top_k must be less than or equal to the number of classes"):
        build(ACCURACY % "accuracy_param { top_k: 4 }", [np.ones((2, 3)), np.zeros(2)])


def test_label_count_mismatch_is_refused():
    with pytest.raises(LayerError, match="number of labels must match"):
        build(ACCURACY % "", [np.ones((2, 3, 2)), np.zeros(2)])
