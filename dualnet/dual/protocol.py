"""The wire protocol between net1 and net2: message types, frames, checks, cut encodings.

Written down first (as jupyter_client's messaging spec is); `Session` is the one
class that builds and parses messages; dual/transport.py moves them.

Frames of one message (a ZeroMQ multipart message; net2's ROUTER socket adds
net1's routing id in front, and the transport strips it):

    0   header     WireHeader (proto/dualnet.proto), at most MAX_HEADER_BYTES
    1   signature  HMAC-SHA256 keyed by the session key over the frame count and
                   the length and bytes of the header and of every array frame
                   (unlike jupyter's, it covers the payload); b"" only for the
                   handshake (HELLO, WELCOME, REFUSE) and for an ERROR to a
                   peer that has no key yet
    2.. arrays     raw little-endian C-order bytes, one frame per header.arrays[i],
                   sent zero-copy and read with np.frombuffer; never pickled

Message types (WireHeader.Type), who sends them, what they carry:

    HELLO          net1 -> net2   hello                proposed run parameters
    WELCOME        net2 -> net1   hello, session_key   agreed; signed messages from now on
    REFUSE         net2 -> net1   hello, reason        the fields that differ (or why not)
    FORWARD        net1 -> net2   ids, labels, cut     TRAIN batch of iteration `iter`
    TARGET         net2 -> net1   delta|target, values the answer to FORWARD `iter`
    TEST           net1 -> net2   ids, labels, cut     TEST batch `iter` (phase TEST)
    TEST_RESULT    net2 -> net1   values               net2's test outputs for batch `iter`
    SNAPSHOT       either         -                    snapshot at `iter` now
    SNAPSHOT_DONE  either         -                    the snapshot of `iter` is written
    BYE            either         reason               orderly end at `iter`
    ERROR          either         reason               the sender stopped on an error

The arrays of each type, by name, dtype and shape, are an `Expectations`
agreed after HELLO (`Expectations.from_hello`). The cut travels encoded:
    FLOAT32    "cut"        float32 (N, ...)
    FLOAT16    "cut"        float16 (N, ...)
    SIGN_BITS  "cut_bits"   uint64 (N, ceil(K/64)): element k of a sample's flattened
                            row of K is bit k % 64 of word k // 64, bit = 1 where x >= 0,
                            padding bits 0 (the HBNN kernel's layout)
               "cut_scale"  float32 (N,): s = mean |x| over the sample;
                            decoded x~ = s * (+1 | -1)

A receiver checks, in this order, before it touches an array buffer:
    1. frame count 2 .. 2 + MAX_ARRAYS, header size, signature size 0 or 32
    2. the signature (hmac.compare_digest) or, before the handshake, that there is
       none; on an encrypted link also the CURVE identity (ZAP User-Id) of the frame
    3. the header parses and describes one array per array frame
    4. protocol version (for HELLO, WELCOME and REFUSE the Hellos' protocol_version
       is compared instead, so that both sides can say what differs)
    5. sequence increasing; iteration >= 0 and, except for HEARTBEAT, BYE and ERROR,
       within the expected window
    6. message type: known, sent by the peer's role, allowed in the receiver's state
    7. per array: agreed name, dtype in the allow-list and the agreed one
    8. shape equal to the agreed shape for that type and name
    9. bytes: header nbytes == prod(shape) * itemsize == length of the frame
Any failure raises ProtocolError naming the message, the peer and what was
wrong; the message is dropped unread.
"""
import hashlib
import hmac
import struct
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError

from .. import __version__
from .. import dualnet_pb2 as pb
from ..errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_ARRAYS = 16                  # array frames per message
MAX_HEADER_BYTES = 64 * 1024     # a header with a Hello and a long reason is < 4 KiB
MAX_VALUES = 256
SIGNATURE_BYTES = 32             # HMAC-SHA256
SESSION_KEY_BYTES = 32

Header = pb.WireHeader
HELLO, WELCOME, REFUSE = Header.HELLO, Header.WELCOME, Header.REFUSE
FORWARD, TARGET, HEARTBEAT = Header.FORWARD, Header.TARGET, Header.HEARTBEAT
SNAPSHOT, SNAPSHOT_DONE, BYE, ERROR = Header.SNAPSHOT, Header.SNAPSHOT_DONE, Header.BYE, Header.ERROR
TEST, TEST_RESULT = Header.TEST, Header.TEST_RESULT

