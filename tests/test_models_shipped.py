"""The shipped solvers build and train, and the LeNet files are Caffe's LeNet recipe."""
import glob
import math
import os

import pytest

import dualnet
from dualnet.io.text import read_net_param, read_solver_param
from layer_harness import FASHION, needs_fashion_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SINGLE_NET_SOLVERS = sorted(path for path in glob.glob(os.path.join(ROOT, "solvers", "*.prototxt"))
                            if not read_solver_param(path).HasField("dual_param"))


@needs_fashion_mnist
@pytest.mark.parametrize("path", SINGLE_NET_SOLVERS, ids=os.path.basename)
def test_shipped_solver_builds_and_takes_one_step(tmp_path, path):
    # A copy with one batch per test pass and snapshots kept out of the repository.
    param = read_solver_param(path)
    param.net = os.path.join(os.path.dirname(path), param.net)
    param.test_iter[:] = [1] * len(param.test_iter)
    param.snapshot_prefix = str(tmp_path / "snap")
    copy = tmp_path / os.path.basename(path)
    copy.write_text(str(param))
    solver = dualnet.get_solver(str(copy))
    solver.step(1)
    assert solver.iter == 1
    assert math.isfinite(solver.smoothed_loss) and solver.smoothed_loss > 0


def test_there_are_single_net_solvers_to_smoke_test():
    assert {os.path.basename(p) for p in SINGLE_NET_SOLVERS} >= {"lenet_solver.prototxt", "cnn4_solver.prototxt"}


def layers_in(net_param, phase):
    return [layer for layer in net_param.layer
            if not layer.include or any(rule.phase == phase for rule in layer.include)]


def test_lenet_files_are_caffes_lenet_recipe():
    solver = read_solver_param(os.path.join(ROOT, "solvers", "lenet_solver.prototxt"))
    assert solver.net == "../models/lenet_train_test.prototxt"
    assert (solver.type or "SGD", solver.base_lr, solver.momentum, solver.weight_decay) == (
        "SGD", pytest.approx(0.01), pytest.approx(0.9), pytest.approx(0.0005))
    assert (solver.lr_policy, solver.gamma, solver.power) == ("inv", pytest.approx(0.0001), pytest.approx(0.75))
    assert (solver.max_iter, solver.test_interval, solver.display, solver.snapshot) == (10000, 500, 100, 5000)

    net, _origin = read_net_param(os.path.join(ROOT, "models", "lenet_train_test.prototxt"))
    train_data = [l for l in layers_in(net, dualnet.TRAIN) if l.type == "Data"]
    test_data = [l for l in layers_in(net, dualnet.TEST) if l.type == "Data"]
    assert [l.data_param.batch_size for l in train_data] == [64]
    assert [l.data_param.batch_size for l in test_data] == [100]
    assert list(solver.test_iter) == [100]
    assert solver.test_iter[0] * test_data[0].data_param.batch_size == 10000    # the whole test set
    assert all(l.transform_param.scale == pytest.approx(1 / 256) for l in train_data + test_data)
    shape = [(l.name, l.type, l.convolution_param.num_output or l.inner_product_param.num_output)
             for l in layers_in(net, dualnet.TRAIN) if l.type != "Data"]
    assert shape == [("conv1", "Convolution", 20), ("pool1", "Pooling", 0), ("conv2", "Convolution", 50),
                     ("pool2", "Pooling", 0), ("ip1", "InnerProduct", 500), ("relu1", "ReLU", 0),
                     ("ip2", "InnerProduct", 10), ("loss", "SoftmaxWithLoss", 0)]
    convolutions = [l.convolution_param for l in net.layer if l.type == "Convolution"]
    assert [(list(c.kernel_size), list(c.stride) or [1]) for c in convolutions] == [([5], [1]), ([5], [1])]
    pools = [l.pooling_param for l in net.layer if l.type == "Pooling"]
    assert [(p.pool, p.kernel_size, p.stride) for p in pools] == [(0, 2, 2), (0, 2, 2)]    # MAX 2x2 stride 2
    multipliers = {l.name: [p.lr_mult for p in l.param] for l in net.layer if l.param}
    assert multipliers == {name: [1, 2] for name in ("conv1", "conv2", "ip1", "ip2")}
    fillers = {(l.convolution_param if l.type == "Convolution" else l.inner_product_param).weight_filler.type
               for l in net.layer if l.type in ("Convolution", "InnerProduct")}
    assert fillers == {"xavier"}
    assert [l.name for l in layers_in(net, dualnet.TEST) if l.type == "Accuracy"] == ["accuracy"]
