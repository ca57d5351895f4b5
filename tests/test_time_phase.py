"""`dualnet time --phase TEST` times the TEST net: layers included only in TRAIN are
not in its per-layer table, layers included only in TEST are."""
import re
import subprocess
import sys

import pytest

from dual_harness import make_npz

NET = """name: "phases"
layer {{ name: "d" type: "Data" top: "data" top: "label"
        data_param {{ source: "{source}" batch_size: 4 backend: NPZ }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param {{ num_output: 4 }} }}
layer {{ name: "train_dropout" type: "Dropout" bottom: "ip" top: "ip" include {{ phase: TRAIN }} }}
layer {{ name: "test_accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
        include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }}
"""

# A line of Caffe's table: "<name padded to 10>\tforward: <ms> ms." (after the glog prefix)
TABLE_LINE = re.compile(r"\] +(\S+)\t(forward|backward): \S+ ms\.$")


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("time_phase")
    source = make_npz(folder / "records.npz", records=8, shape=(1, 3, 3))
    path = folder / "net.prototxt"
    path.write_text(NET.format(source=source))
    return path


def timed_layers(net_file, *phase_args):
    """{layer: {'forward', 'backward'}} from the table `dualnet time` prints."""
    result = subprocess.run([sys.executable, "-m", "dualnet", "time", "--model", str(net_file),
                             "--iterations", "1", *phase_args],
                            capture_output=True, text=True, cwd=net_file.parent, timeout=120)
    assert result.returncode == 0, result.stderr
    table = {}
    for line in result.stderr.splitlines():
        found = TABLE_LINE.search(line)
        if found:
            table.setdefault(found.group(1), set()).add(found.group(2))
    return table


def test_test_phase_table_has_the_test_layers_and_not_the_train_only_ones(net_file):
    table = timed_layers(net_file, "--phase", "TEST")
    # label and ip feed both accuracy and loss in TEST, so Caffe's Splits are timed too
    assert set(table) == {"d", "label_d_1_split", "ip", "ip_ip_0_split", "test_accuracy", "loss"}
    assert all(directions == {"forward", "backward"} for directions in table.values())


def test_default_phase_is_train(net_file):
    assert set(timed_layers(net_file)) == {"d", "ip", "train_dropout", "loss"}