HANDSHAKE_TYPES = frozenset({HELLO, WELCOME, REFUSE})
UNSIGNED_TYPES = HANDSHAKE_TYPES | {ERROR}      # may travel without a session key
STOP_TYPES = frozenset({BYE, ERROR})            # always accepted once paired
CONTROL_TYPES = STOP_TYPES | {HEARTBEAT}        # outside any iteration window
SENT_BY = {HELLO: "net1", FORWARD: "net1", TEST: "net1",
           WELCOME: "net2", REFUSE: "net2", TARGET: "net2", TEST_RESULT: "net2"}

ENCODINGS = {name: value for name, value in pb.DualParameter.Encoding.items()}
FLOAT32, FLOAT16, SIGN_BITS = (pb.DualParameter.FLOAT32, pb.DualParameter.FLOAT16,
                               pb.DualParameter.SIGN_BITS)

# The dtype allow-list: every array on the wire has one of these (little endian).
WIRE_DTYPES = {pb.ArrayHeader.FLOAT32: np.dtype("<f4"), pb.ArrayHeader.FLOAT16: np.dtype("<f2"),
               pb.ArrayHeader.UINT64: np.dtype("<u8"), pb.ArrayHeader.INT64: np.dtype("<i8")}
_DTYPE_CODES = {dtype.str: code for code, dtype in WIRE_DTYPES.items()}

# Hello fields that are not compared (everything else must be equal on both sides).
NOT_COMPARED = frozenset({"role"})
FIELD_LABELS = {
    "dualnet_version": "dualnet version", "protocol_version": "wire protocol version",
    "cut_shape": "cut shape (TRAIN)", "test_cut_shape": "cut shape (TEST)",
    "label_shape": "label shape (TRAIN)", "test_label_shape": "label shape (TEST)",
    "batch_size": "batch size", "resume_iter": "resume iteration", "target_shape": "target shape",
}


def type_name(msg_type):
    try:
        return Header.Type.Name(msg_type)
    except ValueError:
        return f"message of unknown type {msg_type}"


def encoding_value(encoding):
    """DualParameter.Encoding number of `encoding` (a number or a name like "SIGN_BITS")."""
    if isinstance(encoding, str):
        if encoding.upper() not in ENCODINGS:
            raise ProtocolError(f"unknown encoding '{encoding}': use one of {', '.join(ENCODINGS)}")
        return ENCODINGS[encoding.upper()]
    if encoding not in ENCODINGS.values():
        raise ProtocolError(f"unknown encoding {encoding}: use one of {', '.join(ENCODINGS)}")
    return int(encoding)


def encoding_name(encoding):
    return pb.DualParameter.Encoding.Name(encoding_value(encoding))


def wire_dtype(dtype):
    """The little-endian wire dtype for `dtype`, or ProtocolError if the wire cannot carry it."""
    dtype = np.dtype(dtype).newbyteorder("<")
    if dtype.str not in _DTYPE_CODES:
        raise ProtocolError(f"the wire carries float32, float16, uint64 and int64 arrays, not {dtype.name}")
    return dtype


def _shape_text(shape):
    return str(tuple(int(d) for d in shape))


# ---------------------------------------------------------------------------- cut encodings


