"""A net and solver written from the README's conventions alone (not the
shipped LeNet files) train on Fashion-MNIST: the IDX prefix convention, a
backend left to detection, relative paths found beside the prototxt."""
import os
import shutil

import pytest

import dualnet
from layer_harness import FASHION, needs_fashion_mnist

pytestmark = needs_fashion_mnist

NET = """
name: "mlp"
layer { name: "images" type: "Data" top: "pixels" top: "y" include { phase: TRAIN }
        transform_param { scale: 0.00390625 } data_param { source: "%(train)s" batch_size: 50 %(backend)s } }
layer { name: "images" type: "Data" top: "pixels" top: "y" include { phase: TEST }
        transform_param { scale: 0.00390625 } data_param { source: "%(test)s" batch_size: 500 %(backend)s } }
layer { name: "hidden" type: "InnerProduct" bottom: "pixels" top: "hidden"
        inner_product_param { num_output: 64 weight_filler { type: "msra" } } }
layer { name: "act" type: "ReLU" bottom: "hidden" top: "hidden" }
layer { name: "scores" type: "InnerProduct" bottom: "hidden" top: "scores"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "acc" type: "Accuracy" bottom: "scores" bottom: "y" top: "acc" include { phase: TEST } }
layer { name: "xent" type: "SoftmaxWithLoss" bottom: "scores" bottom: "y" top: "xent" }
"""

SOLVER = """
net: "mlp.prototxt"
type: "Adam" base_lr: 0.002 momentum: 0.9 momentum2: 0.999 lr_policy: "fixed"
max_iter: 400 test_iter: 2 test_interval: 400 display: 0 random_seed: 11
snapshot_prefix: "out/mlp"
"""


def train(folder, monkeypatch, **paths):
    (folder / "mlp.prototxt").write_text(NET % paths)
    (folder / "solver.prototxt").write_text(SOLVER)
    (folder / "out").mkdir(exist_ok=True)
    monkeypatch.chdir(folder)
    solver = dualnet.get_solver("solver.prototxt")
    solver.solve()
    return solver.test(0)["acc"]


def test_idx_prefix_convention_with_explicit_backend(tmp_path, monkeypatch):
    accuracy = train(tmp_path, monkeypatch, train=f"{FASHION}/train", test=f"{FASHION}/t10k", backend="backend: IDX")
    assert accuracy > 0.75          # 400 Adam steps of an MLP; chance is 0.10


def test_backend_detected_and_paths_relative_to_the_prototxt(tmp_path, monkeypatch):
    data = tmp_path / "project" / "data"
    data.mkdir(parents=True)
    for name in os.listdir(FASHION):
        shutil.copy(os.path.join(FASHION, name), data / name)
    folder = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "mlp.prototxt").write_text(NET % dict(train="data/train", test="data/t10k", backend=""))
    (folder / "solver.prototxt").write_text(SOLVER.replace('snapshot_prefix: "out/mlp"',
                                                           f'snapshot_prefix: "{tmp_path}/out/mlp"'))
    monkeypatch.chdir(elsewhere)            # neither path exists from here: both are found beside their files
    solver = dualnet.get_solver(str(folder / "solver.prototxt"))
    solver.solve()
    assert solver.test(0)["acc"] > 0.75
