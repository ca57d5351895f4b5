"""Solver behaviour: seeds, snapshots and exact resume, NaN stop, signals,
Caffe's log lines, and the messages for bad solver files."""
import json
import os
import re
import shutil

import numpy as np
import pytest

import dualnet
from dualnet.errors import NumericalError, PrototxtError, SolverError
from dualnet.io import parse_solver_text
from dualnet.io.solverstate import read_state
from solver_nets import T, X, loss, regression_solver, weights

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


# (solver fields, history blobs per parameter, current_step saved after iterations 0-2).
# Multistep's stepvalues 1 and 2 are both passed by then; a resume that lost
# current_step would catch up one step per iteration and use the wrong rate at 3.
RESUMED = {
    "SGD step": ({}, 1, 0),
    "Nesterov": ({"type": '"Nesterov"'}, 1, 0),
    "Adam": ({"type": '"Adam"', "momentum2": 0.999}, 2, 0),
    "AdaDelta": ({"type": '"AdaDelta"', "delta": 1e-6}, 2, 0),
    "SGD multistep": ({"lr_policy": '"multistep"', "extra": "stepvalue: 1 stepvalue: 2"}, 1, 2),
}


@pytest.mark.parametrize("case", RESUMED)
def test_resume_continues_exactly(tmp_path, case):
    fields, slots, current_step = RESUMED[case]
    straight = noisy_solver(tmp_path, **fields)
    straight.step(6)
    interrupted = noisy_solver(tmp_path, **fields)
    interrupted.step(3)
    _, state_path = interrupted.snapshot()
    state = read_state(state_path)
    assert len(state.history) == slots * 4              # fc1 and fc2: weights and bias each
    assert state.current_step == current_step
    resumed = noisy_solver(tmp_path, **dict(fields, seed=99))   # the snapshot's generator must win
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


# Files passed to restore() that it must refuse: each maker writes one beside an SGD solver.
def a_prototxt(tmp_path, _solver):
    path = tmp_path / "net.prototxt"
    path.write_text(f"name: 'x' {NOISY_NET}")
    return path


def a_lone_caffemodel(tmp_path, solver):
    path = tmp_path / "weights.caffemodel"
    solver.net.save(str(path))
    return path


def a_caffemodel_renamed_solverstate(tmp_path, solver):
    path = tmp_path / "weights.solverstate"
    solver.net.save(str(path))
    return path


def random_bytes(tmp_path, _solver):
    path = tmp_path / "noise.solverstate"
    path.write_bytes(bytes(range(256)) * 2)
    return path


def a_state_with_one_history_blob(tmp_path, _solver):
    from dualnet import dualnet_pb2 as pb
    from dualnet.io.blobproto import blob_to_proto

    path = tmp_path / "short.solverstate"
    state = pb.SolverState(iter=3, solver_type="SGD")
    state.history.append(blob_to_proto(np.zeros(5, np.float32)))
    path.write_bytes(state.SerializeToString())
    return path


def a_state_whose_caffemodel_is_gone(_tmp_path, solver):
    model_path, state_path = solver.snapshot()
    os.remove(model_path)
    return state_path


def an_sgd_snapshot(_tmp_path, solver):
    return solver.snapshot()[1]


