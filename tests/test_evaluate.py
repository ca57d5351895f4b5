"""`dualnet test`: scores over batches, and exactly one pass with --epoch."""
import numpy as np
import pytest

from dualnet import TEST, Net
from dualnet.errors import DualnetError
from dualnet.evaluate import score
from dualnet.io import parse_net_text

NET = """
layer {{ name: "d" type: "Data" top: "data" top: "label"
        data_param {{ source: "{path}" batch_size: 4 backend: NPZ }} }}
layer {{ name: "flat" type: "Flatten" bottom: "data" top: "flat" }}
layer {{ name: "acc" type: "Accuracy" bottom: "flat" bottom: "label" top: "accuracy" }}
"""


def make_net(tmp_path, records):
    # Each record's "score" puts a 1 at the class it is labelled with, except
    # the records whose index is a multiple of 3, which score class 0 while
    # labelled 1: accuracy over one pass = 1 - (#multiples of 3) / records.
    data = np.zeros((records, 1, 1, 2), dtype=np.float32)
    labels = np.zeros(records, dtype=np.int64)
    for i in range(records):
        labels[i] = 1 if i % 3 == 0 else i % 2
        data[i, 0, 0, 0 if i % 3 == 0 else labels[i]] = 1
    path = tmp_path / "set.npz"
    np.savez(path, data=data, label=labels)
    param, origin = parse_net_text(NET.format(path=path), "net.prototxt")
    return Net(param, TEST, origin=origin)


def test_epoch_scores_every_record_once(tmp_path):
    net = make_net(tmp_path, 10)                 # batches of 4, 4, 2
    means, _ = score(net)
    wrong = len([i for i in range(10) if i % 3 == 0])
    assert means["accuracy"] == pytest.approx(1 - wrong / 10)


def test_iterations_average_per_batch_and_wrap_around(tmp_path):
    net = make_net(tmp_path, 10)
    means, _ = score(net, iterations=3)          # records 0-3, 4-7, 8,9,0,1
    wrong = [[i for i in batch if i % 3 == 0] for batch in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1])]
    per_batch = [1 - len(w) / 4 for w in wrong]
    assert means["accuracy"] == pytest.approx(np.mean(per_batch))


def test_epoch_needs_a_data_layer_that_knows_its_size():
    param, origin = parse_net_text('layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 } } }',
                                   "n.prototxt")
    with pytest.raises(DualnetError, match="--epoch needs exactly one data layer"):
        score(Net(param, TEST, origin=origin))
