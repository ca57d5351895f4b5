"""The link between net1 and net2 over ZeroMQ: one `Link` at each end.

    link = Link.bind("tcp://0.0.0.0:5555", role="net2", keys="keys/")    # net2 is "there"
    link = Link.connect("tcp://net2host:5555", role="net1", keys="keys/")
    peer_hello = link.handshake(my_hello)          # PeerError listing every difference
    link.send(FORWARD, 12, arrays={...})           # -> bytes sent (header + signature + arrays)
    message = link.recv({TARGET}, iterations=12)   # a checked protocol.Message
    link.send(BYE, 100, reason="max_iter reached"); link.close()

Options: peer_timeout (s), heartbeat_interval (s), max_message_bytes (the
largest frame accepted, ZMQ_MAXMSGSIZE; pass protocol.frame_limit(hello)),
keys (a `dualnet keys` folder), insecure, linger (s). `link.expectations`
(protocol.Expectations) is set from the agreed Hello by the handshake; the
roles may replace it. bytes_sent / bytes_received count header, signature and
array frames.

State machine (the ZeroMQ guide's style):

    HANDSHAKE --HELLO / WELCOME--> PAIRED --close()--> CLOSED
        | REFUSE, ERROR: PeerError     | peer's connection dropped: DOWN
        | silence: PeerError           |   back within `grace`: PAIRED, LinkReset once
                                       |   not back within `grace`: PeerError (it died)
                                       | BYE / ERROR received: PeerStopped

net2 binds a ROUTER, net1 connects a DEALER with a random routing id. After
the handshake the ROUTER takes messages from that routing id only: any other
client gets an ERROR reply and a warning in the log.

Liveness is ZeroMQ's own heartbeat (ZMTP PING/PONG, ZMQ_HEARTBEAT_IVL and
_TIMEOUT), sent and answered by libzmq's I/O thread, in C and without the GIL:
a role busy in a long NumPy call, in Python code or even in a C call that holds
the GIL still answers, so it is never taken for dead, and there is no Python
heartbeat thread and no second port. libzmq closes a connection that has been
silent for the heartbeat timeout; a process that exits or is killed closes its
connection at once. The link reads its socket's monitor events whenever it
waits; when the peer's connection has been down for `grace`, it raises
PeerError. Budget: heartbeat interval + heartbeat timeout + grace = peer_timeout,
with grace = peer_timeout / 2. A single frame must cross the network within the
heartbeat timeout (libzmq counts only whole messages as traffic).

A connection that drops and comes back raises LinkReset (a ProtocolError) once
on each side, from recv: ZeroMQ drops the connection of a peer that sends a
frame over ZMQ_MAXMSGSIZE, and what was in flight on it is lost, so the roles
resend what is not answered yet (requests are idempotent by iteration). net1's
DEALER reconnects by itself and sees it in its monitor; net2 probes with a
HEARTBEAT message, which its ROUTER (ZMQ_ROUTER_MANDATORY) can route only once
net1's routing id is connected again; net1 drops heartbeats on receipt.

A Link belongs to one thread (ZeroMQ sockets are not thread-safe). Waits poll
in slices of SLICE seconds against a deadline (Ctrl-C is seen); sends never
block (NOBLOCK, retried in short steps for at most peer_timeout); LINGER is
bounded; a received message is checked by protocol.Session before any array is
made from it.

Security: with `keys`, CurveZMQ: the frames are encrypted and authenticated,
and net2 accepts only client keys in keys/authorized_clients (ZAP, through
pyzmq's ThreadAuthenticator); a rejected key is logged by net2, which keeps
waiting, and reported to net1 at once. Without keys the link runs only on
loopback (127.0.0.0/8, ::1, localhost, ipc://, inproc://) unless `insecure`.
The session key travels in WELCOME: on an encrypted link the signatures
authenticate the peer; on plain TCP they only keep out processes from other
runs and corrupted frames.
"""
import inspect
import ipaddress
import secrets
import time

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from .. import __version__
from .. import dualnet_pb2 as pb
from ..errors import DualnetError, PeerError, ProtocolError
from ..log import get_logger
from . import keys as keyfiles
from .protocol import (BYE, ERROR, HEARTBEAT, HELLO, PROTOCOL_VERSION, REFUSE, SESSION_KEY_BYTES, WELCOME,
                       Expectations, Session, compare_hellos, describe_differences, type_name)

log = get_logger("dualnet.dual")