def cut_layout(shape, encoding, name="cut"):
    """[(array name, wire dtype, shape)] of a float32 cut of `shape` in `encoding`."""
    shape = tuple(int(d) for d in shape)
    encoding = encoding_value(encoding)
    if encoding == FLOAT32:
        return [(name, np.dtype("<f4"), shape)]
    if encoding == FLOAT16:
        return [(name, np.dtype("<f2"), shape)]
    n = shape[0] if shape else 1
    k = int(np.prod(shape[1:], dtype=np.int64))
    return [(f"{name}_bits", np.dtype("<u8"), (n, (k + 63) // 64)), (f"{name}_scale", np.dtype("<f4"), (n,))]


def cut_nbytes(shape, encoding):
    """Bytes of array frames a cut of `shape` takes on the wire in `encoding`."""
    return sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for _, d, s in cut_layout(shape, encoding))


def encode_cut(array, encoding, name="cut"):
    """The payload arrays [(name, ndarray)] of a float32 cut (N, ...) in `encoding`.

    FLOAT32 sends the array itself (no copy when it is C-contiguous float32):
    do not write into it until the peer has answered.
    """
    encoding = encoding_value(encoding)
    a = np.ascontiguousarray(array, dtype="<f4")
    if encoding == FLOAT32:
        return [(name, a)]
    if encoding == FLOAT16:
        return [(name, a.astype("<f2"))]
    from ..hbnn.kernel import pack_with_scales  # the HBNN kernel packs with the same layout

    rows = a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)
    if rows.shape[1] == 0:
        return [(f"{name}_bits", np.zeros((rows.shape[0], 0), "<u8")),
                (f"{name}_scale", np.zeros(rows.shape[0], "<f4"))]
    bits, scale = pack_with_scales(rows, 0)
    return [(f"{name}_bits", bits.astype("<u8", copy=False)),
            (f"{name}_scale", np.ascontiguousarray(scale.reshape(-1), dtype="<f4"))]


def decode_cut(arrays, encoding, shape, name="cut"):
    """The float32 cut of `shape` from payload arrays (a dict or [(name, ndarray)])."""
    arrays = dict(arrays)
    encoding = encoding_value(encoding)
    shape = tuple(int(d) for d in shape)
    if encoding in (FLOAT32, FLOAT16):
        return arrays[name].reshape(shape).astype(np.float32, copy=False)
    from ..hbnn.kernel import unpack_rows

    bits, scale = arrays[f"{name}_bits"], arrays[f"{name}_scale"]
    n = shape[0] if shape else 1
    k = int(np.prod(shape[1:], dtype=np.int64))
    if k == 0:
        return np.zeros(shape, np.float32)
    signs = unpack_rows(np.ascontiguousarray(bits, dtype=np.uint64).reshape(n, -1), k)
    return (signs * scale.astype(np.float32).reshape(n, 1)).reshape(shape)


# ---------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class ArraySpec:
    dtype: np.dtype
    shape: tuple

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


class Expectations:
    """The arrays each message type carries, by name: agreed dtype and shape.

    Built from the agreed Hello after the handshake (`from_hello`); the roles
    may add or replace arrays with `expect`. A type with no entry carries no arrays.
    """

    def __init__(self):
        self._arrays = {}

    def expect(self, msg_type, name, dtype, shape):
        self._arrays.setdefault(msg_type, {})[name] = ArraySpec(wire_dtype(dtype), tuple(int(d) for d in shape))
        return self

    def expect_cut(self, msg_type, shape, encoding, name="cut"):
        for array_name, dtype, array_shape in cut_layout(shape, encoding, name):
            self.expect(msg_type, array_name, dtype, array_shape)
        return self

    def arrays(self, msg_type):
        """{name: ArraySpec} of `msg_type` (empty: no arrays)."""
        return dict(self._arrays.get(msg_type, {}))

    def max_frame_bytes(self):
        """The largest frame any agreed message has: what ZMQ_MAXMSGSIZE must allow."""
        sizes = [spec.nbytes for specs in self._arrays.values() for spec in specs.values()]
        return max([MAX_HEADER_BYTES] + sizes)

    @classmethod
    def from_hello(cls, hello, label_names=("label",), target_name=None):
        """FORWARD/TEST: "ids" int64 (N,), each label blob float32, the encoded cut;
        TARGET: float32 `target_name` ("delta" for ADMM, "target" for DUAL_LAYER)
        of hello.target_shape, or of the cut's shape when that is unset."""
        expectations = cls()
        encoding = hello.encoding
        phases = [(FORWARD, tuple(hello.cut_shape), tuple(hello.label_shape)),
                  (TEST, tuple(hello.test_cut_shape), tuple(hello.test_label_shape))]
        for msg_type, cut_shape, label_shape in phases:
            if not cut_shape:
                continue
            batch = cut_shape[0]
            expectations.expect(msg_type, "ids", "<i8", (batch,))
            for label in label_names:
                expectations.expect(msg_type, label, "<f4", label_shape or (batch,))
            expectations.expect_cut(msg_type, cut_shape, encoding)
        if target_name is None:
            target_name = "target" if hello.mode == pb.DualParameter.DUAL_LAYER else "delta"
        target_shape = tuple(hello.target_shape) or tuple(hello.cut_shape)
        if target_shape:
            expectations.expect(TARGET, target_name, "<f4", target_shape)
        return expectations


def frame_limit(hello):
    """ZMQ_MAXMSGSIZE for a link whose messages follow `hello`: its largest frame."""
    return Expectations.from_hello(hello).max_frame_bytes()


# ---------------------------------------------------------------------------- hello


def make_hello(role, **fields):
    """A Hello for `role` with this dualnet's versions and the given fields (lists for shapes)."""
    hello = pb.Hello(role=role, dualnet_version=__version__, protocol_version=PROTOCOL_VERSION)
    for name, value in fields.items():
        if isinstance(value, (list, tuple)):
            getattr(hello, name).extend(int(v) for v in value)
        elif value is not None:
            setattr(hello, name, value)
    return hello


def _field_text(descriptor, message):
    if descriptor.is_repeated:
        return _shape_text(getattr(message, descriptor.name)) if len(getattr(message, descriptor.name)) else "unset"
    if not message.HasField(descriptor.name):
        return "unset"
    value = getattr(message, descriptor.name)
    if descriptor.enum_type is not None:
        known = descriptor.enum_type.values_by_number.get(value)
        return known.name if known else str(value)
    return str(value)


def compare_hellos(net1_hello, net2_hello):
    """[(what, net1's value, net2's value)] for every compared Hello field that differs."""
    differences = []
    for descriptor in pb.Hello.DESCRIPTOR.fields:
        if descriptor.name in NOT_COMPARED:
            continue
        mine, theirs = _field_text(descriptor, net1_hello), _field_text(descriptor, net2_hello)
        if mine != theirs:
            differences.append((FIELD_LABELS.get(descriptor.name, descriptor.name), mine, theirs))
    return differences


def describe_differences(differences):
    """"net1 and net2 disagree: encoding FLOAT32 (net1) vs SIGN_BITS (net2); ..."."""
    parts = [f"{what} {net1} (net1) vs {net2} (net2)" for what, net1, net2 in differences]
    return "net1 and net2 disagree: " + "; ".join(parts)


# ---------------------------------------------------------------------------- messages


@dataclass
class Message:
    """A validated message; `arrays` are read-only views of the received frames."""
    type: int
    iter: int
    phase: int
    sequence: int
    arrays: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    reason: str = ""
    hello: object = None
    session_key: bytes = b""
    nbytes: int = 0

    @property
    def type_name(self):
        return type_name(self.type)

    @property
    def iteration(self):
        return self.iter


def _signature(key, header, payload):
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(struct.pack("<Q", 1 + len(payload)))
    for part in (header, *payload):
        mac.update(struct.pack("<Q", part.nbytes))
        mac.update(part)
    return mac.digest()


def _window_text(iterations):
    if isinstance(iterations, tuple):
        low, high = iterations
        return f"{low}..{'' if high is None else high}"
    return str(iterations)


class Session:
    """Builds and checks the messages of one end of a link (role "net1" or "net2").

    `key` is the session key from WELCOME (empty before the handshake);
    `expectations` the agreed arrays; `peer_user_id` the CURVE public key
    (z85 text) the peer's frames must carry, when the link is encrypted.
    """

    def __init__(self, role, key=b"", expectations=None):
        if role not in ("net1", "net2"):
            raise ProtocolError(f"role must be 'net1' or 'net2', not '{role}'")
        self.role = role
        self.peer_role = "net2" if role == "net1" else "net1"
        self.key = key
        self.expectations = expectations or Expectations()
        self.peer_user_id = None
        self.sequence = 0        # last sequence number sent
        self.peer_sequence = 0   # last sequence number accepted

    # -- building

    def _outgoing_arrays(self, msg_type, arrays):
        """[(name, C-contiguous little-endian ndarray)] checked against the agreed arrays."""
        specs = self.expectations.arrays(msg_type)
        given = dict(arrays or {})
        what = f"{self.role} cannot send {type_name(msg_type)}"
        if set(given) != set(specs):
            raise ProtocolError(f"{what}: it has arrays {sorted(given)}, agreed {sorted(specs)}")
        out = []
        for name, spec in specs.items():
            array = np.asarray(given[name])
            if array.dtype.newbyteorder("<") != spec.dtype:
                if not np.can_cast(array.dtype, spec.dtype, "safe"):
                    raise ProtocolError(f"{what}: array '{name}' is {array.dtype.name}, agreed {spec.dtype.name}")
            if array.shape != spec.shape:
                raise ProtocolError(f"{what}: array '{name}' has shape {_shape_text(array.shape)}, "
                                    f"agreed {_shape_text(spec.shape)}")
            out.append((name, np.ascontiguousarray(array, dtype=spec.dtype)))
        return out

    def serialize(self, msg_type, iteration=0, arrays=None, values=None, phase=None, reason="",
                  hello=None, session_key=b""):
        """The frames [header, signature, array...] of a message; arrays are not copied."""
        self.sequence += 1
        header = Header(type=msg_type, protocol_version=PROTOCOL_VERSION, iter=int(iteration),
                        sequence=self.sequence)
        if phase is not None:
            header.phase = phase
        if reason:
            header.reason = reason
        if hello is not None:
            header.hello.CopyFrom(hello)
        if session_key:
            header.session_key = session_key
        for name, value in (values or {}).items():
            header.values.add(name=name, value=float(value))
        payload = []
        for name, array in self._outgoing_arrays(msg_type, arrays):
            header.arrays.add(name=name, dtype=_DTYPE_CODES[array.dtype.str], shape=array.shape,
                              nbytes=array.nbytes)
            payload.append(memoryview(array).cast("B") if array.nbytes else memoryview(b""))
        header_bytes = header.SerializeToString()
        if self.key:
            signature = _signature(self.key, memoryview(header_bytes), payload)
        elif msg_type in UNSIGNED_TYPES:
            signature = b""
        else:
            raise ProtocolError(f"{self.role} cannot send {type_name(msg_type)} before the handshake")
        return [header_bytes, signature] + payload

    # -- checking

    def deserialize(self, frames, allowed, iterations=None, user_id=None, peer=None):
        """The Message in `frames` (bytes or zmq.Frame), checked in the documented order.

        allowed: the message types the receiver takes now (BYE and ERROR are
        added once paired); iterations: None (any >= 0), an int, or an inclusive
        (first, last) window with last None for open-ended; user_id: the frame's
        ZAP User-Id on an encrypted link. HEARTBEAT, BYE and ERROR are outside
        the window (any iteration >= 0).
        """
        peer = peer or self.peer_role
        views = [memoryview(frame) for frame in frames]

        def fail(what, message):
            raise ProtocolError(f"{what} from {peer}: {message}; the message was dropped")

        # 1. frame count and sizes
        count = len(views)
        if count < 2:
            fail("message", f"{count} frame(s), but every message has a header and a signature frame")
        if count > 2 + MAX_ARRAYS:
            fail("message", f"{count} frames, at most {2 + MAX_ARRAYS} allowed")
        header_view, signature, payload = views[0], views[1], views[2:]
        if header_view.nbytes > MAX_HEADER_BYTES:
            fail("message", f"a header of {header_view.nbytes} bytes, at most {MAX_HEADER_BYTES} allowed")
        if signature.nbytes not in (0, SIGNATURE_BYTES):
            fail("message", f"a signature of {signature.nbytes} bytes (HMAC-SHA256 has {SIGNATURE_BYTES})")
        # 2. signature and CURVE identity
        if self.key:
            if signature.nbytes == 0:
                fail("message", "no signature, but the handshake is done and every message must be signed")
            if not hmac.compare_digest(_signature(self.key, header_view, payload), signature):
                fail("message", "bad signature: not signed with this session's key (a process from an "
                                "earlier run, or corrupted frames)")
        elif signature.nbytes:
            fail("message", "a signature before the handshake: is a net1 from an earlier run still connected?")
        if self.peer_user_id is not None and user_id != self.peer_user_id:
            fail("message", f"CURVE key {user_id!r}, but the paired {self.peer_role} has {self.peer_user_id!r}")
        # 3. header
        try:
            header = Header.FromString(header_view.tobytes())
        except DecodeError as error:
            fail("message", f"the header ({header_view.nbytes} bytes) is not a WireHeader ({error})")
        what = type_name(header.type) if header.HasField("type") else "message without a type"
        if len(header.arrays) != len(payload):
            fail(what, f"the header describes {len(header.arrays)} arrays but {len(payload)} array frames follow")
        # 4. version (a handshake's Hello is compared field by field instead)
        handshake = header.HasField("type") and header.type in HANDSHAKE_TYPES
        if header.protocol_version != PROTOCOL_VERSION and not handshake:
            fail(what, f"it speaks wire protocol version {header.protocol_version}, this dualnet "
                       f"{__version__} speaks {PROTOCOL_VERSION}; install the same dualnet on both hosts")
        # 5. sequence and iteration (a control message's iteration is outside any window)
        if header.sequence <= self.peer_sequence:
            fail(what, f"sequence {header.sequence} does not follow {self.peer_sequence}: a replayed "
                       "or duplicated message")
        it = header.iter
        if header.HasField("type") and header.type in CONTROL_TYPES or it < 0:
            iterations = None
        if isinstance(iterations, tuple):
            inside = iterations[0] <= it and (iterations[1] is None or it <= iterations[1])
        else:
            inside = it >= 0 if iterations is None else it == iterations
        if not inside:
            window = "an iteration >= 0" if iterations is None else f"iteration {_window_text(iterations)}"
            fail(what, f"it is for iteration {it}, expected {window}")
        # 6. type
        if not header.HasField("type"):
            fail(what, "unknown message type (a newer or foreign protocol)")
        msg_type = header.type
        sender = SENT_BY.get(msg_type)
        if sender is not None and sender != self.peer_role:
            fail(what, f"only {sender} sends {what}")
        if not self.key and msg_type not in UNSIGNED_TYPES:
            fail(what, "not allowed before the handshake (send HELLO first)")
        accepted = set(allowed) | (STOP_TYPES if self.key else set())
        if msg_type not in accepted:
            fail(what, f"unexpected now (expecting {', '.join(sorted(type_name(t) for t in accepted))})")
        if len(header.values) > MAX_VALUES:
            fail(what, f"{len(header.values)} values, at most {MAX_VALUES} allowed")
        # 7-9. arrays: names, dtypes, shapes, byte counts
        specs = self.expectations.arrays(msg_type)
        names = [a.name for a in header.arrays]
        if len(set(names)) != len(names) or set(names) != set(specs):
            fail(what, f"arrays {names}, agreed {sorted(specs)}")
        dtypes = []
        for a in header.arrays:
            spec = specs[a.name]
            dtype = WIRE_DTYPES.get(a.dtype) if a.HasField("dtype") else None
            if dtype is None:
                fail(what, f"array '{a.name}' has dtype code {a.dtype}, not one of float32, float16, "
                           "uint64, int64")
            if dtype != spec.dtype:
                fail(what, f"array '{a.name}' is {dtype.name}, agreed {spec.dtype.name}")
            dtypes.append(dtype)
        for a in header.arrays:
            spec = specs[a.name]
            if tuple(a.shape) != spec.shape:
                fail(what, f"array '{a.name}' has shape {_shape_text(a.shape)}, agreed {_shape_text(spec.shape)}")
        for a, frame in zip(header.arrays, payload):
            expected = specs[a.name].nbytes
            if a.nbytes != expected or frame.nbytes != expected:
                fail(what, f"array '{a.name}' of shape {_shape_text(a.shape)} needs {expected} bytes, "
                           f"the header says {a.nbytes} and the frame has {frame.nbytes}")
        if msg_type in HANDSHAKE_TYPES and not header.HasField("hello"):
            fail(what, "no hello in a handshake message")
        if msg_type == WELCOME and len(header.session_key) != SESSION_KEY_BYTES:
            fail(what, f"a session key of {len(header.session_key)} bytes, expected {SESSION_KEY_BYTES}")
        # Checked: unpack (views of the frames; a small frame inside ZeroMQ's receive buffer may be
        # unaligned, and is copied).
        self.peer_sequence = header.sequence
        arrays = {}
        for a, frame, dtype in zip(header.arrays, payload, dtypes):
            array = np.frombuffer(frame, dtype=dtype).reshape(tuple(a.shape))
            arrays[a.name] = array if array.flags.aligned else array.copy()
        return Message(type=msg_type, iter=it, phase=header.phase, sequence=header.sequence, arrays=arrays,
                       values={v.name: v.value for v in header.values}, reason=header.reason,
                       hello=header.hello if header.HasField("hello") else None,
                       session_key=header.session_key, nbytes=sum(v.nbytes for v in views))
