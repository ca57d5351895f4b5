"""Solver behaviour: seeds, snapshots and exact resume, NaN stop, signals,
Caffe's log lines, and the messages for bad solver files."""
import logging
import os
import re
import shutil

import numpy as np
import pytest

import dualnet
from dualnet.errors import NumericalError, PrototxtError, SolverError
from dualnet.io import parse_solver_text
from dualnet.io.solverstate import read_state
from solver_nets import loss, regression_solver, weights

# Random inputs every iteration and dropout: a resume is exact only if the
# random generator's state travels with the snapshot.
NOISY_NET = """
layer { name: "x" type: "DummyData" top: "x" top: "t"
        dummy_data_param { shape { dim: 8 dim: 3 } shape { dim: 8 dim: 1 } data_filler { type: "gaussian" std: 1 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "x" top: "h"
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "drop" type: "Dropout" bottom: "h" top: "h" dropout_param { dropout_ratio: 0.3 } }
layer { name: "fc2" type: "InnerProduct" bottom: "h" top: "y"
        inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
"""


def noisy_solver(tmp_path, extra="", seed=7, **fields):
    settings = dict(base_lr=0.05, momentum=0.9, lr_policy='"step"', gamma=0.5, stepsize=3, max_iter=6,
                    display=0, random_seed=seed, snapshot_prefix=f'"{tmp_path}/snaps/noisy"')
    settings.update(fields)
    text = f"net_param {{ {NOISY_NET} }} " + " ".join(f"{k}: {v}" for k, v in settings.items()) + " " + extra
    return dualnet.get_solver(parse_solver_text(text, str(tmp_path / "solver.prototxt")))


def all_weights(solver):
    return [b.data.copy() for b in solver.net.learnable_params]


def run(tmp_path, iterations, **options):
    solver = noisy_solver(tmp_path, **options)
    solver.step(iterations)
    return all_weights(solver)


def test_same_seed_same_run_bit_for_bit(tmp_path):
    first = run(tmp_path, 5)
    second = run(tmp_path, 5)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_differ(tmp_path):
    assert not np.array_equal(run(tmp_path, 2, seed=1)[0], run(tmp_path, 2, seed=2)[0])


