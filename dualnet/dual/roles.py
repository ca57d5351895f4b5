"""The two roles of a dual net, as solvers whose forward/backward crosses the link.

Both roles run Caffe's solver loop (dualnet.solver.Solver: tests, display,
updates, snapshots, signals) on their half; only `forward_backward` and
`test` differ:

net1 (holds the data)                      net2
  forward to the cut: a, labels, ids
  FORWARD{step, a, labels, ids}  ------->  z_0 = a + u; z-steps on l(f2(z), y)
                                           (one forward/backward gives grad_z
                                           and grad_theta2); update theta2
  t = a + delta                  <-------  TARGET{step, delta = z_K - z_0, loss}
  consistency loss w/2N ||a - t||^2,
  backward, update theta1

DUAL_LAYER: net2 trains on z = a and sends the output of its first layer L;
net1's loss compares that with its own copy L' of the layer.
Schedules: LOCKSTEP waits for each target; PIPELINED keeps up to
max_staleness batches in flight (net1 forwards batch t+s with weights of
step t while net2 works), using max_staleness+1 instances of net1 that share
weights, the data cursor and the blobs' diff arrays (one backward runs at a
time). k1/k2 alternation freezes one side's weights while the other trains. Test batches go through both halves (TEST /
TEST_RESULT); both roles log the test outputs in Caffe's format (net1 the
scalar ones net2 sends back). Messages are idempotent by step: a resent
FORWARD gets the cached TARGET, a stale TARGET is ignored. A peer that is
alive but sends nothing valid stops the role (see Wire).

Snapshots on request and stops are agreed so both halves save the same
iteration: net1 decides. On a request (its own signal, or a SNAPSHOT message
from net2 relaying net2's signal) net1 picks k = the first step it has not sent
yet; for a snapshot it sends SNAPSHOT{k} ahead of FORWARD k and both save when
they reach k; for a stop it sends nothing from k on, finishes the steps in
flight, saves at k and says BYE{k}, on which net2 saves at k too.
"""
import collections
import math
import time

import numpy as np

from .. import dualnet_pb2 as pb
from .. import random as dn_random
from ..errors import DualnetError, NumericalError, PeerError, ProtocolError
from ..io.solverstate import read_state, resolve_snapshot_argument
from ..log import get_logger
from ..memory import peak_rss_mb
from ..net import Net
from ..solver import Solver, fmt
from .admm import AdmmState
from .protocol import decode_cut, encode_cut, type_name
from .split import DUAL_LAYER
from .transport import LinkReset, PeerSilent

log = get_logger("dualnet.dual")
MSG = pb.WireHeader
LOCKSTEP, PIPELINED = pb.DualParameter.LOCKSTEP, pb.DualParameter.PIPELINED
PROGRESS_PEER_TIMEOUTS = 10        # progress_timeout 0: this many peer_timeouts
FAREWELL_SECONDS = 1.0


