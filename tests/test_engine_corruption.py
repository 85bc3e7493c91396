"""Damage to durable bytes is detected, reported with segment, offset and groups, never cut.

Only a torn tail of the last segment with nothing sound after it is accepted
(and cut); everything else is corruption: the affected groups are flagged (so
the coordinator keeps them from voting) until an incoming snapshot repairs
them, and the damaged bytes stay on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from storage.engine import DurableLogEngine
from storage.errors import CorruptionError
from storage.records import (
    BATCH_HEADER,
    RECORD_HEADER,
    BatchBuilder,
    RecordType,
    decode_entry_set,
    decode_entry_terms,
    entry_set_payload,
    parse_batch,
)
from storage.recovery import segment_name

_GROUPS = 4
_SEGMENT = 4096


def _fill(path: str, batches: int) -> None:
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT, gc_ratio=1e9)
    for k in range(1, batches + 1):
        engine.write(
            WriteBatch(
                [
                    GroupWrite(g, entries=[Entry(1, k, data=b"%d-%d" % (g, k) * 10)])
                    for g in range(1, _GROUPS + 1)
                ]
            )
        )
    engine.close()


def _records(path: str, seq: int) -> list[tuple[int, int, int, int, int]]:
    """``(batch offset, type, group, payload offset, payload length)`` of a segment."""
    with open(os.path.join(path, segment_name(seq)), "rb") as f:
        data = f.read()
    out = []
    off = 0
    while True:
        pb = parse_batch(data, off, seq)
        if not pb.ok:
            return out
        out.extend((off, *r) for r in pb.records)
        off = pb.end


def _flip(path: str, seq: int, offset: int) -> bytes:
    name = os.path.join(path, segment_name(seq))
    with open(name, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x5A]))
    with open(name, "rb") as f:
        return f.read()


def _segment_bytes(path: str, seq: int) -> bytes:
    with open(os.path.join(path, segment_name(seq)), "rb") as f:
        return f.read()


def _entries_of(engine: DurableLogEngine, group: int) -> list[int]:
    v = engine.storage(group)
    if v.last_index() < v.first_index():
        return []
    return [e.index for e in v.entries(v.first_index(), v.last_index() + 1)]


def test_flipped_payload_in_an_old_segment_flags_its_group_and_cuts_nothing(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "log")
    _fill(path, 60)
    victim = next(r for r in _records(path, 1) if r[1] == RecordType.ENTRIES and r[2] == 3)
    pstart = victim[3]
    damaged = _flip(path, 1, pstart + 20)
    sizes = {n: os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)}

    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT, gc_ratio=1e9)
    try:
        [err] = engine.corruption_found()
        assert (err.segment, err.offset, err.groups) == (
            segment_name(1),
            pstart - RECORD_HEADER,
            (3,),
        )
        assert err.all_groups is False
        assert list(engine.corrupted_groups()) == [3]
        # The other groups are whole, to the last batch.
        for g in (1, 2, 4):
            assert _entries_of(engine, g) == list(range(1, 61))
    finally:
        engine.close()
    # Nothing was truncated or rewritten.
    assert _segment_bytes(path, 1) == damaged
    assert {n: os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)} == sizes

    # Still flagged after another restart, and strict mode refuses to open.
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT, gc_ratio=1e9)
    assert list(engine.corrupted_groups()) == [3]
    engine.close()
    with pytest.raises(CorruptionError, match=segment_name(1)):
        DurableLogEngine.open(path, segment_bytes=_SEGMENT, strict=True)


def test_flipped_entry_of_a_set_record_flags_the_groups_of_that_set_only(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "log")
    _fill(path, 60)
    # Batches after the first hold one entry per group in one ENTRY_SET record.
    victim = next(r for r in _records(path, 2) if r[1] == RecordType.ENTRY_SET)
    pstart, plen = victim[3], victim[4]
    damaged = _flip(path, 2, pstart + plen - 3)
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT, gc_ratio=1e9)
    try:
        [err] = engine.corruption_found()
        assert (err.segment, err.offset, err.groups, err.all_groups) == (
            segment_name(2),
            pstart - RECORD_HEADER,
            (1, 2, 3, 4),
            False,
        )
        assert sorted(engine.corrupted_groups()) == [1, 2, 3, 4]
    finally:
        engine.close()
    assert _segment_bytes(path, 2) == damaged


def test_damaged_batch_header_flags_every_group_and_reading_resumes_after_it(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "log")
    _fill(path, 60)
    batch_offsets = sorted({r[0] for r in _records(path, 2)})
    damaged_at = batch_offsets[1]
    _flip(path, 2, damaged_at + 6)
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT, gc_ratio=1e9)
    try:
        [err] = engine.corruption_found()
        assert (err.segment, err.offset, err.all_groups) == (segment_name(2), damaged_at, True)
        assert sorted(engine.corrupted_groups()) == [1, 2, 3, 4]
        # Only the damaged batch is missing: the log of each group stops right
        # before it (the next entries no longer follow on) and nothing is cut.
        lost = _batch_entries(path, 2, damaged_at)
        assert sorted(lost) == [1, 2, 3, 4]
        for g, index in lost.items():
            assert _entries_of(engine, g) == list(range(1, index))
        assert os.path.getsize(os.path.join(path, segment_name(2))) > damaged_at
    finally:
        engine.close()


def _batch_entries(path: str, seq: int, batch_offset: int) -> dict[int, int]:
    """Group -> index of the entry in the damaged batch (read with the byte restored)."""
    fixed = bytearray(_segment_bytes(path, seq))
    fixed[batch_offset + 6] ^= 0x5A
    pb = parse_batch(bytes(fixed), batch_offset, seq)
    assert pb.ok
    out = {}
    for rtype, group, pstart, _ in pb.records:
        if rtype == RecordType.ENTRIES:
            out[group] = decode_entry_terms(bytes(fixed), pstart)[0]
        elif rtype == RecordType.ENTRY_SET:
            gids, indexes, _terms = decode_entry_set(bytes(fixed), pstart)
            out.update(zip(gids, indexes, strict=True))
    return out


def test_an_incoming_snapshot_repairs_a_corrupt_group_for_good(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    _fill(path, 60)
    victim = next(r for r in _records(path, 1) if r[1] == RecordType.ENTRIES and r[2] == 2)
    _flip(path, 1, victim[3] + 20)
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT, gc_ratio=1e9)
    assert list(engine.corrupted_groups()) == [2]
    snap = Snapshot(SnapshotMetadata(ConfState(voters=(1, 2, 3)), 70, 2), b"from the leader")
    engine.write(WriteBatch([GroupWrite(2, snapshot=snap, hard_state=HardState(2, 1, 70))]))
    assert engine.corrupted_groups() == {}
    engine.close()
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT, gc_ratio=1e9)
    try:
        assert engine.corrupted_groups() == {}
        # The damage is still on disk and still found, but it no longer matters.
        assert [e.groups for e in engine.corruption_found()] == [(2,)]
        assert engine.storage(2).snapshot() == snap
        assert (engine.storage(2).first_index(), engine.storage(2).last_index()) == (71, 70)
    finally:
        engine.close()


def test_reading_a_damaged_old_entry_raises_corruption(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    _fill(path, 30)
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT, gc_ratio=1e9)
    try:
        victim = next(r for r in _records(path, 1) if r[1] == RecordType.ENTRIES and r[2] == 1)
        _flip(path, 1, victim[3] + 20)
        with pytest.raises(CorruptionError, match=segment_name(1)) as info:
            engine.storage(1).entries(1, 2)
        assert info.value.groups == (1,)
    finally:
        engine.close()


def test_torn_tail_of_the_last_segment_is_cut_and_not_reported(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    _fill(path, 5)
    name = os.path.join(path, segment_name(1))
    data = _segment_bytes(path, 1)
    last_batch = max(r[0] for r in _records(path, 1))
    end = parse_batch(data, last_batch, 1).end
    # A crash tore the last write: half of it reached the disk.
    torn = data[last_batch:end][: (end - last_batch) // 2]
    with open(name, "r+b") as f:
        f.seek(end)
        f.write(torn)
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT)
    try:
        assert engine.corruption_found() == []
        assert engine.torn_tails == [(segment_name(1), end)]
        assert _entries_of(engine, 1) == [1, 2, 3, 4, 5]
        engine.write(WriteBatch([GroupWrite(1, entries=[Entry(1, 6)])]))
        assert _entries_of(engine, 1) == [1, 2, 3, 4, 5, 6]
    finally:
        engine.close()
    assert os.path.getsize(name) >= end


def test_bad_batch_followed_by_a_sound_one_in_the_last_segment_is_corruption(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "log")
    _fill(path, 5)
    offsets = sorted({r[0] for r in _records(path, 1)})
    damaged = _flip(path, 1, offsets[2] + 40)
    engine = DurableLogEngine.open(path, segment_bytes=_SEGMENT)
    try:
        [err] = engine.corruption_found()
        # The damaged record header is the batch's first record.
        assert (err.segment, err.offset, err.all_groups) == (
            segment_name(1),
            offsets[2] + BATCH_HEADER,
            True,
        )
        assert engine.torn_tails == []
        assert sorted(engine.corrupted_groups()) == [1, 2, 3, 4]
        # Batch 3 cannot be read; the logs stop before it, batches 4 and 5 stay on disk.
        assert _entries_of(engine, 2) == [1, 2]
    finally:
        engine.close()
    assert _segment_bytes(path, 1) == damaged


def test_a_set_record_zeroed_by_a_torn_write_fails_its_whole_batch() -> None:
    builder = BatchBuilder()
    ents = [Entry(1, 7, data=b"a" * 40), Entry(2, 9, data=b"b" * 40)]
    off = builder.add(RecordType.ENTRY_SET, 0, entry_set_payload([3, 4], ents))
    buf, shift = builder.finish(5, 1)
    assert parse_batch(buf, 0, 5).ok
    # The sectors holding the payload never reached the disk: they read as zeros,
    # which also "checks out" as an empty list of group ids.
    torn = bytearray(buf)
    torn[shift + off : len(buf)] = bytes(len(buf) - shift - off)
    pb = parse_batch(bytes(torn), 0, 5)
    assert (pb.ok, pb.unknown, pb.records) == (False, True, [])