def test_resume_continues_exactly(tmp_path):
    straight = noisy_solver(tmp_path)
    straight.step(6)
    interrupted = noisy_solver(tmp_path)
    interrupted.step(3)
    _, state_path = interrupted.snapshot()
    resumed = noisy_solver(tmp_path, seed=99)   # a different seed: the snapshot's generator must win
    resumed.restore(state_path)
    assert resumed.iter == 3
    resumed.step(3)
    for a, b in zip(all_weights(straight), all_weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_snapshot_pair_contents(tmp_path):
    solver = noisy_solver(tmp_path)
    solver.step(4)
    model_path, state_path = solver.snapshot()
    assert model_path == f"{tmp_path}/snaps/noisy_iter_4.caffemodel"
    assert state_path == f"{tmp_path}/snaps/noisy_iter_4.solverstate"
    state = read_state(state_path)
    assert (state.iter, state.learned_net, state.current_step, state.solver_type) == (4, model_path, 1, "SGD")
    assert len(state.history) == len(solver.net.learnable_params)   # SGD keeps one history blob per param
    net = dualnet.Net(parse_solver_text(f"net_param {{ {NOISY_NET} }}").net_param, dualnet.TEST, weights=model_path)
    np.testing.assert_array_equal(net.params["fc1"][0].data, solver.net.params["fc1"][0].data)


def test_snapshot_pair_moved_together_still_resumes(tmp_path):
    solver = noisy_solver(tmp_path)
    solver.step(2)
    model_path, state_path = solver.snapshot()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(model_path, moved)
    shutil.move(state_path, moved)
    resumed = noisy_solver(tmp_path)
    resumed.restore(str(moved / os.path.basename(state_path)))
    np.testing.assert_array_equal(resumed.net.params["fc2"][0].data, solver.net.params["fc2"][0].data)


def test_restore_accepts_the_caffemodel_of_a_pair(tmp_path):
    solver = noisy_solver(tmp_path)
    solver.step(2)
    model_path, _ = solver.snapshot()
    resumed = noisy_solver(tmp_path)
    resumed.restore(model_path)
    assert resumed.iter == 2


def test_restore_refuses_a_prototxt_saying_what_to_pass(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(f"name: 'x' {NOISY_NET}")
    with pytest.raises(SolverError, match="prototxt.*takes a .solverstate"):
        noisy_solver(tmp_path).restore(str(path))


def test_restore_refuses_a_lone_caffemodel(tmp_path):
    solver = noisy_solver(tmp_path)
    model_path = tmp_path / "weights.caffemodel"
    solver.net.save(str(model_path))
    with pytest.raises(SolverError, match="needs the .solverstate.*--weights"):
        solver.restore(str(model_path))


def test_restore_refuses_another_solver_type(tmp_path):
    solver = noisy_solver(tmp_path)
    _, state_path = solver.snapshot()
    adam = noisy_solver(tmp_path, type='"Adam"')
    with pytest.raises(SolverError, match="written by a SGD solver; this solver is Adam"):
        adam.restore(state_path)


def test_snapshot_every_n_and_after_training(tmp_path):
    solver = noisy_solver(tmp_path, snapshot=4)
    solver.solve()
    names = sorted(os.listdir(tmp_path / "snaps"))
    assert names == ["noisy_iter_4.caffemodel", "noisy_iter_4.solverstate",
                     "noisy_iter_6.caffemodel", "noisy_iter_6.solverstate"]


def test_snapshot_folder_is_created_at_start(tmp_path):
    noisy_solver(tmp_path / "deep" / "er")
    assert (tmp_path / "deep" / "er" / "snaps").is_dir()


def test_unwritable_snapshot_folder_is_reported_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SolverError, match="cannot create the snapshot folder"):
        noisy_solver(blocker)


def test_sigint_style_stop_snapshots_and_stops(tmp_path):
    solver = noisy_solver(tmp_path, max_iter=100)
    requests = iter([None, None, "stop"])
    solver.action_request = lambda: next(requests, None)
    solver.solve()
    assert solver.iter == 3
    assert (tmp_path / "snaps" / "noisy_iter_3.solverstate").exists()


def test_sighup_style_snapshot_goes_on(tmp_path):
    solver = noisy_solver(tmp_path, snapshot_after_train="false")
    requests = iter([None, "snapshot"])
    solver.action_request = lambda: next(requests, None)
    solver.solve()
    assert solver.iter == 6
    assert sorted(os.listdir(tmp_path / "snaps")) == ["noisy_iter_2.caffemodel", "noisy_iter_2.solverstate"]


def test_nan_loss_stops_with_iteration_and_layer_and_keeps_last_snapshot(tmp_path):
    solver = noisy_solver(tmp_path, snapshot=1, max_iter=50, base_lr=1e6)
    with pytest.raises(NumericalError) as caught:
        solver.solve()
    message = str(caught.value)
    iteration = int(re.search(r"Iteration (\d+)", message).group(1))
    assert re.search(r"first non-finite output is top '\w+' of layer '(fc1|fc2|drop)'", message)
    assert f"noisy_iter_{iteration}.solverstate" in message
    assert (tmp_path / "snaps" / f"noisy_iter_{iteration}.solverstate").exists()
    assert not (tmp_path / "snaps" / f"noisy_iter_{iteration + 1}.solverstate").exists()


def test_smoothed_loss_is_the_mean_of_the_last_average_loss_losses():
    solver = regression_solver('base_lr: 0.1 lr_policy: "fixed" display: 0 average_loss: 3 type: "SGD"')
    losses = []
    for _ in range(5):
        losses.append(loss(weights(solver)))   # the loss each iteration sees, before its update
        solver.step(1)
    solver = regression_solver('base_lr: 0.1 lr_policy: "fixed" display: 0 average_loss: 3 type: "SGD"')
    solver.step(5)
    assert solver.smoothed_loss == pytest.approx(np.mean(losses[-3:]), rel=1e-5)


CAFFE_LINES = {
    # the regular expressions Caffe's tools/extra/parse_log.py relies on
    "train": re.compile(r"Train net output #(\d+): (\S+) = ([\.\deE+-]+)"),
    "test": re.compile(r"Test net output #(\d+): (\S+) = ([\.\deE+-]+)"),
    "lr": re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+([eE]?[-+]?[0-9]+)?)"),
    "glog": re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] "),
}


def test_log_lines_follow_caffe(dualnet_log):
    from dualnet.log import GlogFormatter

    solver = regression_solver('base_lr: 0.1 lr_policy: "fixed" display: 1 max_iter: 2 type: "SGD" '
                               'test_iter: 1 test_interval: 2 snapshot_after_train: false')
    solver.solve()
    formatter = GlogFormatter()
    lines = [formatter.format(r) for r in dualnet_log.records]
    text = "\n".join(lines)
    assert all(CAFFE_LINES["glog"].match(line) for line in lines)
    assert "Solving regression" in text
    assert re.search(r"Iteration 0 \([\d.e+-]+ iter/s, [\d.e+-]+s/1 iters\), loss = [\d.e+-]+", text)
    assert re.search(r"Iteration 0, lr = 0\.1\b", text)
    assert re.search(r"    Train net output #0: loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)", text)
    assert "Iteration 0, Testing net (#0)" in text and "Iteration 2, Testing net (#0)" in text
    assert CAFFE_LINES["train"].search(text) and CAFFE_LINES["test"].search(text) and CAFFE_LINES["lr"].search(text)
    assert text.rstrip().endswith("Optimization Done.")


