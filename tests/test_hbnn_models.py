"""The HBNN example models on Fashion-MNIST: they train, save packed (sign bits + alpha) and
load back with the same outputs; and the binarisation angle tends to arccos(sqrt(2/pi))."""
import importlib.util
import math
import os

import numpy as np
import pytest

import dualnet
from dualnet.io.text import read_net_param, read_solver_param
from layer_harness import needs_fashion_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["lenet_hbnn", "lenet_hbnn_binput", "lenet_dropout"]
HBNN_LAYERS = {"conv2": "HBNNConvolution", "ip1": "HBNNInnerProduct"}
TRAIN_BATCH = 16  # the models' recipe, on a quarter of their batch of 64 to keep the test short
ITERATIONS = 30


def short_solver(model, iterations):
    """The model's solver for `iterations` steps of TRAIN_BATCH images, without display or
    snapshots (its test net, with the model's batch of 100, never runs)."""
    param = read_solver_param(os.path.join(ROOT, "solvers", f"{model}_solver.prototxt"))
    net_param, _ = read_net_param(os.path.join(ROOT, "models", f"{model}_train_test.prototxt"))
    for layer in net_param.layer:
        if layer.type == "Data" and layer.include[0].phase == dualnet.TRAIN:
            layer.data_param.batch_size = TRAIN_BATCH
    param.ClearField("net")
    param.net_param.CopyFrom(net_param)
    param.max_iter, param.test_interval, param.display, param.snapshot = iterations, 10**9, 0, 0
    param.snapshot_after_train = param.test_initialization = False
    return dualnet.get_solver(param)


def alpha_sign(W, segment_size):
    """alpha (.) sign(W) as a packed blob stores it: rows along the first axis, alpha = mean |W|
    over each segment of the row (in float64, the last segment shorter) rounded to float32."""
    rows = W.reshape(W.shape[0], -1).astype(np.float64)
    out = np.empty(rows.shape, dtype=np.float32)
    for begin in range(0, rows.shape[1], segment_size):
        segment = rows[:, begin:begin + segment_size]
        alpha = np.abs(segment).mean(axis=1, keepdims=True).astype(np.float32)
        out[:, begin:begin + segment_size] = np.where(segment >= 0, alpha, -alpha)
    return out.reshape(W.shape)


@pytest.fixture(scope="module", params=MODELS)
def trained(request):
    """(model, solver, the train loss of each iteration) after ITERATIONS iterations."""
    solver = short_solver(request.param, ITERATIONS)
    losses = []
    for _ in range(ITERATIONS):
        solver.step(1)
        losses.append(solver.smoothed_loss)  # the loss of that one iteration
    return request.param, solver, losses


@needs_fashion_mnist
def test_model_uses_the_hbnn_layers_it_names(trained):
    model, solver, _ = trained
    types = {name: layer.type for name, layer in solver.net.layer_dict.items()}
    if model == "lenet_dropout":
        assert types["drop1"] == "Dropout" and types["conv2"] == "Convolution"
        return
    assert {name: types[name] for name in HBNN_LAYERS} == HBNN_LAYERS
    assert types["conv1"] == "Convolution" and types["ip2"] == "InnerProduct"  # first and last stay float
    binarize_input = model == "lenet_hbnn_binput"
    for name in HBNN_LAYERS:
        layer = solver.net.layer_dict[name]
        assert (layer.segment_size, layer.binarize_input, layer.clip) == (64, binarize_input, 1.0)


@needs_fashion_mnist
def test_forward_backward_gives_finite_loss_and_weight_gradients(trained):
    _, solver, _ = trained
    net = solver.net
    net.clear_param_diffs()
    loss = net.forward_backward()
    assert math.isfinite(loss)
    for name in ("conv1", "conv2", "ip1", "ip2"):
        diff = net.params[name][0].diff
        assert np.all(np.isfinite(diff)) and np.abs(diff).max() > 0, name


@needs_fashion_mnist
def test_a_few_iterations_lower_the_loss(trained):
    model, _, losses = trained
    assert np.isfinite(losses).all()
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    # from ln(10) = 2.30: the HBNN layers learn slowest, with binarised inputs slower still
    assert last < first - 0.1, f"{model}: loss {first:.3f} over the first 5 iterations, {last:.3f} over the last 5"


@needs_fashion_mnist
def test_packed_model_loads_back_with_the_same_outputs(trained, tmp_path):
    model, solver, _ = trained
    prototxt = os.path.join(ROOT, "models", f"{model}_train_test.prototxt")
    net = solver.test_nets[0]
    before = net.forward()
    scores = net.blobs["ip2"].data.copy()
    float_bytes = net.save(tmp_path / "float.caffemodel")
    packed_bytes = net.save(tmp_path / "packed.caffemodel", packed_hbnn=True)
    loaded = dualnet.Net(prototxt, dualnet.TEST, weights=str(tmp_path / "packed.caffemodel"))
    after = loaded.forward()  # the same first test batch: both nets start at the file's beginning
    if model == "lenet_dropout":
        assert packed_bytes == float_bytes  # nothing to pack
        return
    # alpha * sign(W) binarises to itself, so the loaded net computes exactly the same
    np.testing.assert_array_equal(loaded.blobs["ip2"].data, scores)
    assert {k: float(v) for k, v in after.items()} == {k: float(v) for k, v in before.items()}
    for name in HBNN_LAYERS:
        W = net.params[name][0].data
        np.testing.assert_array_equal(loaded.params[name][0].data, alpha_sign(W, 64))
        np.testing.assert_array_equal(loaded.params[name][1].data, net.params[name][1].data)  # bias as floats
    # conv2 (100,000 bytes) and ip1 (1,600,000 bytes) shrink ~20x; conv1, ip2 and biases stay float
    assert float_bytes > 1_700_000 and packed_bytes < 120_000


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_binarisation_angle_tends_to_arccos_sqrt_2_over_pi():
    angles = load_script("hbnn_angles")
    rows = np.random.default_rng(0).standard_normal((4, 1 << 17))
    assert angles.angles(rows, 0).mean() == pytest.approx(math.degrees(math.acos(math.sqrt(2 / math.pi))), abs=0.1)
    assert math.degrees(math.acos(math.sqrt(2 / math.pi))) == pytest.approx(37.07, abs=0.005)
    # segments of 8: E(|w_seg|_1^2) / 8 = 8 (2/pi) + (1 - 2/pi) per segment of 8 unit-variance entries
    limit_8 = math.degrees(math.acos(math.sqrt(2 / math.pi + (1 - 2 / math.pi) / 8)))
    assert angles.angles(rows, 8).mean() == pytest.approx(limit_8, abs=0.1)
    assert limit_8 < 34.5
