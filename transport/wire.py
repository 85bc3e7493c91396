"""The TCP transport's wire layout: frames and connection messages as compact msgpack arrays.

Frames are the hot path (one per peer per ready cycle, possibly thousands of
messages), so their classes are laid out as positional msgpack arrays rather
than maps of field names. The layout lives on a cattrs converter of the
transport's own (:data:`wire_converter`, built like the shared one in
:mod:`multiraft.codec`, with hooks registered for the frame classes): the shared
converter keeps the map layout that disk records already use, and the wire can
change without touching the disk format.

Layouts (all integers unsigned, below 2**64)::

    Entry            [term, index, type, data]
    ConfState        [voters, learners, voters_outgoing, learners_next, auto_leave]
    Snapshot         [[conf_state, index, term], data]
    Message          [type, to, from, term, log_term, index, entries, commit,
                      snapshot | nil, reject, reject_hint, context]
    GroupMessage     [group_id, message]
    HeartbeatRecord  [group_id, from, to, term, commit, context, quiesce]
    Frame            [from_node, to_node, messages, heartbeats, heartbeat_responses]

Decoding checks every value's type and range (enum members, unsigned 64-bit
integers, bytes where bytes belong, booleans) and raises
:class:`multiraft.codec.CodecError` for anything else. Nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import msgpack
from cattrs.preconf.msgpack import make_converter

from multiraft.codec import CodecError
from multiraft.frames import Frame, GroupMessage, HeartbeatRecord
from multiraft.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
)

__all__ = [
    "MAGIC",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "ConnectionPurpose",
    "Hello",
    "Refusal",
    "SnapshotAck",
    "SnapshotHeader",
    "SnapshotTrailer",
    "Welcome",
    "decode_frame",
    "decode_wire",
    "encode_frame",
    "encode_wire",
    "wire_converter",
]

#: First field of every HELLO: tells a multiraft peer from anything else on the port.
MAGIC = "multiraft"
#: The protocol version this build speaks.
PROTOCOL_VERSION = 1
#: Versions a node accepts from a peer.
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})

_U64_LIMIT = 1 << 64
_MESSAGE_TYPES = tuple(MessageType)
_ENTRY_TYPES = tuple(EntryType)
_SNAPSHOT_STATUSES = tuple(SnapshotStatus)
_MESSAGE_TYPE_COUNT = len(_MESSAGE_TYPES)
_ENTRY_TYPE_COUNT = len(_ENTRY_TYPES)

T = TypeVar("T")

#: Converter holding the wire layout of frames and connection messages.
wire_converter = make_converter()


def _fail(what: str, value: object) -> CodecError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return CodecError(f"bad {what}: {shown}")


def _u64(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value < _U64_LIMIT:
        raise _fail(what, value)
    return value


def _bytes(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise _fail(what, value)
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise _fail(what, value)
    return value


def _str(value: object, what: str) -> str:
    if type(value) is not str:
        raise _fail(what, value)
    return value


def _array(value: object, size: int, what: str) -> list[Any]:
    if type(value) is not list or len(value) != size:
        raise _fail(what, value)
    return value


def _list(value: object, what: str) -> list[Any]:
    if type(value) is not list:
        raise _fail(what, value)
    return value


def _enum(members: tuple[T, ...], value: object, what: str) -> T:
    if type(value) is not int or not 0 <= value < len(members):
        raise _fail(what, value)
    return members[value]


def _u64_tuple(value: object, what: str) -> tuple[int, ...]:
    return tuple(_u64(v, what) for v in _list(value, what))


# --- raft data -----------------------------------------------------------------


def _entry_out(e: Entry) -> list[Any]:
    return [e.term, e.index, e.type, e.data]


def _entry_in(raw: object) -> Entry:
    if type(raw) is not list or len(raw) != 4:
        raise _fail("entry", raw)
    term, index, type_, data = raw
    if not (
        type(term) is type(index) is type(type_) is int
        and type(data) is bytes
        and 0 <= term < _U64_LIMIT
        and 0 <= index < _U64_LIMIT
        and 0 <= type_ < _ENTRY_TYPE_COUNT
    ):
        _u64(term, "entry term")
        _u64(index, "entry index")
        _enum(_ENTRY_TYPES, type_, "entry type")
        _bytes(data, "entry data")
    return Entry(term, index, _ENTRY_TYPES[type_], data)


def _conf_state_out(cs: ConfState) -> list[Any]:
    return [cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next, cs.auto_leave]


def _conf_state_in(raw: object) -> ConfState:
    voters, learners, outgoing, learners_next, auto_leave = _array(raw, 5, "conf state")
    return ConfState(
        _u64_tuple(voters, "voter id"),
        _u64_tuple(learners, "learner id"),
        _u64_tuple(outgoing, "outgoing voter id"),
        _u64_tuple(learners_next, "next learner id"),
        _bool(auto_leave, "auto_leave"),
    )


def _metadata_out(md: SnapshotMetadata) -> list[Any]:
    return [_conf_state_out(md.conf_state), md.index, md.term]


def _metadata_in(raw: object) -> SnapshotMetadata:
    conf_state, index, term = _array(raw, 3, "snapshot metadata")
    return SnapshotMetadata(
        _conf_state_in(conf_state), _u64(index, "snapshot index"), _u64(term, "snapshot term")
    )


def _snapshot_out(s: Snapshot) -> list[Any]:
    return [_metadata_out(s.metadata), s.data]


def _snapshot_in(raw: object) -> Snapshot:
    metadata, data = _array(raw, 2, "snapshot")
    return Snapshot(_metadata_in(metadata), _bytes(data, "snapshot data"))


def _message_out(m: Message) -> list[Any]:
    entries = m.entries
    snapshot = m.snapshot
    return [
        m.type,
        m.to,
        m.from_,
        m.term,
        m.log_term,
        m.index,
        [[e.term, e.index, e.type, e.data] for e in entries] if entries else (),
        m.commit,
        None if snapshot is None else _snapshot_out(snapshot),
        m.reject,
        m.reject_hint,
        m.context,
    ]


def _message_in(raw: object) -> Message:
    if type(raw) is not list or len(raw) != 12:
        raise _fail("message", raw)
    (type_, to, from_, term, log_term, index, entries, commit, snapshot, reject, hint, ctx) = raw
    # One chained check for the common case; the slow path names the bad field.
    if not (
        type(type_) is type(to) is type(from_) is type(term) is int
        and type(log_term) is type(index) is type(commit) is type(hint) is int
        and type(entries) is list
        and type(reject) is bool
        and type(ctx) is bytes
        and 0 <= type_ < _MESSAGE_TYPE_COUNT
        and 0 <= to < _U64_LIMIT
        and 0 <= from_ < _U64_LIMIT
        and 0 <= term < _U64_LIMIT
        and 0 <= log_term < _U64_LIMIT
        and 0 <= index < _U64_LIMIT
        and 0 <= commit < _U64_LIMIT
        and 0 <= hint < _U64_LIMIT
    ):
        _enum(_MESSAGE_TYPES, type_, "message type")
        for value, what in (
            (to, "message to"),
            (from_, "message from"),
            (term, "message term"),
            (log_term, "message log_term"),
            (index, "message index"),
            (commit, "message commit"),
            (hint, "message reject_hint"),
        ):
            _u64(value, what)
        _list(entries, "entries")
        _bool(reject, "message reject")
        _bytes(ctx, "message context")
    return Message(
        _MESSAGE_TYPES[type_],
        to,
        from_,
        term,
        log_term,
        index,
        tuple([_entry_in(e) for e in entries]) if entries else (),
        commit,
        None if snapshot is None else _snapshot_in(snapshot),
        reject,
        hint,
        ctx,
    )


# --- frames --------------------------------------------------------------------


def _group_message_out(gm: GroupMessage) -> list[Any]:
    return [gm.group_id, _message_out(gm.message)]


def _group_message_in(raw: object) -> GroupMessage:
    group_id, message = _array(raw, 2, "group message")
    return GroupMessage(_u64(group_id, "group id"), _message_in(message))


def _heartbeat_out(r: HeartbeatRecord) -> list[Any]:
    return [r.group_id, r.from_, r.to, r.term, r.commit, r.context, r.quiesce]


def _heartbeat_in(raw: object) -> HeartbeatRecord:
    if type(raw) is not list or len(raw) != 7:
        raise _fail("heartbeat record", raw)
    group_id, from_, to, term, commit, context, quiesce = raw
    if not (
        type(group_id) is type(from_) is type(to) is type(term) is type(commit) is int
        and type(context) is bytes
        and type(quiesce) is bool
        and 0 <= group_id < _U64_LIMIT
        and 0 <= from_ < _U64_LIMIT
        and 0 <= to < _U64_LIMIT
        and 0 <= term < _U64_LIMIT
        and 0 <= commit < _U64_LIMIT
    ):
        for value, what in (
            (group_id, "heartbeat group id"),
            (from_, "heartbeat from"),
            (to, "heartbeat to"),
            (term, "heartbeat term"),
            (commit, "heartbeat commit"),
        ):
            _u64(value, what)
        _bytes(context, "heartbeat context")
        _bool(quiesce, "heartbeat quiesce")
    return HeartbeatRecord(group_id, from_, to, term, commit, context, quiesce)


def _frame_out(f: Frame) -> list[Any]:
    return [
        f.from_node,
        f.to_node,
        [[gm.group_id, _message_out(gm.message)] for gm in f.messages],
        [_heartbeat_out(r) for r in f.heartbeats],
        [_heartbeat_out(r) for r in f.heartbeat_responses],
    ]


def _frame_in(raw: object) -> Frame:
    from_node, to_node, messages, heartbeats, responses = _array(raw, 5, "frame")
    return Frame(
        _u64(from_node, "frame from_node"),
        _u64(to_node, "frame to_node"),
        [_group_message_in(gm) for gm in _list(messages, "frame messages")],
        [_heartbeat_in(r) for r in _list(heartbeats, "frame heartbeats")],
        [_heartbeat_in(r) for r in _list(responses, "frame heartbeat responses")],
    )


# --- connection messages -------------------------------------------------------


class ConnectionPurpose:
    """What a connection carries, announced in its HELLO."""

    #: Frames from the dialer to the acceptor (keepalives answered the other way).
    FRAMES = 0
    #: One snapshot from the dialer, acknowledged by the acceptor.
    SNAPSHOT = 1


_PURPOSES = (ConnectionPurpose.FRAMES, ConnectionPurpose.SNAPSHOT)


@attrs.define(slots=True)
class Hello:
    """The dialer's opening message: who it is and whom it expects to reach."""

    version: int
    cluster_id: str
    from_node: int
    to_node: int
    purpose: int = ConnectionPurpose.FRAMES


