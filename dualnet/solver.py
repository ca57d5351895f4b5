"""Solver: Caffe's training loop around a train net and its test nets.

One iteration, as Caffe's Solver::Step and SGDSolver::ApplyUpdate:
  test every test_interval (and at iteration 0 if test_initialization);
  iter_size x forward/backward (parameter diffs accumulate), loss averaged;
  display the smoothed loss (average_loss) and the train outputs;
  clip_gradients (global L2 norm over all parameters), divide diffs by
  iter_size, add L1/L2 weight decay (weight_decay * decay_mult), turn diffs
  into steps with the update rule (dualnet.updates), data -= step; iter += 1;
  snapshot every `snapshot` iterations or when a signal asks for it.
A NaN or Inf loss stops training, naming the iteration and the first layer
whose output is not finite; the last snapshot is kept.
"""
import contextlib
import json
import logging
import math
import os
import sys
import time

import numpy as np

from . import dualnet_pb2 as pb
from . import random as dn_random
from .errors import NumericalError, SolverError, did_you_mean
from .hbnn.pack_command import save_packed_snapshot
from .io.caffemodel import save_net
from .io.solverstate import (locate_learned_net, read_state, resolve_snapshot_argument,
                             snapshot_paths, write_state)
from .io.text import Origin, read_net_param, read_solver_param
from .log import get_logger
from .lr_policy import check_policy, learning_rate
from .net import Net
from .updates import RULES

log = get_logger("dualnet.solver")


def fmt(value):
    """Numbers as Caffe's iostreams print them (6 significant digits)."""
    return f"{value:.6g}"


def resolve_path(path, solver_source, what):
    """A path from a solver file: relative to the working directory, else to the solver's folder."""
    if not path or os.path.isabs(path) or os.path.exists(path) or not solver_source:
        return path
    beside = os.path.join(os.path.dirname(os.path.abspath(solver_source)), path)
    if os.path.exists(beside):
        log.info("%s %s not found in the working directory; using %s (relative to the solver file)",
                 what, path, beside)
        return beside
    return path


