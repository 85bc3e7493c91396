"""The wire codec of the TCP transport: exact round trips, compact layout, strict decoding."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiraft.codec import CodecError, decode, encode
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
from transport.wire import (
    MAGIC,
    Hello,
    Refusal,
    SnapshotAck,
    SnapshotHeader,
    SnapshotTrailer,
    Welcome,
    decode_frame,
    decode_wire,
    encode_frame,
    encode_wire,
    wire_converter,
)

U64 = st.integers(min_value=0, max_value=2**64 - 1)
SMALL = st.integers(min_value=0, max_value=300)
ids = st.one_of(SMALL, U64)

entries = st.builds(
    Entry, term=ids, index=ids, type=st.sampled_from(EntryType), data=st.binary(max_size=40)
)
conf_states = st.builds(
    ConfState,
    voters=st.lists(ids, max_size=4),
    learners=st.lists(ids, max_size=3),
    voters_outgoing=st.lists(ids, max_size=3),
    learners_next=st.lists(ids, max_size=2),
    auto_leave=st.booleans(),
)
snapshots = st.builds(
    Snapshot,
    metadata=st.builds(SnapshotMetadata, conf_state=conf_states, index=ids, term=ids),
    data=st.binary(max_size=64),
)
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=ids,
    from_=ids,
    term=ids,
    log_term=ids,
    index=ids,
    entries=st.lists(entries, max_size=3).map(tuple),
    commit=ids,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=ids,
    context=st.binary(max_size=16),
)
heartbeats = st.builds(
    HeartbeatRecord,
    group_id=ids,
    from_=ids,
    to=ids,
    term=ids,
    commit=ids,
    context=st.binary(max_size=8),
    quiesce=st.booleans(),
)
frames = st.builds(
    Frame,
    from_node=ids,
    to_node=ids,
    messages=st.lists(st.builds(GroupMessage, group_id=ids, message=messages), max_size=3),
    heartbeats=st.lists(heartbeats, max_size=3),
    heartbeat_responses=st.lists(heartbeats, max_size=3),
)


@given(frames)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_frame_round_trips_exactly(frame: Frame) -> None:
    data = encode_frame(frame)
    assert decode_frame(data) == frame
    # The converter route and the hot-path route produce the same bytes.
    assert encode_wire(frame) == data
    assert decode_wire(data, Frame) == frame


@pytest.mark.parametrize(
    "value",
    [
        Hello(1, "cluster-a", 1, 2, 1),
        Welcome(1, "cluster-a", 2),
        Refusal("cluster id mismatch"),
        SnapshotHeader(
            9,
            Message(
                MessageType.SNAP,
                to=2,
                from_=1,
                term=4,
                snapshot=Snapshot(SnapshotMetadata(ConfState(voters=(1, 2)), 50, 4), b""),
            ),
            1 << 40,
        ),
        SnapshotTrailer(1 << 40, 0xDEADBEEF),
        SnapshotAck(SnapshotStatus.FAILURE),
    ],
)
def test_connection_message_round_trips_exactly(value: Any) -> None:
    assert decode_wire(encode_wire(value), type(value)) == value


def test_frame_is_laid_out_as_positional_arrays() -> None:
    m = Message(
        MessageType.APP,
        to=2,
        from_=1,
        term=5,
        log_term=4,
        index=10,
        entries=(Entry(5, 11, EntryType.NORMAL, b"x"),),
        commit=9,
    )
    frame = Frame(1, 2, [GroupMessage(77, m)], [HeartbeatRecord(78, 1, 2, 5, 9)], [])
    raw = msgpack.unpackb(encode_frame(frame), raw=False)
    assert raw == [
        1,
        2,
        [[77, [3, 2, 1, 5, 4, 10, [[5, 11, 0, b"x"]], 9, None, False, 0, b""]]],
        [[78, 1, 2, 5, 9, b"", False]],
        [],
    ]
    # Field names never travel: the same frame is under half the size of the map layout.
    assert len(encode_frame(frame)) * 2 < len(encode(frame))


def test_wire_layout_leaves_the_shared_codec_unchanged() -> None:
    cs = ConfState(voters=(1, 2, 3))
    assert isinstance(msgpack.unpackb(encode(cs), raw=False), dict)
    assert decode(encode(cs), ConfState) == cs
    assert wire_converter.unstructure(cs) == [(1, 2, 3), (), (), (), False]


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_decode_to_a_frame_or_raise_codec_error(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except CodecError:
        return
    assert decode_frame(encode_frame(frame)) == frame


@given(frames, st.data())
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_truncation_of_a_frame_raises_codec_error(frame: Frame, data: st.DataObject) -> None:
    encoded = encode_frame(frame)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1), label="cut")
    with pytest.raises(CodecError):
        decode_frame(encoded[:cut])


def _leaf_paths(raw: Any, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Paths to every value in a nested list structure, lists included."""
    out = [path] if path else []
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            out += _leaf_paths(item, (*path, i))
    return out