def _hello_out(h: Hello) -> list[Any]:
    return [MAGIC, h.version, h.cluster_id, h.from_node, h.to_node, h.purpose]


def _hello_in(raw: object) -> Hello:
    magic, version, cluster_id, from_node, to_node, purpose = _array(raw, 6, "hello")
    if magic != MAGIC:
        raise _fail("hello magic", magic)
    return Hello(
        _u64(version, "protocol version"),
        _str(cluster_id, "cluster id"),
        _u64(from_node, "hello from_node"),
        _u64(to_node, "hello to_node"),
        _enum(_PURPOSES, purpose, "connection purpose"),
    )


@attrs.define(slots=True)
class Welcome:
    """The acceptor's answer to an accepted HELLO."""

    version: int
    cluster_id: str
    node_id: int


def _welcome_out(w: Welcome) -> list[Any]:
    return [w.version, w.cluster_id, w.node_id]


def _welcome_in(raw: object) -> Welcome:
    version, cluster_id, node_id = _array(raw, 3, "welcome")
    return Welcome(
        _u64(version, "protocol version"),
        _str(cluster_id, "cluster id"),
        _u64(node_id, "welcome node_id"),
    )


@attrs.define(slots=True)
class Refusal:
    """The acceptor's answer to a refused HELLO: what did not match."""

    reason: str