class Solver:
    """Train a net as a SolverParameter says; see get_solver()."""

    # After max_iter, one more forward to display the final loss (Caffe does);
    # a dual-net half has no loss of its own without its peer, so it skips it.
    final_display = True

    def __init__(self, param, source=None, weights=None, action_request=None, progress=False):
        self.param = param
        self.source = source or "<solver>"
        self.action_request = action_request
        self.progress = progress
        self._check_param()
        self.rule = RULES[param.type](param)
        log.info("Initializing solver from parameters: %s", source or "<inline>")
        if param.random_seed >= 0:
            dn_random.seed(param.random_seed)
        self._prepare_snapshot_prefix()
        self.net = self._train_net()
        self.test_nets = self._test_nets()
        for net in self.test_nets:
            net.share_with(self.net)
        self.iter = 0
        self.current_step = 0
        self.history = [[np.zeros_like(b.data) for b in self.net.learnable_params]
                        for _ in range(self.rule.histories)]
        self.losses, self.smoothed_loss = [], 0.0
        self.requested_early_exit = False
        self.last_snapshot = None
        self.seconds_per_iteration = None
        weights = weights if weights is not None else list(param.weights)
        for path in ([weights] if isinstance(weights, str) else weights):
            for part in str(path).split(","):
                if part:
                    self.copy_weights(resolve_path(part, self.source, "weights"))
        log.info("Solver scaffolding done.")

    # ------------------------------------------------------------ set-up
    def _check_param(self):
        p, where = self.param, self.source
        if p.type not in RULES:
            raise SolverError(f"{where}: unknown solver type '{p.type}'{did_you_mean(p.type, RULES)} "
                              f"(one of {', '.join(RULES)})")
        check_policy(p, where)
        if p.regularization_type not in ("L1", "L2"):
            raise SolverError(f"{where}: unknown regularization_type '{p.regularization_type}' (L1 or L2)")
        if p.iter_size < 1:
            raise SolverError(f"{where}: iter_size must be at least 1, got {p.iter_size} "
                              "(batches accumulated per update; 1 for one batch)")
        if p.average_loss < 1:
            raise SolverError(f"{where}: average_loss must be at least 1, got {p.average_loss} "
                              "(iterations the displayed loss is averaged over; 1 for none)")
        if p.HasField("solver_mode") and p.solver_mode == pb.SolverParameter.GPU or p.HasField("device_id"):
            log.info("solver_mode / device_id are GPU settings; dualnet runs on the CPU and ignores them")
        if p.snapshot_format == pb.SolverParameter.HDF5:
            raise SolverError(f"{where}: snapshot_format HDF5 is not supported; use BINARYPROTO")
        if p.snapshot < 0:
            raise SolverError(f"{where}: snapshot must be non-negative, got {p.snapshot} "
                              "(0 for no periodic snapshots, N for one every N iterations)")

    def _prepare_snapshot_prefix(self):
        """Caffe's default prefix (the solver file's name) and the folder, made now, not at the first snapshot."""
        p = self.param
        if not p.snapshot_prefix:
            base = self.source if self.source != "<solver>" else "dualnet"
            p.snapshot_prefix = os.path.splitext(base)[0]
            log.info("snapshot_prefix was not specified and is set to %s", p.snapshot_prefix)
        elif os.path.isdir(p.snapshot_prefix):
            stem = os.path.splitext(os.path.basename(self.source))[0] if self.source != "<solver>" else "dualnet"
            p.snapshot_prefix = os.path.join(p.snapshot_prefix, stem)
            log.info("snapshot_prefix was a directory and is replaced to %s", p.snapshot_prefix)
        folder = os.path.dirname(os.path.abspath(p.snapshot_prefix))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise SolverError(f"{self.source}: cannot create the snapshot folder {folder}: {error.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise SolverError(f"{self.source}: the snapshot folder {folder} is not writable; "
                              "change snapshot_prefix or the folder's permissions")

    def _net_source(self, field_param, field_file):
        """(NetParameter, Origin) from an inline param or a file field."""
        if field_param is not None:
            return field_param, Origin(self.source)
        path = resolve_path(field_file, self.source, "net")
        return read_net_param(path)

    def _train_net(self):
        p = self.param
        given = [f for f in ("train_net_param", "train_net", "net_param", "net") if p.HasField(f)]
        if len(given) != 1:
            raise SolverError(f"{self.source}: give exactly one train net (train_net_param, train_net, net_param "
                              f"or net); found {len(given) or 'none'}{': ' + ', '.join(given) if given else ''}")
        field = given[0]
        if field.endswith("_param"):
            net_param, origin = self._net_source(getattr(p, field), None)
        else:
            net_param, origin = self._net_source(None, getattr(p, field))
        log.info("Creating training net from %s", origin.path if field in ("train_net", "net") else field)
        state = pb.NetState(phase=pb.TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        state.phase = pb.TRAIN if not p.train_state.HasField("phase") else p.train_state.phase
        return Net(net_param, state=state, origin=origin)

    def _test_nets(self):
        p = self.param
        sources = [(param, None) for param in p.test_net_param] + [(None, path) for path in p.test_net]
        generic = [f for f in ("net_param", "net") if p.HasField(f)]
        if generic:
            if len(p.test_iter) < len(sources):
                raise SolverError(f"{self.source}: test_iter must be specified for each test network "
                                  f"({len(sources)} test nets, {len(p.test_iter)} test_iter); "
                                  "give one test_iter per test net")
            field = generic[0]
            extra = len(p.test_iter) - len(sources)
            item = (p.net_param, None) if field == "net_param" else (None, p.net)
            sources += [item] * extra
        elif len(p.test_iter) != len(sources):
            raise SolverError(f"{self.source}: test_iter must be specified once per test network "
                              f"({len(sources)} test nets, {len(p.test_iter)} test_iter); "
                              "give one test_iter per test net")
        if p.test_state and len(p.test_state) != len(sources):
            raise SolverError(f"{self.source}: test_state must be unspecified or specified once per test net "
                              f"({len(sources)} test nets, {len(p.test_state)} test_state)")
        if sources and p.test_interval <= 0:
            raise SolverError(f"{self.source}: test nets are defined, so test_interval must be > 0, got "
                              f"{p.test_interval}; set test_interval, or remove test_iter and the test nets "
                              "to train without testing")
        nets = []
        for i, (inline, path) in enumerate(sources):
            net_param, origin = self._net_source(inline, path)
            state = pb.NetState(phase=pb.TEST)
            state.MergeFrom(net_param.state)
            if p.test_state:
                state.MergeFrom(p.test_state[i])
            state.phase = pb.TEST if not (p.test_state and p.test_state[i].HasField("phase")) else p.test_state[i].phase
            log.info("Creating test net (#%d) specified by %s", i, origin.path)
            nets.append(Net(net_param, state=state, origin=origin))
        return nets

    def copy_weights(self, path):
        log.info("Finetuning from %s", path)
        self.net.copy_from(path)

    # ------------------------------------------------------------ training
    def learning_rate(self):
        rate, self.current_step = learning_rate(self.param, self.iter, self.current_step)
        return rate

    def solve(self, resume_file=None):
        log.info("Solving %s", self.net.name)
        log.info("Learning Rate Policy: %s", self.param.lr_policy)
        self.requested_early_exit = False
        if resume_file:
            log.info("Restoring previous solver status from %s", resume_file)
            self.restore(resume_file)
        start = self.iter
        self.step(self.param.max_iter - self.iter)
        p = self.param
        if self.requested_early_exit or (p.snapshot_after_train and (not p.snapshot or self.iter % p.snapshot != 0)):
            self._snapshot_unless_written()
        if self.requested_early_exit:
            log.info("Optimization stopped early.")
            return
        if p.display and self.iter % p.display == 0 and self.final_display:
            loss = self.net.forward_layers()
            self._update_smoothed_loss(loss, start)
            log.info("Iteration %d, loss = %s", self.iter, fmt(self.smoothed_loss))
        if p.test_interval and self.iter % p.test_interval == 0:
            self.test_all()
        log.info("Optimization Done.")

    def step(self, iterations):
        p = self.param
        start, stop = self.iter, self.iter + iterations
        self.losses, self.smoothed_loss = [], 0.0
        timer, iterations_last = time.perf_counter(), self.iter
        with contextlib.ExitStack() as context:
            # Non-finite values are caught and explained by forward_backward; keep
            # NumPy's warnings about them out of the log.
            context.enter_context(np.errstate(over="ignore", invalid="ignore", divide="ignore"))
            bar = self._progress_bar(iterations, context)
            while self.iter < stop:
                if p.test_interval and self.iter % p.test_interval == 0 and (self.iter > 0 or p.test_initialization):
                    self.test_all()
                    if self.requested_early_exit:
                        break
                display = p.display and self.iter % p.display == 0
                loss = self.forward_backward()
                self._update_smoothed_loss(loss, start)
                if display:
                    lapse = time.perf_counter() - timer
                    done = self.iter - iterations_last
                    self.seconds_per_iteration = lapse / done if done else None
                    log.info("Iteration %d (%s iter/s, %ss/%d iters), loss = %s", self.iter,
                             fmt(done / lapse if lapse else 0.0), fmt(lapse), p.display, fmt(self.smoothed_loss))
                    timer, iterations_last = time.perf_counter(), self.iter
                    self._log_outputs(self.net, "Train", {n: self.net.blobs[n].data for n in self.net.outputs})
                    self.on_display()
                self.apply_update()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{self.smoothed_loss:.4g}", refresh=False)
                request = self.action_request() if self.action_request else None
                if (p.snapshot and self.iter % p.snapshot == 0) or request == "snapshot":
                    self.snapshot()
                if request == "stop":
                    self.requested_early_exit = True
                    break

    def _progress_bar(self, total, context):
        """A tqdm bar closed with `context`; meanwhile console log lines go through tqdm.write,
        which clears the bar, writes the line and redraws the bar below it."""
        if not self.progress or total <= 0:
            return None
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        logger = logging.getLogger("dualnet")
        if any(isinstance(h, logging.StreamHandler) and h.stream in (sys.stderr, sys.stdout)
               for h in logger.handlers):
            context.enter_context(logging_redirect_tqdm(loggers=[logger]))
        return context.enter_context(tqdm(total=total, initial=0, unit="it", dynamic_ncols=True, leave=False))

    def forward_backward(self):
        """iter_size forward/backward passes; returns the mean loss. Stops on NaN/Inf."""
        self.net.clear_param_diffs()
        loss = 0.0
        for _ in range(self.param.iter_size):
            value = self.net.forward_backward()
            if not math.isfinite(value):
                self._stop_nonfinite(value)
            loss += value
        return loss / self.param.iter_size

    def _stop_nonfinite(self, value):
        culprit = self.net.first_nonfinite()
        where = (f"the first non-finite output is top '{culprit[1]}' of layer '{culprit[0]}'" if culprit
                 else "no layer output is non-finite (the loss weights overflowed)")
        if self.last_snapshot:
            kept = f"; the last snapshot is {self.last_snapshot[1]}"
            if self.last_snapshot[1].endswith(f"_iter_{self.iter}.solverstate"):
                kept += " (written just before this iteration: its weights may already be too large; an earlier one is safer)"
        else:
            kept = "; no snapshot was written"
        raise NumericalError(
            f"Iteration {self.iter}: the loss is {value}; {where}{kept}. "
            "Lower base_lr, set clip_gradients, or check the input scale."
        )

    def _update_smoothed_loss(self, loss, start):
        """Caffe's running mean of the last average_loss losses."""
        window = self.param.average_loss
        if len(self.losses) < window:
            self.losses.append(loss)
            size = len(self.losses)
            self.smoothed_loss = (self.smoothed_loss * (size - 1) + loss) / size
        else:
            index = (self.iter - start) % window
            self.smoothed_loss += (loss - self.losses[index]) / window
            self.losses[index] = loss

    def _log_outputs(self, net, kind, values):
        index = 0
        for name in net.outputs:
            weight = net.output_weight(name)
            for value in np.asarray(values[name]).ravel():
                extra = f" (* {fmt(weight)} = {fmt(weight * value)} loss)" if weight else ""
                log.info("    %s net output #%d: %s = %s%s", kind, index, name, fmt(float(value)), extra)
                index += 1

    def apply_update(self):
        """Clip, normalise, regularise, compute the steps, update the weights; iter += 1."""
        p = self.param
        rate = self.learning_rate()
        if p.display and self.iter % p.display == 0:
            log.info("Iteration %d, lr = %s", self.iter, fmt(rate))
        self.clip_gradients()
        params = self.net.learnable_params
        for i, blob in enumerate(params):
            lr_mult = self.net.params_lr[i]
            if lr_mult == 0:
                continue
            if p.iter_size > 1:
                blob.diff *= 1.0 / p.iter_size
            decay = p.weight_decay * self.net.params_weight_decay[i]
            if decay:
                if p.regularization_type == "L2":
                    blob.diff += decay * blob.data
                else:
                    blob.diff += decay * np.sign(blob.data)
            self.rule.apply(blob.diff, blob.data, [h[i] for h in self.history], rate * lr_mult, self.iter)
            blob.data -= blob.diff
        self.iter += 1

    def clip_gradients(self):
        limit = self.param.clip_gradients
        if limit < 0:
            return
        params = self.net.learnable_params
        norm = math.sqrt(sum(float(np.vdot(b.diff, b.diff)) for b in params))
        if norm > limit:
            scale = limit / norm
            log.info("Gradient clipping: scaling down gradients (L2 norm %s > %s) by scale factor %s",
                     fmt(norm), fmt(limit), fmt(scale))
            for blob in params:
                blob.diff *= scale

    # ------------------------------------------------------------ testing
    def test_all(self):
        results = []
        for i in range(len(self.test_nets)):
            results.append(self.test(i))
            if self.requested_early_exit:
                break
        return results

    def test(self, index=0):
        """Run test net `index` for its test_iter batches; returns {output: mean}."""
        log.info("Iteration %d, Testing net (#%d)", self.iter, index)
        net = self.test_nets[index]
        iterations = self.param.test_iter[index]
        totals, loss = {}, 0.0
        for _ in range(iterations):
            request = self.action_request() if self.action_request else None
            if request == "snapshot":           # as Caffe's Solver::Test: snapshot, then go on testing
                self._snapshot_unless_written()
            elif request == "stop":
                self.requested_early_exit = True
                log.info("Test interrupted.")
                return {}
            outputs = net.forward()
            if self.param.test_compute_loss:
                loss += net.loss
            for name, value in outputs.items():
                totals[name] = totals.get(name, 0.0) + np.asarray(value, dtype=np.float64)
        if self.param.test_compute_loss:
            log.info("Test loss: %s", fmt(loss / iterations))
        means = {name: totals[name] / iterations for name in net.outputs}
        self._log_outputs(net, "Test", means)
        return {name: float(np.asarray(v).ravel()[0]) if np.size(v) == 1 else v for name, v in means.items()}

    # ------------------------------------------------------------ snapshots
    def _layer_states(self):
        """The train net's per-layer state (data cursors) for the SolverState."""
        return _net_layer_states(self.net)

    def _test_layer_states(self):
        """The test nets' data cursors, named "<test net index>/<layer>": test scores after a
        resume are those of an uninterrupted run even when test passes do not cover the test set."""
        return [pb.LayerState(layer=f"{i}/{item.layer}", json=item.json)
                for i, net in enumerate(self.test_nets) for item in _net_layer_states(net)]

    def _snapshot_unless_written(self):
        """Snapshot on a request, unless this iteration's snapshot is already written (a request
        on a `snapshot` multiple, or after a test pass that snapshotted): one pair per iteration."""
        if self.last_snapshot is None or self.last_snapshot[1] != snapshot_paths(self.param.snapshot_prefix,
                                                                                 self.iter)[1]:
            self.snapshot()

    def snapshot(self):
        """Write <prefix>_iter_N.caffemodel and .solverstate atomically; returns both paths."""
        model_path, state_path = snapshot_paths(self.param.snapshot_prefix, self.iter)
        log.info("Snapshotting to binary proto file %s", model_path)
        save_net(self.net, model_path, write_diff=self.param.snapshot_diff)
        if self.param.snapshot_packed_hbnn:  # a deployable copy; resuming reads the float file
            save_packed_snapshot(self.net, model_path)
        state = pb.SolverState(iter=self.iter, learned_net=model_path, current_step=self.current_step,
                               solver_type=self.param.type)
        from .io.blobproto import blob_to_proto

        for slot in self.history:           # Caffe's order: every param's first history, then the second
            for array in slot:
                state.history.append(blob_to_proto(array))
        state.rng_state = json.dumps(dn_random.get_state())
        state.layer_state.extend(self._layer_states())
        state.test_layer_state.extend(self._test_layer_states())
        self.extend_state(state)
        log.info("Snapshotting solver state to binary proto file %s", state_path)
        write_state(state_path, state)
        self.last_snapshot = (model_path, state_path)
        return model_path, state_path

    def on_display(self):
        """Hook for subclasses: more lines after each display (dual roles log wire bytes)."""

    def extend_state(self, state):
        """Hook for subclasses (dual-net roles) to add to the SolverState."""

    def restore(self, path):
        """Continue from a snapshot (either file of the pair)."""
        state_path = resolve_snapshot_argument(path)
        state = read_state(state_path)
        if state.solver_type and state.solver_type != self.param.type:
            raise SolverError(f"{state_path}: was written by a {state.solver_type} solver; this solver is "
                              f"{self.param.type}. Resume with the same solver type.")
        expected = self.rule.histories * len(self.net.learnable_params)
        if len(state.history) != expected:
            raise SolverError(f"{state_path}: incorrect length of history blobs: the snapshot has "
                              f"{len(state.history)}, this net and solver need {expected}; "
                              "was it written for another net?")
        learned = locate_learned_net(state, state_path)
        if learned:
            self.net.copy_from(learned)
        from .io.blobproto import proto_array

        count = len(self.net.learnable_params)
        for k, proto in enumerate(state.history):
            slot, i = divmod(k, count)
            target = self.history[slot][i]
            values = proto_array(proto)
            if values.size != target.size:
                raise SolverError(f"{state_path}: history blob {k} has {values.size} values, expected {target.size}")
            target[...] = values.reshape(target.shape)
        self.iter = state.iter
        self.current_step = state.current_step
        if state.rng_state:
            dn_random.set_state(json.loads(state.rng_state))
        _set_net_layer_states(self.net, {item.layer: item.json for item in state.layer_state})
        for i, net in enumerate(self.test_nets):
            prefix = f"{i}/"
            _set_net_layer_states(net, {item.layer[len(prefix):]: item.json for item in state.test_layer_state
                                        if item.layer.startswith(prefix)})
        self.restore_extension(state)
        log.info("Restored to iteration %d", self.iter)

    def restore_extension(self, state):
        """Hook for subclasses (dual-net roles) to read their part of the SolverState."""


def _net_layer_states(net):
    """LayerState messages for the layers of `net` that have a state (data cursors)."""
    return [pb.LayerState(layer=name, json=json.dumps(layer.get_state()))
            for name, layer in zip(net._layer_names, net.layers) if hasattr(layer, "get_state")]


def _set_net_layer_states(net, states):
    """Give each layer of `net` named in `states` ({layer: json}) its saved state."""
    for name, layer in zip(net._layer_names, net.layers):
        if name in states and hasattr(layer, "set_state"):
            layer.set_state(json.loads(states[name]))


def get_solver(solver_file, **options):
    """The Solver for a solver.prototxt path (or a SolverParameter)."""
    if isinstance(solver_file, pb.SolverParameter):
        return Solver(solver_file, None, **options)
    param = read_solver_param(os.fspath(solver_file))
    return Solver(param, os.fspath(solver_file), **options)