def _wrong_values(original: Any) -> list[Any]:
    """Values that can never be valid where ``original`` sits (another kind of value)."""
    if isinstance(original, bool):
        return [0, 1, None, "true", b"\x01"]
    if isinstance(original, int):
        return [-1, "7", 1.5, None, b"\x07", [original], True]
    if isinstance(original, bytes):
        return ["text", 3, None, [original], 1.0]
    if isinstance(original, list):
        return [{"a": 1}, 5, b"list", "list", 2.5]
    assert original is None  # an absent snapshot
    return [5, b"snap", "snap", True]


@given(frames.filter(lambda f: f.message_count() > 0), st.data())
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_wrong_typed_field_anywhere_raises_codec_error(frame: Frame, data: st.DataObject) -> None:
    raw = msgpack.unpackb(encode_frame(frame), raw=False)
    path = data.draw(st.sampled_from(_leaf_paths(raw)), label="path")
    parent = raw
    for i in path[:-1]:
        parent = parent[i]
    original = parent[path[-1]]
    # Integers inside conf state id lists sit in variable-length lists: replacing
    # the whole list with a list of ints would stay valid, so only kinds change.
    parent[path[-1]] = data.draw(st.sampled_from(_wrong_values(original)), label="wrong value")
    with pytest.raises(CodecError):
        decode_frame(msgpack.packb(raw, use_bin_type=True))


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ([1, 2, [[5, [19, 2, 1, 5, 4, 10, [], 9, None, False, 0, b""]]], [], []], "message type"),
        (
            [1, 2, [[5, [3, 2, 1, 5, 4, 10, [[5, 11, 3, b""]], 9, None, False, 0, b""]]], [], []],
            "entry type",
        ),
        ([1, 2, [], [[7, 1, 2, -5, 0, b"", False]], []], "heartbeat term"),
        ([1, 2, [], [], [[7, 1, 2, 5, 0, "ctx", False]]], "heartbeat context"),
        ([1, 2, [], [], [], []], "frame"),
        ({"from_node": 1}, "frame"),
    ],
)
def test_decoding_names_the_invalid_field(raw: Any, complaint: str) -> None:
    with pytest.raises(CodecError, match=complaint):
        decode_frame(msgpack.packb(raw, use_bin_type=True))


def test_snapshot_status_outside_the_enum_is_refused() -> None:
    with pytest.raises(CodecError, match="snapshot status"):
        decode_wire(msgpack.packb([2]), SnapshotAck)


def test_hello_without_the_magic_word_is_refused() -> None:
    raw = encode_wire(Hello(1, "c", 1, 2, 0))
    doctored = msgpack.unpackb(raw, raw=False)
    assert doctored[0] == MAGIC
    doctored[0] = "http"
    with pytest.raises(CodecError, match="hello magic"):
        decode_wire(msgpack.packb(doctored), Hello)


def test_msgpack_extension_types_and_maps_with_int_keys_are_refused() -> None:
    ext = msgpack.packb([1, 2, [], [msgpack.ExtType(5, b"xx")], []])
    with pytest.raises(CodecError):
        decode_frame(ext)
    int_keys = msgpack.packb({1: 2})
    with pytest.raises(CodecError):
        decode_frame(int_keys)


def test_huge_array_header_with_no_body_is_refused_without_allocating() -> None:
    with pytest.raises(CodecError):
        decode_frame(b"\xdd\xff\xff\xff\xff")