def _refusal_out(r: Refusal) -> list[Any]:
    return [r.reason]


def _refusal_in(raw: object) -> Refusal:
    (reason,) = _array(raw, 1, "refusal")
    return Refusal(_str(reason, "refusal reason")[:500])


@attrs.define(slots=True)
class SnapshotHeader:
    """Opens a snapshot stream: the raft message (its snapshot data empty) and the data size."""

    group_id: int
    message: Message
    size: int


def _snapshot_header_out(h: SnapshotHeader) -> list[Any]:
    return [h.group_id, _message_out(h.message), h.size]


def _snapshot_header_in(raw: object) -> SnapshotHeader:
    group_id, message, size = _array(raw, 3, "snapshot header")
    decoded = _message_in(message)
    if decoded.snapshot is None:
        raise _fail("snapshot header message", "no snapshot metadata")
    return SnapshotHeader(_u64(group_id, "group id"), decoded, _u64(size, "snapshot size"))


@attrs.define(slots=True)
class SnapshotTrailer:
    """Closes a snapshot stream: the size sent and the CRC-32 of the data."""

    size: int
    crc32: int


def _snapshot_trailer_out(t: SnapshotTrailer) -> list[Any]:
    return [t.size, t.crc32]


def _snapshot_trailer_in(raw: object) -> SnapshotTrailer:
    size, crc = _array(raw, 2, "snapshot trailer")
    return SnapshotTrailer(_u64(size, "snapshot size"), _u64(crc, "snapshot crc32"))