@pytest.mark.parametrize("make_file,restorer,phrases", [
    (a_prototxt, {}, ["is a text file (a prototxt?)", "--snapshot takes a .solverstate written by a snapshot"]),
    (a_lone_caffemodel, {}, ["is a .caffemodel and no weights.solverstate lies beside it",
                             "--snapshot needs the .solverstate", "use --weights"]),
    (a_caffemodel_renamed_solverstate, {}, ["does not look like a .solverstate (no iteration, no history)",
                                            "--snapshot takes a .solverstate"]),
    (random_bytes, {}, ["not a .solverstate (it does not parse as a SolverState message)",
                        "--snapshot takes a .solverstate"]),
    (a_state_with_one_history_blob, {}, ["incorrect length of history blobs", "the snapshot has 1, "
                                         "this net and solver need 4", "was it written for another net?"]),
    (a_state_whose_caffemodel_is_gone, {}, ["its weights file", "noisy_iter_0.caffemodel is missing",
                                            "keep each snapshot's .caffemodel with its .solverstate"]),
    (an_sgd_snapshot, {"type": '"Adam"'}, ["was written by a SGD solver; this solver is Adam",
                                           "Resume with the same solver type"]),
], ids=lambda value: value.__name__ if callable(value) else None)
def test_bad_snapshot_files_are_explained(tmp_path, make_file, restorer, phrases):
    path = str(make_file(tmp_path, noisy_solver(tmp_path)))
    with pytest.raises(SolverError) as caught:
        noisy_solver(tmp_path, **restorer).restore(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for phrase in phrases:
        assert phrase in message


def test_snapshot_every_n_and_after_training(tmp_path):
    solver = noisy_solver(tmp_path, snapshot=4)
    solver.solve()
    names = sorted(os.listdir(tmp_path / "snaps"))
    assert names == ["noisy_iter_4.caffemodel", "noisy_iter_4.solverstate",
                     "noisy_iter_6.caffemodel", "noisy_iter_6.solverstate"]


def test_snapshot_folder_is_created_at_start(tmp_path):
    noisy_solver(tmp_path / "deep" / "er")
    assert (tmp_path / "deep" / "er" / "snaps").is_dir()


def read_only_folder(tmp_path):
    """tmp_path/locked, whose snaps/ exists but cannot be written."""
    snaps = tmp_path / "locked" / "snaps"
    snaps.mkdir(parents=True)
    snaps.chmod(0o500)
    if os.access(snaps, os.W_OK):
        pytest.skip("running as root, which writes into a read-only folder anyway; "
                    "the folder-under-a-file case still runs")
    return snaps.parent


def folder_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    return blocker


@pytest.mark.parametrize("make_folder,phrases", [
    (folder_under_a_file, ["cannot create the snapshot folder {snaps}: Not a directory"]),
    (read_only_folder, ["the snapshot folder {snaps} is not writable; "
                        "change snapshot_prefix or the folder's permissions"]),
], ids=["under a file", "read-only"])
def test_unusable_snapshot_folder_is_reported_at_start(tmp_path, make_folder, phrases):
    folder = make_folder(tmp_path)
    with pytest.raises(SolverError) as caught:
        noisy_solver(folder)
    for phrase in phrases:
        assert phrase.format(snaps=folder / "snaps") in str(caught.value)


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


def test_snapshot_request_during_a_test_pass_snapshots_and_testing_goes_on(tmp_path, dualnet_log):
    solver = noisy_solver(tmp_path, extra="test_iter: 3 test_interval: 4", snapshot_after_train="false")
    requests = iter(["snapshot"])           # the first request is read in the test pass at iteration 0
    solver.action_request = lambda: next(requests, None)
    solver.solve()
    assert solver.iter == 6
    assert sorted(os.listdir(tmp_path / "snaps")) == ["noisy_iter_0.caffemodel", "noisy_iter_0.solverstate"]
    assert dualnet_log.text.count("Test net output #0: loss") == 2     # the tests at 0 and 4 both finished


def test_stop_on_a_snapshot_iteration_writes_that_snapshot_once(tmp_path, dualnet_log):
    solver = noisy_solver(tmp_path, snapshot=2, max_iter=100)
    requests = iter([None, "stop"])         # read after iterations 1 and 2; 2 is a snapshot multiple
    solver.action_request = lambda: next(requests, None)
    solver.solve()
    assert solver.iter == 2
    assert dualnet_log.text.count("Snapshotting solver state to binary proto file") == 1
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


GLOG_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ \S+:\d+\] ")


def test_log_lines_follow_caffe(dualnet_log):
    from dualnet.log import GlogFormatter

    solver = regression_solver('base_lr: 0.1 lr_policy: "fixed" display: 1 max_iter: 2 type: "SGD" '
                               'test_iter: 1 test_interval: 2 snapshot_after_train: false')
    solver.solve()
    formatter = GlogFormatter()
    lines = [formatter.format(r) for r in dualnet_log.records]
    text = "\n".join(lines)
    assert all(GLOG_PREFIX.match(line) for line in lines)
    assert "Solving regression" in text
    assert re.search(r"Iteration 0 \([\d.e+-]+ iter/s, [\d.e+-]+s/1 iters\), loss = [\d.e+-]+", text)
    assert re.search(r"Iteration 0, lr = 0\.1\b", text)
    assert re.search(r"    Train net output #0: loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)", text)
    assert "Iteration 0, Testing net (#0)" in text and "Iteration 2, Testing net (#0)" in text
    assert re.search(r"    Test net output #0: loss = [\d.e+-]+ \(\* 1 = [\d.e+-]+ loss\)", text)
    assert text.rstrip().endswith("Optimization Done.")


def test_test_compute_loss_logs_the_mean_loss_over_test_iter_batches(dualnet_log):
    fields = 'base_lr: 0.1 lr_policy: "fixed" display: 0 type: "SGD" test_iter: 3 test_interval: 1 '
    for compute in ("false", "true"):
        solver = regression_solver(fields + f"test_compute_loss: {compute}")
        solver.test_nets[0].blobs["x"].data[...] = X
        solver.test_nets[0].blobs["t"].data[...] = T
        solver.test(0)
    found = re.findall(r"Test loss: (\S+)", dualnet_log.text)
    assert len(found) == 1                  # only with test_compute_loss: true (Caffe's default is false)
    assert float(found[0]) == pytest.approx(loss(np.full(2, 0.5)), rel=1e-5)   # the mean, not the sum of 3