SLICE = 0.1                      # s: longest single poll
RECONNECT_IVL_MS = 100
DEFAULT_MAX_MESSAGE_BYTES = 256 << 20
ZAP_DOMAIN = "dualnet"
MAX_TTL_MS = 6553500             # ZMQ_HEARTBEAT_TTL is in deciseconds, 16 bits
_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED
           | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
           | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class LinkReset(ProtocolError):
    """The peer's connection dropped and came back: messages in flight may be lost."""


class PeerSilent(PeerError):
    """recv's `timeout` passed: the peer is alive (its heartbeats continue) but sent nothing wanted."""


class PeerStopped(PeerError):
    """The peer sent BYE (clean) or ERROR: it stops at `iteration`, for `reason`."""

    def __init__(self, peer, msg_type, iteration, reason):
        self.peer, self.iteration, self.reason = peer, iteration, reason
        self.clean = msg_type == BYE
        how = "stopped" if self.clean else "stopped on an error"
        super().__init__(f"{peer} {how} at iteration {iteration}: {reason or 'no reason given'}")


def is_loopback(address):
    """True for ipc://, inproc:// and tcp:// to 127.0.0.0/8, ::1 or localhost."""
    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].split(";")[-1].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler, noting each request's address so that a refusal names it."""

    address = "?"

    def _note_address(self, msg):
        if len(msg) > 3:
            self.address = msg[3].decode("utf-8", "replace")

    if inspect.iscoroutinefunction(ThreadAuthenticator.handle_zap_message):   # pyzmq >= 25
        async def handle_zap_message(self, msg):
            self._note_address(msg)
            await super().handle_zap_message(msg)
    else:
        def handle_zap_message(self, msg):
            self._note_address(msg)
            super().handle_zap_message(msg)


class _AllowList:
    """ZAP credentials provider: the client keys in an authorized_clients folder."""

    def __init__(self, folder, authenticator):
        self.folder, self.authenticator = folder, authenticator
        self.keys = keyfiles.authorized_client_keys(folder)

    def callback(self, domain, key):
        if key in self.keys:
            return True
        log.warning("Refused a connection from %s: its CURVE key %s is not in %s (still waiting for a net1 "
                    "with an authorized key)", self.authenticator.address, key.decode(), self.folder)
        return False