@attrs.define(slots=True)
class SnapshotAck:
    """The receiver's verdict on a snapshot stream."""

    status: SnapshotStatus


def _snapshot_ack_out(a: SnapshotAck) -> list[Any]:
    return [a.status]


def _snapshot_ack_in(raw: object) -> SnapshotAck:
    (status,) = _array(raw, 1, "snapshot ack")
    return SnapshotAck(_enum(_SNAPSHOT_STATUSES, status, "snapshot status"))


def _register(cls: type[T], out: Callable[[T], Any], in_: Callable[[object], T]) -> None:
    wire_converter.register_unstructure_hook(cls, out)
    wire_converter.register_structure_hook(cls, lambda raw, _cls: in_(raw))


_register(Entry, _entry_out, _entry_in)
_register(ConfState, _conf_state_out, _conf_state_in)
_register(SnapshotMetadata, _metadata_out, _metadata_in)
_register(Snapshot, _snapshot_out, _snapshot_in)
_register(Message, _message_out, _message_in)
_register(GroupMessage, _group_message_out, _group_message_in)
_register(HeartbeatRecord, _heartbeat_out, _heartbeat_in)
_register(Frame, _frame_out, _frame_in)
_register(Hello, _hello_out, _hello_in)
_register(Welcome, _welcome_out, _welcome_in)
_register(Refusal, _refusal_out, _refusal_in)
_register(SnapshotHeader, _snapshot_header_out, _snapshot_header_in)
_register(SnapshotTrailer, _snapshot_trailer_out, _snapshot_trailer_in)
_register(SnapshotAck, _snapshot_ack_out, _snapshot_ack_in)

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def encode_wire(value: Any) -> bytes:
    """Encode a frame or connection message with the wire layout."""
    out: bytes = _packb(wire_converter.unstructure(value), use_bin_type=True)
    return out


def decode_wire(data: bytes | memoryview, cls: type[T]) -> T:
    """Decode bytes from :func:`encode_wire` into ``cls``; :class:`CodecError` if malformed."""
    try:
        raw = _unpackb(data, raw=False, strict_map_key=True, use_list=True)
        return wire_converter.structure(raw, cls)
    except CodecError:
        raise
    except Exception as exc:  # msgpack and constructor failures alike mean malformed input
        raise CodecError(f"cannot decode {cls.__name__}: {exc}") from exc


def encode_frame(frame: Frame) -> bytes:
    """Encode a frame once for the wire (the hot path skips converter dispatch)."""
    out: bytes = _packb(_frame_out(frame), use_bin_type=True)
    return out


def decode_frame(data: bytes | memoryview) -> Frame:
    """Decode and validate a frame; :class:`CodecError` for anything malformed."""
    try:
        return _frame_in(_unpackb(data, raw=False, strict_map_key=True, use_list=True))
    except CodecError:
        raise
    except Exception as exc:  # msgpack failures (truncation, extra data, bad utf-8)
        raise CodecError(f"cannot decode Frame: {exc}") from exc