class Wire:
    """What a role sends and receives, in the agreed encoding.

    net1 keeps each FORWARD / TEST until it is answered, and sends them again
    after a LinkReset (the connection dropped and came back; what was in
    flight may be lost); net2 answers a repeated FORWARD from its cache.

    A live peer cannot hold a role forever (the ZeroMQ guide's Paranoid
    Pirate): a role that gets no valid message for `progress_timeout` seconds
    (0: PROGRESS_PEER_TIMEOUTS x peer_timeout), or none within peer_timeout of
    a message it rejected, sends ERROR saying what it waited for or what it
    rejected, so that the peer stops too, and raises PeerError (the launcher
    snapshots and exits 1 with the command to resume).
    """

    def __init__(self, split, encoding, role):
        self.split, self.encoding, self.role = split, encoding, role
        self.progress_timeout = 0.0                     # the role sets dual_param.progress_timeout
        self.accepts = ({MSG.TARGET, MSG.TEST_RESULT, MSG.SNAPSHOT} if role == "net1"
                        else {MSG.FORWARD, MSG.TEST, MSG.SNAPSHOT})
        self.unanswered = collections.OrderedDict()     # (phase, step) -> (kind, arrays)
        self.rejected = None                            # (what was rejected, the deadline it sets)

    def send_cut(self, link, kind, step, a, labels, ids, phase):
        arrays = dict(encode_cut(a, self.encoding))
        arrays["ids"] = np.ascontiguousarray(ids, dtype=np.int64)
        for name, value in labels.items():
            arrays[name] = np.ascontiguousarray(value, dtype=np.float32)
        self.unanswered[(phase, step)] = (kind, arrays)
        return link.send(kind, step, arrays=arrays, phase=phase)

    def decode_cut(self, message, phase):
        a = decode_cut(message.arrays, self.encoding, self.split.cut_shapes[phase])
        labels = {name: message.arrays[name] for name in self.split.label_blobs}
        return a, labels, message.arrays["ids"]

    def send(self, link, kind, step, arrays, values, phase=pb.TRAIN, reason=""):
        return link.send(kind, step, arrays=arrays, values=values, phase=phase, reason=reason)

    def receive(self, link, waiting_for, iteration):
        """The next valid message; `waiting_for` ("TARGET 12") and `iteration` word the stop."""
        limit = self.progress_timeout or PROGRESS_PEER_TIMEOUTS * link.peer_timeout
        deadline = time.monotonic() + limit
        while True:
            if self.rejected is not None:
                deadline = min(deadline, self.rejected[1])
            try:
                message = link.recv(self.accepts, timeout=max(0.0, deadline - time.monotonic()))
            except LinkReset as reset:
                log.warning("%s; sending the %d unanswered message(s) again", reset, len(self.unanswered))
                for (phase, step), (kind, arrays) in self.unanswered.items():
                    link.send(kind, step, arrays=arrays, phase=phase)
                deadline = time.monotonic() + limit
                continue
            except PeerSilent:
                if self.rejected is not None:
                    self.stop_peer(link, iteration, f"{self.role} rejected {self.rejected[0]}, and no valid message "
                                                    f"followed within {link.peer_timeout:g} s (peer_timeout)")
                self.stop_peer(link, iteration, f"{self.role} waited {limit:g} s for {waiting_for} from "
                                                f"{link.peer_name} and no valid message came, though the peer is "
                                                "alive (raise dual_param.progress_timeout if one iteration of "
                                                "the peer can take longer)")
            except ProtocolError as error:
                log.warning("Discarded a message: %s", error)
                if self.rejected is None:
                    self.rejected = (str(error), time.monotonic() + link.peer_timeout)
                continue
            self.unanswered.pop((message.phase, message.iter), None)
            return message

    def stop_peer(self, link, iteration, reason):
        """Tell the peer why this role stops (ERROR, never waiting long), then raise PeerError."""
        try:
            link.send(MSG.ERROR, iteration, reason=reason, timeout=FAREWELL_SECONDS)
        except DualnetError:
            pass                    # it is gone or not reading: the PeerError below says why we stop
        raise PeerError(reason)


def role_solver_param(param, net_param, role):
    """The role's SolverParameter: the same settings, its half as the net."""
    out = pb.SolverParameter()
    out.CopyFrom(param)
    for name in ("net", "train_net", "test_net", "net_param", "train_net_param", "test_net_param"):
        out.ClearField(name)
    out.net_param.CopyFrom(net_param)
    out.snapshot_prefix = f"{param.snapshot_prefix}_{role}"
    return out