class Link:
    """One end of the net1-net2 connection (see the module docstring)."""

    @classmethod
    def bind(cls, address, role="net2", **options):
        """The end that is "there": binds `address` (tcp://HOST:PORT, PORT may be *)."""
        return cls(address, role, server=True, **options)

    @classmethod
    def connect(cls, address, role="net1", **options):
        """The end that comes to the peer at `address`."""
        return cls(address, role, server=False, **options)

    def __init__(self, address, role, server, peer_timeout=30.0, heartbeat_interval=1.0,
                 max_message_bytes=None, keys=None, insecure=False, linger=1.0):
        self.role, self.server, self.address = role, server, address
        self.session = Session(role)
        self.peer_role = self.session.peer_role
        self.peer_timeout, self.heartbeat_interval = float(peer_timeout), float(heartbeat_interval)
        if self.peer_timeout <= 0 or not 0 < self.heartbeat_interval <= self.peer_timeout / 4:
            raise DualnetError(f"heartbeat_interval ({heartbeat_interval} s) must be positive and at most a "
                               f"quarter of peer_timeout ({peer_timeout} s)")
        self.grace = self.peer_timeout / 2
        self.heartbeat_timeout = max(self.peer_timeout / 2 - self.heartbeat_interval, self.heartbeat_interval)
        self.max_message_bytes = int(max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES)
        self.keys, self.insecure = keys, insecure
        self.bytes_sent = self.bytes_received = 0
        self.state = "handshake"
        self.peer_name = f"{self.peer_role} at {address}"
        self.last_message = None          # (type, iteration, monotonic time) of the last message accepted
        self._stopped = None              # the PeerStopped raised, re-raised by later recv
        self._peer_id = None              # net2: net1's routing id
        self._peer_fds = set()            # net2: net1's connection (candidates after a reconnection)
        self._new_fds = set()             # net2: connections accepted while net1's was down
        self._closed_fds = set()          # net2: closed connections (their last messages may still come)
        self._up = False                  # net1: connection to net2 established
        self._down_since = None           # monotonic time the paired peer's connection dropped
        self._reset_pending = False
        self._refused_key = self._handshake_failed = self._retried = None
        self._auth = None
        self._context = zmq.Context()
        try:
            self._socket, self._monitor = self._open(address, linger)
        except BaseException:
            if self._auth is not None:
                self._auth.stop()
            self._context.destroy(linger=0)
            raise
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)

    # ------------------------------------------------------------------ setup

    def _security(self, address):
        if self.keys:
            return "curve"
        if is_loopback(address):
            return "plain"
        if self.insecure:
            log.warning("%s: the link to %s runs UNENCRYPTED (--insecure): anyone on the network can read "
                        "and alter it", self.role, address)
            return "plain"
        raise PeerError(f"{address} is not a loopback address, and without keys the link would be "
                        "unencrypted: run `dualnet keys --out DIR`, copy DIR to both hosts and pass --keys DIR "
                        "to both roles (or pass --insecure on a network you trust)")

    def _open(self, address, linger):
        self.security = security = self._security(address)
        sock = self._context.socket(zmq.ROUTER if self.server else zmq.DEALER)
        sock.linger = int(linger * 1000)
        sock.maxmsgsize = self.max_message_bytes
        sock.heartbeat_ivl = int(self.heartbeat_interval * 1000)
        sock.heartbeat_timeout = int(self.heartbeat_timeout * 1000)
        # The peer drops us after this long without traffic from us; our pings come every interval,
        # so keep it at two intervals at least, or one late ping would cut a healthy link.
        sock.heartbeat_ttl = min(int(max(self.heartbeat_timeout, 2 * self.heartbeat_interval) * 1000), MAX_TTL_MS)
        if self.server:
            sock.router_mandatory = 1    # sending to a vanished net1 fails instead of vanishing
            sock.router_handover = 1     # net1's reconnection takes over its routing id
        else:
            sock.routing_id = f"net1-{secrets.token_hex(8)}".encode()
            sock.reconnect_ivl = RECONNECT_IVL_MS
        if security == "curve":
            if self.server:
                public, secret, authorized = keyfiles.server_keys(self.keys)
                self._auth = _Authenticator(self._context, log=get_logger("dualnet.dual.zap"))
                self._auth.start()
                self._auth.configure_curve_callback(ZAP_DOMAIN, _AllowList(authorized, self._auth))
                sock.zap_domain = ZAP_DOMAIN.encode()
                sock.curve_server = True
            else:
                public, secret, server_public = keyfiles.client_keys(self.keys)
                sock.curve_serverkey = server_public
            sock.curve_publickey, sock.curve_secretkey = public, secret
        monitor = sock.get_monitor_socket(_EVENTS)
        try:
            if self.server:
                sock.bind(address)
                self.address = sock.last_endpoint.decode()
            else:
                sock.connect(address)
        except zmq.ZMQError as error:
            verb = "bind" if self.server else "connect to"
            hint = " (is another net2 running? choose another port)" if error.errno == zmq.EADDRINUSE else ""
            raise PeerError(f"{self.role} cannot {verb} {address}: {error.strerror}{hint}") from None
        return sock, monitor

    @property
    def expectations(self):
        return self.session.expectations

    @expectations.setter
    def expectations(self, value):
        self.session.expectations = value

    # ------------------------------------------------------------------ handshake

    def handshake(self, hello, timeout=None, expectations=None):
        """Agree on `hello` with the peer; returns the peer's Hello.

        net1 sends HELLO and waits for WELCOME; net2 waits for a HELLO, compares
        every field (protocol.compare_hellos) and answers WELCOME with a fresh
        session key, or REFUSE, and then both sides raise PeerError listing the
        differences. Waits at most `timeout` (default peer_timeout).
        """
        if self.state != "handshake":
            raise PeerError(f"{self.role}: the handshake is already done")
        mine = pb.Hello()
        mine.CopyFrom(hello)
        mine.role = self.role
        if not mine.HasField("protocol_version"):
            mine.protocol_version = PROTOCOL_VERSION
        if not mine.HasField("dualnet_version"):
            mine.dualnet_version = __version__
        agreed = expectations or Expectations.from_hello(mine)
        largest = agreed.max_frame_bytes()
        if largest > self.max_message_bytes:
            raise PeerError(f"max_message_bytes ({self.max_message_bytes}) is smaller than the largest agreed "
                            f"frame ({largest} bytes): raise it (0 in dual_param derives it from the shapes)")
        timeout = self.peer_timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        if self.server:
            theirs = self._accept_hello(mine, deadline, timeout)
        else:
            theirs = self._propose_hello(mine, deadline, timeout)
        self.session.expectations = agreed
        self.state = "paired"
        log.info("%s paired with %s (%s link)", self.role, self.peer_name,
                 "CurveZMQ" if self.security == "curve" else "unencrypted")
        return theirs

    def _propose_hello(self, mine, deadline, timeout):
        frames = self.session.serialize(HELLO, mine.resume_iter, hello=mine)
        self.bytes_sent += self._send_frames(frames, deadline, HELLO)
        while True:
            frames = self._wait_frames(deadline)
            if frames is None:
                raise PeerError(self._no_answer(timeout))
            try:
                message = self.session.deserialize(frames, {WELCOME, REFUSE, ERROR}, peer=self.peer_name)
            except ProtocolError as error:
                log.warning("%s", error)
                continue
            self.bytes_received += message.nbytes
            if message.type == ERROR:
                raise PeerError(f"{self.peer_name} turned {self.role} away: {message.reason}")
            differences = compare_hellos(mine, message.hello)
            if differences:
                raise PeerError(describe_differences(differences))
            if message.type == REFUSE:
                raise PeerError(f"{self.peer_name} refused the handshake: {message.reason}")
            self.session.key = message.session_key
            self._note(message)
            return message.hello

    def _no_answer(self, timeout):
        if self._handshake_failed:
            why = (f"the CurveZMQ handshake failed ({self._handshake_failed}): does server.key in "
                   f"{self.keys} match the server.key_secret net2 uses?")
        elif self._up:
            why = "it accepted the connection but did not answer HELLO (is it another program, or busy?)"
        elif self._retried:
            why = "nothing is listening there (connection refused): is net2 running, bound to that address?"
        else:
            why = "no connection (is the address right, and does a firewall let the port through?)"
        return f"no answer from {self.peer_name} within {timeout:.1f} s: {why}"

    def _accept_hello(self, mine, deadline, timeout):
        while True:
            received = self._wait_frames(deadline)
            if received is None:
                raise PeerError(f"no net1 came to {self.role} at {self.address} within {timeout:.1f} s: "
                                "start net1 with --connect pointing at this host and port")
            peer_id, frames = received[0].bytes, received[1:]
            peer = self._client_name(frames)
            probe = Session(self.role)   # a fresh one: strangers must not move the sequence counter
            try:
                message = probe.deserialize(frames, {HELLO}, peer=peer)
            except ProtocolError as error:
                log.warning("%s", error)
                self._reply_stranger(peer_id, str(error))
                continue
            self.bytes_received += message.nbytes
            differences = compare_hellos(message.hello, mine)
            if differences:
                text = describe_differences(differences)
                self._reply(peer_id, REFUSE, message.iter, hello=mine, reason=text)
                raise PeerError(text)
            key = secrets.token_bytes(SESSION_KEY_BYTES)
            self._reply(peer_id, WELCOME, message.iter, hello=mine, session_key=key)
            self.session.key, self.session.peer_sequence = key, message.sequence
            if self.security == "curve":
                self.session.peer_user_id = frames[0].get("User-Id")
            self._peer_id, self.peer_name = peer_id, peer
            self._peer_fds = {frames[0].get(zmq.SRCFD)}
            self._note(message)
            return message.hello

    def _client_name(self, frames):
        try:
            return f"net1 at {frames[0].get('Peer-Address')}"
        except (zmq.ZMQError, IndexError):
            return "net1"

    def _reply(self, peer_id, msg_type, iteration, **fields):
        frames = self.session.serialize(msg_type, iteration, **fields)
        self.bytes_sent += self._send_frames(frames, time.monotonic() + self.peer_timeout, msg_type,
                                             peer_id=peer_id)

    def _reply_stranger(self, peer_id, reason):
        """An unsigned ERROR to a client that is not (or not yet) our peer; never waits."""
        frames = Session(self.role).serialize(ERROR, 0, reason=reason)
        try:
            self._socket.send_multipart([peer_id] + frames, flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    # ------------------------------------------------------------------ sending and receiving

    def send(self, msg_type, iteration, arrays=None, values=None, phase=None, reason="", timeout=None):
        """Send one message (arrays zero-copy: do not write into them until the peer has answered);
        returns the bytes sent (header + signature + arrays). `timeout` (s, default peer_timeout)
        bounds the wait for a full queue or a reconnecting peer; a farewell uses a short one."""
        self._require_paired()
        self._service(report_reset=False)
        frames = self.session.serialize(msg_type, iteration, arrays=arrays, values=values, phase=phase,
                                        reason=reason)
        limit = self.peer_timeout if timeout is None else timeout
        sent = self._send_frames(frames, time.monotonic() + limit, msg_type)
        self.bytes_sent += sent
        return sent

    def recv(self, types, timeout=None, iterations=None):
        """The next checked message of one of `types` (a type or a set of types).

        BYE and ERROR from the peer raise PeerStopped; a message that fails a
        check is dropped and raises ProtocolError (the link stays usable); a
        dropped-and-restored connection raises LinkReset once; a peer gone for
        `grace` raises PeerError. `timeout` (s) bounds the wait for a live but
        silent peer (PeerSilent; None: as long as it is alive); `iterations` is the
        window of protocol.Session.deserialize.
        """
        self._require_paired()
        if self._stopped is not None:
            raise self._stopped
        wanted = {types} if isinstance(types, int) else set(types)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            received = self._read()
            if received is not None:
                message = self._check(received, wanted | {HEARTBEAT}, iterations)
                if message is not None:
                    return self._deliver(message)
                continue
            self._service()
            if deadline is not None and time.monotonic() >= deadline:
                names = ", ".join(sorted(type_name(t) for t in wanted))
                raise PeerSilent(f"no {names} from {self.peer_name} within {timeout:.1f} s (it is alive: its "
                                 f"heartbeats continue); {self._last_text()}")
            self._poller.poll(self._slice_ms(deadline))

    def _deliver(self, message):
        if message.type in (BYE, ERROR):
            self._stopped = PeerStopped(self.peer_name, message.type, message.iter, message.reason)
            raise self._stopped
        return message

    def _read(self):
        """The frames of one waiting message (net2: routing id first), or None."""
        try:
            frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        return frames

    def _check(self, received, allowed, iterations):
        """A checked message from the peer, or None for a heartbeat or a stranger's message."""
        if self.server:
            peer_id, frames = received[0].bytes, received[1:]
            if peer_id != self._peer_id:
                stranger = self._client_name(frames)
                log.warning("%s ignored a message from %s: it is paired with %s", self.role, stranger,
                            self.peer_name)
                self._reply_stranger(peer_id, f"{self.role} at {self.address} is already paired with "
                                              f"{self.peer_name}; is another net1 running?")
                return None
        else:
            frames = received
        user_id = frames[0].get("User-Id") if frames and self.security == "curve" and self.server else None
        message = self.session.deserialize(frames, allowed, iterations=iterations, user_id=user_id,
                                           peer=self.peer_name)
        self.bytes_received += message.nbytes
        if message.type == HEARTBEAT:
            return None
        self._note(message)
        if self.server:
            fd = frames[0].get(zmq.SRCFD)
            if fd not in self._closed_fds:
                self._peer_fds, self._down_since = {fd}, None
        return message

    def _note(self, message):
        self.last_message = (message.type, message.iter, time.monotonic())

    def _send_frames(self, frames, deadline, msg_type, peer_id=None):
        """Send without ever blocking: retry while the queue is full or net1 is reconnecting."""
        parts = frames if not self.server else [peer_id or self._peer_id] + frames
        while True:
            try:
                self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                return sum(memoryview(f).nbytes for f in frames)
            except zmq.Again:
                why = "its queue is full (it is not reading)"
            except zmq.ZMQError as error:
                if error.errno != zmq.EHOSTUNREACH:
                    raise PeerError(f"{self.role} cannot send {type_name(msg_type)} to {self.peer_name}: "
                                    f"{error.strerror}") from None
                why = "it is not connected"
            if time.monotonic() >= deadline:
                raise PeerError(f"{self.role} could not send {type_name(msg_type)} to {self.peer_name}: {why}")
            self._drain_monitor()
            if self.state == "paired":
                self._check_alive()
            time.sleep(min(SLICE / 10, max(0.0, deadline - time.monotonic())))

    def _wait_frames(self, deadline):
        """Handshake: the next message's frames, or None at the deadline."""
        while True:
            received = self._read()
            if received is not None:
                return received
            self._drain_monitor()
            if self._refused_key:
                raise PeerError(self._refused_key)
            if time.monotonic() >= deadline:
                return None
            self._poller.poll(self._slice_ms(deadline))

    @staticmethod
    def _slice_ms(deadline):
        wait = SLICE if deadline is None else min(SLICE, max(0.0, deadline - time.monotonic()))
        return max(1, int(wait * 1000))

    # ------------------------------------------------------------------ liveness

    def _service(self, report_reset=True):
        """Read monitor events, probe for net1's return, raise PeerError (gone) or LinkReset (back)."""
        self._drain_monitor()
        if self.server and self._down_since is not None and self._new_fds:
            self._probe()
        self._check_alive()
        if report_reset and self._reset_pending and self._down_since is None:
            self._reset_pending = False
            raise LinkReset(self._reset_text())

    def _probe(self):
        """net2, after a new connection: a HEARTBEAT to net1, which the ROUTER routes only if net1's
        routing id is connected (probing only then: a dead net1's route may linger a moment)."""
        frames = self.session.serialize(HEARTBEAT, self.last_message[1] if self.last_message else 0)
        try:
            self._socket.send_multipart([self._peer_id] + frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass                       # its queue is full, so it is connected
        except zmq.ZMQError:
            return                     # EHOSTUNREACH: not (yet) back
        else:
            self.bytes_sent += sum(len(f) for f in frames)
        # net1 is one of the new connections; its next message says which.
        self._down_since, self._peer_fds, self._new_fds = None, self._new_fds, set()
        log.warning("%s: %s is connected again", self.role, self.peer_name)

    def _check_alive(self):
        if self._down_since is not None and time.monotonic() - self._down_since > self.grace:
            down = time.monotonic() - self._down_since
            raise PeerError(f"{self.peer_name} has been unreachable for {down:.1f} s (its connection closed "
                            f"and was not re-established; peer_timeout {self.peer_timeout:g} s); "
                            f"{self._last_text()}; it may have died")

    def _reset_text(self):
        return (f"the connection between {self.role} and {self.peer_name} was dropped and re-established "
                f"(by ZeroMQ after a frame over max_message_bytes={self.max_message_bytes}, or a network "
                f"fault): messages in flight may be lost; resend what is not answered")

    def _last_text(self):
        if self.last_message is None:
            return "no message from it yet"
        msg_type, iteration, when = self.last_message
        return (f"last message: {type_name(msg_type)} of iteration {iteration}, "
                f"{time.monotonic() - when:.1f} s ago")

    def _drain_monitor(self):
        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            self._on_event(event["event"], event["value"])

    def _on_event(self, event, value):
        paired = self.state == "paired"
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            if self.server:
                log.debug("%s: a client failed CurveZMQ authentication (status %s)", self.role, value)
            else:
                self._refused_key = (f"{self.peer_name} did not accept {self.role}'s CurveZMQ key (status "
                                     f"{value}): client.key of {self.keys} is not in net2's "
                                     f"{keyfiles.AUTHORIZED_CLIENTS}/; give both hosts the same "
                                     "`dualnet keys` folder")
        elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            self._handshake_failed = f"ZeroMQ event {value}"
        elif event == zmq.EVENT_CONNECT_RETRIED:
            self._retried = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED and not self.server:
            self._up = True
            if paired and self._down_since is not None:
                self._down_since = None
                log.warning("%s: the connection to %s is back", self.role, self.peer_name)
        elif event == zmq.EVENT_ACCEPTED:
            self._closed_fds.discard(value)
            if paired and self._down_since is not None:
                self._new_fds.add(value)
        elif event == zmq.EVENT_DISCONNECTED:
            self._new_fds.discard(value)
            self._closed_fds.add(value)
            if self.server:
                if value not in self._peer_fds:
                    return               # a stranger's connection
                self._peer_fds.discard(value)
                if self._peer_fds:
                    return
            else:
                self._up = False
            if paired and self._down_since is None:
                self._down_since, self._reset_pending = time.monotonic(), True
                log.warning("%s: the connection to %s dropped; waiting up to %.1f s for it to come back",
                            self.role, self.peer_name, self.grace)

    # ------------------------------------------------------------------ end

    def _require_paired(self):
        if self.state != "paired":
            raise PeerError(f"{self.role}: the link is {self.state}; call handshake() first"
                            if self.state == "handshake" else f"{self.role}: the link is closed")

    def close(self):
        """Close the sockets (pending messages get `linger` to leave) and stop the ZAP thread."""
        if self.state == "closed":
            return
        self.state = "closed"
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
        self._socket.close()
        if self._auth is not None:
            self._auth.stop()
        self._context.destroy(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