STAGED_NET = NOISY_NET + """
layer { name: "val_only" type: "Power" bottom: "y" top: "y_val" include { phase: TEST stage: "val" } }
"""


def test_test_state_stages_include_layers_in_that_test_net_only(tmp_path):
    text = (f'net_param {{ {STAGED_NET} }} base_lr: 0.1 lr_policy: "fixed" test_interval: 10 '
            'test_iter: 1 test_iter: 1 test_state { stage: "val" } test_state { } '
            f'snapshot_prefix: "{tmp_path}/s"')
    solver = dualnet.get_solver(parse_solver_text(text))
    assert "val_only" in solver.test_nets[0].layer_dict
    assert "val_only" not in solver.test_nets[1].layer_dict
    assert "val_only" not in solver.net.layer_dict
    assert sorted(solver.test(0)) == ["loss", "y_val"]


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


FIXED = 'base_lr: 0.1 lr_policy: "fixed" '
INLINE_NET = f"net_param {{ {NOISY_NET} }} "


@pytest.mark.parametrize("text,phrases", [
    (FIXED, ["give exactly one train net", "found none"]),
    (FIXED + 'net: "a" train_net: "b"', ["give exactly one train net", "found 2: train_net, net"]),
    (FIXED + 'type: "SDG"', ["unknown solver type 'SDG'; did you mean 'SGD'?"]),
    (FIXED + "snapshot_format: HDF5", ["HDF5 is not supported; use BINARYPROTO"]),
    (FIXED + 'regularization_type: "L3"', ["unknown regularization_type 'L3' (L1 or L2)"]),
    (FIXED + "iter_size: 0", ["iter_size must be at least 1, got 0", "1 for one batch"]),
    (FIXED + "average_loss: 0", ["average_loss must be at least 1, got 0", "1 for none"]),
    (FIXED + "snapshot: -5", ["snapshot must be non-negative, got -5", "0 for no periodic snapshots"]),
    ('base_lr: 0.1 lr_policy: "multistep" stepvalue: 500 stepvalue: 300',
     ["multistep stepvalue must be increasing, got [500, 300]", "in order"]),
    (FIXED + f"train_net_param {{ {NOISY_NET} }} test_net_param {{ {NOISY_NET} }} "
     f"test_net_param {{ {NOISY_NET} }} test_iter: 1 test_interval: 1",
     ["test_iter must be specified once per test network", "(2 test nets, 1 test_iter)",
      "give one test_iter per test net"]),
    (FIXED + INLINE_NET + 'test_iter: 1 test_interval: 1 test_state { stage: "a" } test_state { stage: "b" }',
     ["test_state must be unspecified or specified once per test net", "(1 test nets, 2 test_state)"]),
    (FIXED + INLINE_NET + "test_iter: 1",
     ["test nets are defined, so test_interval must be > 0, got 0", "set test_interval, or remove test_iter"]),
], ids=["no net", "two nets", "type", "HDF5", "regularization", "iter_size", "average_loss", "snapshot",
        "stepvalue order", "test_iter count", "test_state count", "test_interval"])
def test_bad_solver_files_are_explained(tmp_path, text, phrases):
    path = tmp_path / "bad_solver.prototxt"
    path.write_text(text)
    with pytest.raises(SolverError) as caught:
        dualnet.get_solver(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for phrase in phrases:
        assert phrase in message


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


def test_resume_continues_the_test_nets_data_order(tmp_path):
    # One test batch of 8 per pass does not cover the 50 test records: each pass scores the next 8.
    text = (f'net_param {{ {npz_net(tmp_path)} }} base_lr: 0.5 lr_policy: "fixed" display: 0 random_seed: 5 '
            f'test_iter: 1 test_interval: 2 snapshot_prefix: "{tmp_path}/s/npz"')
    straight = dualnet.get_solver(parse_solver_text(text))
    straight.step(4)                        # tests at iterations 0 and 2 score records 0-15
    _, state_path = straight.snapshot()
    assert [(item.layer, json.loads(item.json)["position"]) for item in read_state(state_path).test_layer_state] \
        == [("0/d", 16)]
    resumed = dualnet.get_solver(parse_solver_text(text))
    resumed.restore(state_path)
    assert resumed.test(0) == straight.test(0)     # both score records 16-23


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