class DualRole(Solver):
    role = None
    final_display = False

    def __init__(self, param, source, split, link, wire, **options):
        self.split, self.link, self.wire = split, link, wire
        self.dual = param.dual_param
        self._pending = collections.deque()
        self.peer_progress = 0
        self.start_iter = 0
        self._user_request = options.pop("action_request", None)
        options["action_request"] = self._requested
        self.pipeline_depth = self.dual.max_staleness if self.dual.schedule == PIPELINED else 0
        wire.progress_timeout = self.dual.progress_timeout
        super().__init__(role_solver_param(param, getattr(split, self.role), self.role), source, **options)
        self.train_bytes = [0, 0]           # sent, received by training steps (tests excluded)
        if not self.param.snapshot:
            log.warning("snapshot: 0 in %s: %s writes no periodic snapshots, so after a crash or kill -9 the "
                        "pair can only start again from where this run started (a stop on request or on a "
                        "peer's death still snapshots); set snapshot: N to resume from a multiple of N",
                        self.source, self.role)

    # ---- messages
    def _receive(self, kind, step, phase=pb.TRAIN):
        """The message of `kind` for `step`, keeping others that arrive early for later.

        At most pipeline_depth + 1 messages are kept: a PIPELINED net1 sends up
        to max_staleness FORWARDs ahead; more is a misbehaving peer, stopped.
        """
        for i, message in enumerate(self._pending):
            if message.type == kind and message.iter == step and message.phase == phase:
                del self._pending[i]
                self.wire.rejected = None
                return message
        waiting_for = f"{type_name(kind)} {step}" + (" (TEST phase)" if phase == pb.TEST else "")
        while True:
            message = self.wire.receive(self.link, waiting_for, self.iter)
            if message.phase == pb.TRAIN and message.type in (MSG.FORWARD, MSG.TARGET):
                # the peer has finished the iterations before this step (and their snapshots);
                # a PIPELINED net1 sends FORWARD up to max_staleness iterations ahead of that
                ahead = self.pipeline_depth if message.type == MSG.FORWARD else 0
                self.peer_progress = max(self.peer_progress, message.iter // self.param.iter_size - ahead)
            if message.type == kind and message.iter == step and message.phase == phase:
                self.wire.rejected = None
                return message
            if self._handle_out_of_order(message, step):
                continue
            self._pending.append(message)
            if len(self._pending) > self.pipeline_depth + 1:
                kept = ", ".join(f"{m.type_name} {m.iter}" for m in self._pending)
                self.wire.stop_peer(self.link, self.iter, f"{self.role} waits for {waiting_for}, but "
                                    f"{self.link.peer_name} sent {len(self._pending)} other messages first ({kept}); "
                                    f"at most {self.pipeline_depth + 1} may arrive early (max_staleness "
                                    f"{self.pipeline_depth})")

    def _handle_out_of_order(self, message, step):
        """True when a message was dealt with (e.g. a duplicate); False keeps it for later."""
        if message.type == MSG.SNAPSHOT:
            self._on_snapshot_message(message)
            return True
        return False

    def _requested(self):
        """The solver's action for this iteration (see the module docstring)."""
        raise NotImplementedError

    def _on_snapshot_message(self, message):
        raise NotImplementedError

    def forward_backward(self):
        sent, received = self.link.bytes_sent, self.link.bytes_received
        try:
            return self.exchange()
        finally:
            self.train_bytes[0] += self.link.bytes_sent - sent
            self.train_bytes[1] += self.link.bytes_received - received

    def _wire_totals(self):
        return tuple(self.train_bytes)

    def on_display(self):
        sent, received = self._wire_totals()
        done = max(1, self.iter + 1 - self.start_iter)
        log.info("    Wire: %s bytes sent, %s bytes received per iteration (mean over %d)",
                 fmt(sent / done), fmt(received / done), done)

    def apply_update(self):
        if self.trains_now():
            super().apply_update()
        else:
            self.iter += 1

    def trains_now(self):
        """k1/k2 alternation: net1 trains k1 iterations, then net2 trains k2."""
        k1, k2 = self.dual.k1, self.dual.k2
        if k1 <= 0 and k2 <= 0:
            return True
        net1_turn = self.iter % (k1 + k2) < k1
        return net1_turn if self.role == "net1" else not net1_turn

    def extend_state(self, state):
        dual = state.dual_state
        dual.role, dual.iter, dual.split_at = self.role, self.iter, self.split.cut

    def restore(self, path):
        # Checked before the generic restore, whose first complaint about another role's
        # snapshot would be a puzzling count of history blobs.
        state_path = resolve_snapshot_argument(path)
        self._check_snapshot(read_state(state_path), state_path)
        super().restore(state_path)

    def _check_snapshot(self, state, path):
        if not state.HasField("dual_state"):
            return
        dual = state.dual_state
        if dual.role and dual.role != self.role:
            raise DualnetError(f"{path}: the snapshot belongs to {dual.role}, not {self.role}; pass each role "
                               f"its own (<prefix>_{self.role}_iter_{state.iter}.solverstate)")
        if dual.split_at and dual.split_at != self.split.cut:
            raise DualnetError(f"{path}: the snapshot was cut at '{dual.split_at}', this run cuts at "
                               f"'{self.split.cut}'")

    def finish(self):
        log.info("Peak memory (RSS) of %s: %.1f MB", self.role, peak_rss_mb())

    def _stop_nonfinite(self, value, net=None, cause=None):
        """Solver's NaN/Inf stop, unless the first non-finite blob came from the peer (or, in net2,
        from the z-steps): then that is the cause, and the solver's advice (lower base_lr) is not."""
        net = net or self.net
        culprit = net.first_nonfinite()
        cause = cause or (self._peer_cause(culprit) if culprit else None)
        if cause is None:
            return super()._stop_nonfinite(value)
        kept = f"; the last snapshot is {self.last_snapshot[1]}" if self.last_snapshot else "; no snapshot was written"
        raise NumericalError(f"Iteration {self.iter}: {self.role}'s loss is {value}; {cause}{kept}")

    def _peer_cause(self, culprit):
        """Why a non-finite top (layer, blob) is not this role's doing, or None."""
        return None


class Net1Role(DualRole):
    role = "net1"

    def __init__(self, param, source, split, link, wire, **options):
        super().__init__(param, source, split, link, wire, **options)
        target_layer = f"{split.target_blob}_target"
        names = self.net._layer_names
        if target_layer not in names:
            raise DualnetError(f"net1 has no '{target_layer}' Input layer for net2's target")
        self.boundary = names.index(target_layer)
        self.target_name = target_layer
        self.staleness = self.dual.max_staleness if self.dual.schedule == PIPELINED else 0
        if self.staleness and param.iter_size > 1:
            raise DualnetError("PIPELINED schedules need iter_size: 1")
        self.instances = [self.net]
        for _ in range(self.staleness):
            twin = Net(self.net.param, state=self.net.state, origin=self.net.origin)
            twin.share_with(self.net)
            twin.share_data_cursors_with(self.net)
            self._share_blob_diffs(twin)
            self.instances.append(twin)
        self.in_flight = collections.deque()     # (step, instance, rng state, data states, a) in order
        self.next_step = None
        self._stop_step = None
        self._peer_request = None
        self._planned = None                     # (action, iteration) agreed with net2
        self._send_limit = None                  # no FORWARD at or after this step (a planned stop)

    def _share_blob_diffs(self, twin):
        """Only one instance runs backward at a time, and every backward writes a blob's diff
        before it reads it: the instances start with one set of diff arrays, which stays shared
        wherever a layer writes into the diff it has (Blob.output_diff)."""
        for name, blob in twin.blobs.items():
            blob.diff = self.net.blobs[name].diff

    def _on_snapshot_message(self, message):
        # net2 relays its own signal: treat it as ours
        self._peer_request = message.reason if message.reason in ("stop", "snapshot") else "snapshot"
        log.info("net2 asks for a %s", self._peer_request)

    def _requested(self):
        request = self._user_request() if self._user_request else None
        if self._peer_request:
            request = request or self._peer_request
            self._peer_request = None
        if request in ("stop", "snapshot") and self._planned is None:
            first_unsent = self.iter if self.next_step is None else max(self.iter, self.next_step)
            self._planned = (request, first_unsent)
            if request == "stop":
                self._send_limit = first_unsent
            else:
                self.wire.send(self.link, MSG.SNAPSHOT, first_unsent, {}, {}, pb.TRAIN, reason="snapshot")
            log.info("%s at iteration %d, agreed with net2", "Stopping" if request == "stop" else "Snapshot",
                     first_unsent)
        if self._planned is not None and self.iter >= self._planned[1]:
            action, _ = self._planned
            self._planned = None
            return action
        return None

    def _handle_out_of_order(self, message, step):
        if (message.type == MSG.TARGET and message.phase == pb.TRAIN
                and message.iter < self.iter * self.param.iter_size):
            log.info("Ignoring a stale TARGET %d (now at iteration %d)", message.iter, self.iter)
            return True
        return super()._handle_out_of_order(message, step)

    def _data_layers(self, net):
        return [layer for layer in net.layers if hasattr(layer, "last_indices")]

    def _send_forward(self, net, step, kind=MSG.FORWARD, phase=pb.TRAIN, end=None):
        net.forward_layers(0, (self.boundary - 1) if end is None else end)
        a = net.blobs[self.split.cut].data
        ids = self._data_layers(net)[0].last_indices if self._data_layers(net) else np.arange(a.shape[0])
        labels = {name: net.blobs[name].data for name in self.split.label_blobs}
        self.wire.send_cut(self.link, kind, step, a, labels, ids, phase)
        return a

    def _finish(self, net, step, a):
        self._take_target(net, step, a)
        loss = net.forward_layers(self.boundary, len(net.layers) - 1)
        net.backward_layers()
        return loss

    def _take_target(self, net, step, a):
        """Wait for TARGET `step` and put it in the target blob (ADMM: t = a + delta), in the
        blob's own array, so that the message's frames are freed before the backward pass."""
        message = self._receive(MSG.TARGET, step)
        target = net.blobs[self.target_name]
        if self.split.mode == DUAL_LAYER:
            np.copyto(target.output_data(), message.arrays["target"].reshape(target.shape))
        else:
            np.add(a, message.arrays["delta"].reshape(a.shape), out=target.output_data(a))
        self.peer_loss = message.values.get("loss")

    def step(self, iterations):
        self._stop_step = self.iter + iterations
        self.next_step = self.iter
        try:
            super().step(iterations)
        finally:
            self._stop_step = None

    def _draw(self, net, step):
        """Forward batch `step` to the cut and send it, noting the generator and the data cursors
        from before it was drawn: a snapshot taken while it is unanswered (the peer stopped or died
        mid-iteration) draws it again on resume."""
        states = {name: layer.get_state() for name, layer in net.layer_dict.items() if hasattr(layer, "get_state")}
        rng_state = dn_random.get_state()
        a = self._send_forward(net, step)
        self.in_flight.append((step, net, rng_state, states, a))
        return a

    def exchange(self):
        if not self.staleness:
            self.net.clear_param_diffs()
            total = 0.0
            size = self.param.iter_size
            for k in range(size):
                step = self.iter * size + k
                a = self._draw(self.net, step)
                total += self._checked(self._finish(self.net, step, a), self.net)
            self.in_flight.clear()          # kept until the whole iteration is done: its resume point
            return total / size
        # PIPELINED: keep batches iter .. iter+staleness in flight
        if self.next_step is None or self.next_step < self.iter:
            self.next_step = self.iter
        limit = self._stop_step if self._stop_step is not None else self.param.max_iter
        if self._send_limit is not None:
            limit = min(limit, self._send_limit)
        while self.next_step <= min(self.iter + self.staleness, limit - 1):
            self._draw(self.instances[self.next_step % len(self.instances)], self.next_step)
            self.next_step += 1
        step, net, _rng, _states, a = self.in_flight[0]
        if step != self.iter:
            raise DualnetError(f"net1 pipeline out of order: batch {step} at iteration {self.iter}")
        self.net.clear_param_diffs()
        loss = self._checked(self._finish(net, step, a), net)
        self.in_flight.popleft()            # answered: no longer this iteration's resume point
        return loss

    def _checked(self, loss, net):
        if not math.isfinite(loss):
            self._stop_nonfinite(loss, net)
        return loss

    def _peer_cause(self, culprit):
        if culprit[0] == self.target_name:
            return (f"the target net2 sent back ('{culprit[1]}') is not finite: see net2's log (its loss or "
                    "its z-steps diverged there)")
        return None

    def test(self, index=0):
        log.info("Iteration %d, Testing net (#%d)", self.iter, index)
        net = self.test_nets[index]
        batches = self.param.test_iter[index]
        totals = {}
        for i in range(batches):
            self._send_forward(net, i, MSG.TEST, pb.TEST, end=len(net.layers) - 1)
            message = self._receive(MSG.TEST_RESULT, i, pb.TEST)
            for name, value in message.values.items():
                totals[name] = totals.get(name, 0.0) + value
        means = {name: value / batches for name, value in totals.items()}
        # net2's scalar outputs, in its order, as Caffe logs them (parse_log.py reads these lines)
        for k, (name, value) in enumerate(means.items()):
            log.info("    Test net output #%d: %s = %s", k, name, fmt(value))
        return means

    def _layer_states(self):
        states = super()._layer_states()
        if self.in_flight:
            # batches drawn for iterations not yet taken are drawn again after a resume
            _step, _net, _rng, recorded, _a = self.in_flight[0]
            import json

            states = [pb.LayerState(layer=name, json=json.dumps(value)) for name, value in recorded.items()]
        return states

    def snapshot(self):
        if self.in_flight:
            current = dn_random.get_state()
            dn_random.set_state(self.in_flight[0][2])
            try:
                return super().snapshot()
            finally:
                dn_random.set_state(current)
        return super().snapshot()


class Net2Role(DualRole):
    role = "net2"

    def __init__(self, param, source, split, link, wire, **options):
        super().__init__(param, source, split, link, wire, **options)
        cut_shape = split.cut_shapes[pb.TRAIN]
        self.admm = AdmmState(self.dual, cut_shape[0], cut_shape[1:])
        self.sent = collections.OrderedDict()     # step -> (arrays, values): the TARGET cache
        # net1 sends a FORWARD again only while it is unanswered: at most the batches in flight
        self.cache_size = 1 + (self.dual.max_staleness if self.dual.schedule == PIPELINED else 0)
        names = self.net._layer_names
        self.first_index = None
        if split.mode == DUAL_LAYER:
            self.first_index = names.index(split.first_layers[0])
        self._snapshot_at = None

    def _requested(self):
        request = self._user_request() if self._user_request else None
        if request in ("stop", "snapshot"):
            log.info("Asking net1 for a %s (net1 picks the iteration)", request)
            self.wire.send(self.link, MSG.SNAPSHOT, self.iter, {}, {}, pb.TRAIN, reason=request)
        return None

    def _on_snapshot_message(self, message):
        if message.iter == self.iter:
            self.snapshot()
        elif message.iter > self.iter:
            self._snapshot_at = message.iter
        else:
            log.warning("net1 asked for a snapshot at iteration %d, already past (now %d)", message.iter, self.iter)

    def _snapshot_if_agreed(self):
        if self._snapshot_at is not None and self._snapshot_at == self.iter:
            self._snapshot_at = None
            self.snapshot()

    def _handle_out_of_order(self, message, step):
        if message.type == MSG.FORWARD and message.phase == pb.TRAIN and message.iter in self.sent:
            arrays, values = self.sent[message.iter]
            log.info("net1 resent FORWARD %d: answering with the cached TARGET", message.iter)
            self.wire.send(self.link, MSG.TARGET, message.iter, arrays, values)
            return True
        if (message.type == MSG.FORWARD and message.phase == pb.TRAIN
                and message.iter < self.iter * self.param.iter_size):
            log.info("Ignoring a stale FORWARD %d (now at iteration %d)", message.iter, self.iter)
            return True
        return super()._handle_out_of_order(message, step)      # SNAPSHOT from net1

    def _set_inputs(self, net, a, labels):
        net.blobs[self.split.cut].data = a
        for name, value in labels.items():
            net.blobs[name].data = value.reshape(net.blobs[name].shape)

    def exchange(self):
        self._snapshot_if_agreed()
        size = self.param.iter_size
        self.net.clear_param_diffs()
        total = 0.0
        for k in range(size):
            step = self.iter * size + k
            message = self._receive(MSG.FORWARD, step)
            a, labels, ids = self.wire.decode_cut(message, pb.TRAIN)
            loss, arrays = self._train_on(a, labels, ids)
            values = {"loss": loss}
            self.wire.send(self.link, MSG.TARGET, step, arrays, values)
            self.sent[step] = (arrays, values)
            while len(self.sent) > self.cache_size:
                self.sent.popitem(last=False)
            total += loss
        self.admm.advance(self.iter + 1)
        return total / size

    def _train_on(self, a, labels, ids):
        net, cut = self.net, self.split.cut
        if self.split.mode == DUAL_LAYER:
            self._set_inputs(net, a, labels)
            net.forward_layers(0, self.first_index)
            target = net.blobs[self.split.target_blob].data.copy()
            loss = net.forward_layers(self.first_index + 1, len(net.layers) - 1)
            self._check(loss)
            net.backward_layers()
            return loss, {"target": target}
        z0, u = self.admm.start(a, ids)
        z = z0
        steps = max(1, self.dual.z_steps)
        saved = [b.diff.copy() for b in net.learnable_params] if steps > 1 else None
        for k in range(steps):
            if saved is not None:
                for blob, diff in zip(net.learnable_params, saved):
                    blob.diff[...] = diff           # only the last z-step's theta2 gradient counts
            y = z if k == 0 else self.admm.proximal(z, a, u)    # y_0 = z_0 = a + u
            self._set_inputs(net, y, labels)
            loss = net.forward_layers()
            self._check(loss, k)
            net.backward_layers()
            z = self.admm.gradient_step(y, net.blobs[cut].diff)
        if not np.isfinite(z).all():
            self._stop_nonfinite(loss, cause=self._z_cause(steps))
        self.admm.finish(a, z, ids)
        delta = np.subtract(z, z0, out=z)          # z is not needed any more: no new array
        return loss, {"delta": delta.astype(np.float32, copy=False)}

    def _check(self, loss, z_step=0):
        if math.isfinite(loss):
            return
        culprit = self.net.first_nonfinite()
        diverged = culprit is not None and culprit[1] == self.split.cut and z_step > 0
        self._stop_nonfinite(loss, cause=self._z_cause(z_step) if diverged else None)

    def _z_cause(self, steps):
        return (f"the z-update is not finite after {steps} z-step(s) (z_step_size {self.admm.eta:g}, "
                f"rho {self.admm.rho:g}): lower z_step_size or z_steps")

    def _peer_cause(self, culprit):
        if culprit[1] == self.split.cut or culprit[1] in self.split.label_blobs:
            return f"the '{culprit[1]}' net1 sent is not finite: see net1's log"
        return None

    def test(self, index=0):
        log.info("Iteration %d, Testing net (#%d)", self.iter, index)
        net = self.test_nets[index]
        batches = self.param.test_iter[index]
        totals, loss = {}, 0.0
        for i in range(batches):
            message = self._receive(MSG.TEST, i, pb.TEST)
            a, labels, _ids = self.wire.decode_cut(message, pb.TEST)
            self._set_inputs(net, a, labels)
            outputs = net.forward()
            loss += net.loss
            values = {}
            for name in net.outputs:
                value = np.asarray(outputs[name], dtype=np.float64)
                totals[name] = totals.get(name, 0.0) + value
                if value.size == 1:
                    values[name] = float(value)
            self.wire.send(self.link, MSG.TEST_RESULT, i, {}, values, pb.TEST)
        if self.param.test_compute_loss:
            log.info("Test loss: %s", fmt(loss / batches))
        means = {name: totals[name] / batches for name in net.outputs}
        self._log_outputs(net, "Test", means)
        return {name: float(np.asarray(v).ravel()[0]) for name, v in means.items()}

    def extend_state(self, state):
        super().extend_state(state)
        self.admm.to_proto(state.dual_state)

    def restore_extension(self, state):
        if state.HasField("dual_state"):
            self.admm.from_proto(state.dual_state)
