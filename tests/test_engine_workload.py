"""Random log-engine workloads and log snapshots shared by the engine's randomized tests.

A workload step is chosen against a *reference* engine (the SQLite one), so
it is always valid for the group's current log: appends after the last entry,
conflicting appends that truncate a suffix, hard and conf states, incoming
snapshots, snapshots of the node's own log with compactions, removals.
"""

from __future__ import annotations

import random
from typing import Any

from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import (
    EMPTY_SNAPSHOT,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
)
from storage.sqlite_log import SqliteLogEngine

#: What a group's persisted state looks like, compared between engines.
GroupState = tuple[int, int, tuple[Entry, ...], tuple[HardState, ConfState], Snapshot]
_EMPTY: GroupState = (1, 0, (), (HardState(), ConfState()), EMPTY_SNAPSHOT)

_DATA_SIZES = (0, 1, 7, 100, 700)


def log_state(engine: Any) -> dict[int, GroupState]:
    """Every non-empty group's full persisted state, read through its Storage view."""
    out: dict[int, GroupState] = {}
    for gid in engine.group_ids():
        v = engine.storage(gid)
        first, last = v.first_index(), v.last_index()
        ents = tuple(v.entries(first, last + 1)) if last >= first else ()
        st = (first, v.term(first - 1), ents, v.initial_state(), v.snapshot())
        if st != _EMPTY:
            out[gid] = st
    return out


def _data(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice(_DATA_SIZES))


def random_group_write(rng: random.Random, ref: SqliteLogEngine, gid: int) -> GroupWrite:
    """A valid random write for group ``gid`` given the reference's current log."""
    v = ref.storage(gid)
    first, last = v.first_index(), v.last_index()
    snap_index = v.snapshot().metadata.index
    term = max(v.initial_state()[0].term, v.term(last), 1)
    gw = GroupWrite(gid)
    dummy, dummy_term = first - 1, v.term(first - 1)
    terms: dict[int, int] = {}
    if rng.random() < 0.06:
        index = max(last, snap_index) + rng.randint(1, 4)
        term += rng.randint(0, 1)
        cs = ConfState(voters=tuple(rng.sample(range(1, 6), rng.randint(1, 3))))
        gw.snapshot = Snapshot(SnapshotMetadata(cs, index, term), _data(rng))
        dummy = last = snap_index = index
        dummy_term = term
    if rng.random() < 0.85:
        if last > dummy and rng.random() < 0.25:
            start = rng.randint(dummy + 1, last)
            term += 1
        else:
            start = last + 1
        kinds = (EntryType.NORMAL, EntryType.NORMAL, EntryType.CONF_CHANGE)
        gw.entries = [
            Entry(term, i, rng.choice(kinds), _data(rng))
            for i in range(start, start + rng.randint(1, 6))
        ]
        terms = {e.index: e.term for e in gw.entries}
        last = gw.entries[-1].index
    if rng.random() < 0.5:
        gw.hard_state = HardState(term, rng.randint(0, 3), rng.randint(0, last))
    if rng.random() < 0.1:
        gw.conf_state = ConfState(voters=tuple(rng.sample(range(1, 6), rng.randint(1, 3))))
    if rng.random() < 0.2 and last > max(dummy, snap_index):
        index = rng.randint(max(dummy, snap_index) + 1, last)
        t = terms.get(index) or v.term(index)
        gw.created_snapshot = Snapshot(
            SnapshotMetadata(ConfState(voters=(1,)), index, t), _data(rng)
        )
        gw.compact_to = max(0, index - rng.randint(0, 2))
    elif rng.random() < 0.1 and last > dummy:
        gw.compact_to = rng.randint(dummy + 1, last)
    _ = dummy_term
    return gw


def random_step(rng: random.Random, ref: SqliteLogEngine, groups: int) -> WriteBatch | int:
    """A random write batch for some of ``groups`` groups, or a group id to remove."""
    if rng.random() < 0.03:
        return rng.randint(1, groups)
    chosen = rng.sample(range(1, groups + 1), rng.randint(1, groups))
    return WriteBatch([random_group_write(rng, ref, gid) for gid in chosen])


def apply_step(engine: Any, step: WriteBatch | int) -> None:
    """Apply a step from :func:`random_step` to an engine."""
    if isinstance(step, int):
        engine.remove_group(step)
    else:
        engine.write(step)


def test_random_steps_are_valid_for_the_reference_and_change_its_log() -> None:
    rng = random.Random(7)
    ref = SqliteLogEngine.open(":memory:")
    states = set()
    for _ in range(200):
        apply_step(ref, random_step(rng, ref, 3))
        states.add(repr(log_state(ref)))
    assert len(states) > 150
    assert ref.writes == ref.syncs == 200


def test_log_state_leaves_out_groups_without_persisted_state() -> None:
    ref = SqliteLogEngine.open(":memory:")
    ref.write(WriteBatch([GroupWrite(1), GroupWrite(2, entries=[Entry(1, 1)])]))
    assert list(log_state(ref)) == [2]
    assert log_state(ref)[2] == (1, 0, (Entry(1, 1),), (HardState(), ConfState()), EMPTY_SNAPSHOT)