def test_test_nets_share_the_trained_weights():
    solver = regression_solver('base_lr: 0.1 lr_policy: "fixed" display: 0 type: "SGD" test_iter: 1 test_interval: 1')
    solver.step(2)
    assert solver.test_nets[0].params["fc"][0] is solver.net.params["fc"][0]


def test_test_initialization_false_skips_the_first_test(dualnet_log):
    solver = regression_solver('base_lr: 0.1 lr_policy: "fixed" display: 0 type: "SGD" test_iter: 1 '
                               'test_interval: 2 test_initialization: false max_iter: 2')
    solver.step(2)
    assert "Testing net" not in dualnet_log.text


def test_gpu_fields_are_accepted_and_noted(dualnet_log):
    regression_solver('base_lr: 0.1 lr_policy: "fixed" solver_mode: GPU device_id: 1')
    assert "ignores them" in dualnet_log.text


@pytest.mark.parametrize("text,message", [
    ('base_lr: 0.1 lr_policy: "fixed"', "give exactly one train net"),
    ('net: "a" train_net: "b" base_lr: 0.1 lr_policy: "fixed"', "found 2: train_net, net"),
    ('type: "SDG" base_lr: 0.1 lr_policy: "fixed"', "did you mean 'SGD'"),
    ('snapshot_format: HDF5 base_lr: 0.1 lr_policy: "fixed"', "HDF5 is not supported"),
    ('regularization_type: "L3" base_lr: 0.1 lr_policy: "fixed"', "regularization_type 'L3'"),
])
def test_bad_solver_files_are_explained(text, message):
    with pytest.raises(SolverError, match=message):
        dualnet.get_solver(parse_solver_text(text, "bad_solver.prototxt"))


def test_missing_net_file_names_it(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text('net: "nowhere.prototxt" base_lr: 0.1 lr_policy: "fixed"')
    with pytest.raises(PrototxtError, match="nowhere.prototxt: no such net prototxt file"):
        dualnet.get_solver(str(path))


def test_net_path_is_found_beside_the_solver(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "net.prototxt").write_text(NOISY_NET)
    (folder / "solver.prototxt").write_text(
        f'net: "net.prototxt" base_lr: 0.1 lr_policy: "fixed" snapshot_prefix: "{tmp_path}/s/x"')
    monkeypatch.chdir(tmp_path)
    solver = dualnet.get_solver(str(folder / "solver.prototxt"))
    assert "fc1" in solver.net.params


def test_weights_field_initialises_from_a_caffemodel(tmp_path):
    source = noisy_solver(tmp_path)
    source.net.params["fc2"][0].data[...] = 3.0
    path = tmp_path / "init.caffemodel"
    source.net.save(str(path))
    solver = noisy_solver(tmp_path, extra=f'weights: "{path}"')
    np.testing.assert_array_equal(solver.net.params["fc2"][0].data, 3.0)




def npz_net(tmp_path, records=50):
    rng = np.random.default_rng(3)
    path = tmp_path / "set.npz"
    np.savez(path, data=rng.integers(0, 255, (records, 1, 4, 4)).astype(np.uint8),
             label=rng.integers(0, 3, records))
    return f"""
layer {{ name: "d" type: "Data" top: "data" top: "label" transform_param {{ scale: 0.01 }}
        data_param {{ source: "{path}" batch_size: 8 backend: NPZ shuffle: true }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "data" top: "y"
        inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "y" bottom: "label" top: "loss" }}
"""


def test_resume_continues_the_shuffled_data_order_exactly(tmp_path):
    def solver():
        text = (f'net_param {{ {npz_net(tmp_path)} }} base_lr: 0.5 momentum: 0.9 lr_policy: "fixed" '
                f'display: 0 random_seed: 5 snapshot_prefix: "{tmp_path}/s/npz"')
        return dualnet.get_solver(parse_solver_text(text, str(tmp_path / "solver.prototxt")))

    straight = solver()
    straight.step(14)                  # 112 samples: past two epochs of 50 records
    interrupted = solver()
    interrupted.step(9)
    _, state_path = interrupted.snapshot()
    resumed = solver()
    resumed.restore(state_path)
    resumed.step(5)
    np.testing.assert_array_equal(resumed.net.params["fc"][0].data, straight.net.params["fc"][0].data)
