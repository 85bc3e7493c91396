"""Replicas made ahead of hosting (GroupTable.reserve) are the ones hosted."""

from __future__ import annotations

import pytest

from multiraft import groups
from multiraft.bench.groups_bench import _CounterMachine
from multiraft.config import NodeConfig
from multiraft.counters import NodeCounters
from multiraft.events import EventHub
from multiraft.group_spec import GroupSpec
from multiraft.groups import GroupTable
from multiraft.raft.types import ConfState, StateType
from storage.memory_engine import MemoryLogEngine


def _table() -> tuple[GroupTable, MemoryLogEngine]:
    config = NodeConfig(1)
    engine = MemoryLogEngine()
    return GroupTable(config, engine, EventHub(config.event_buffer), NodeCounters()), engine


def test_hosting_a_reserved_group_uses_its_reserved_replica_and_storage() -> None:
    table, engine = _table()
    sms = {g: _CounterMachine() for g in (5, 6)}
    table.reserve([GroupSpec(g, (1, 2, 3), sms[g]) for g in (5, 6)])
    reserved = dict(table._reserved)
    assert [r.group_id for r in reserved.values()] == [5, 6]
    assert all(r.storage is engine.storage(g) for g, r in reserved.items())
    assert reserved[5].dormant is not None  # no raft member yet
    r5 = table.host(5, sms[5], [1, 2, 3], lazily=False)
    assert r5 is reserved[5] and table.replicas[5] is r5
    assert r5.dormant is None and r5.conf_state == ConfState(voters=(1, 2, 3))
    assert (r5.rawnode.raft.state, r5.conf_index, r5.applied) == (StateType.FOLLOWER, 3, 3)
    assert list(table._reserved) == [6]
    table.host(6, sms[6], [1, 2, 3], lazily=False)
    assert table._reserved == {}


def test_a_reserved_replica_is_not_used_for_another_state_machine() -> None:
    table, _ = _table()
    table.reserve([GroupSpec(5, (1, 2, 3), _CounterMachine())])
    reserved = table._reserved[5]
    other = _CounterMachine()
    r = table.host(5, other, [1, 2, 3], lazily=False)
    assert r is not reserved and r.state_machine is other
    assert table._reserved == {}


def test_a_new_reservation_replaces_what_was_not_hosted() -> None:
    table, _ = _table()
    table.reserve([GroupSpec(g, (1, 2, 3), _CounterMachine()) for g in (1, 2)])
    table.reserve([GroupSpec(3, (1, 2, 3), _CounterMachine())])
    assert list(table._reserved) == [3]


def test_a_replica_is_given_its_raft_member_once() -> None:
    table, _ = _table()
    sm = _CounterMachine()
    table.reserve([GroupSpec(5, (1, 2, 3), sm)])
    reserved = table._reserved[5]
    r = table.host(5, sm, [1, 2, 3], lazily=False)
    with pytest.raises(AssertionError, match="already has its raft member"):
        reserved.start(r.rawnode, r.conf_state)


def test_replicas_are_reserved_a_chunk_at_a_time_as_they_are_hosted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(groups, "RESERVE_CHUNK", 2)
    table, _ = _table()
    sms = {g: _CounterMachine() for g in range(5)}
    table.reserve([GroupSpec(g, (1, 2, 3), sms[g]) for g in range(5)])
    assert list(table._reserved) == [0, 1]
    left = []
    seen_reserved = []
    for g in range(5):
        before = dict(table._reserved)
        r = table.host(g, sms[g], [1, 2, 3], lazily=False)
        assert r.state_machine is sms[g] and r.dormant is None
        if g in before:
            assert r is before[g]
            seen_reserved.append(g)
        left.append(list(table._reserved))
    assert seen_reserved == [0, 1, 3]
    # The next chunk is made when the first of its groups is hosted.
    assert left == [[1], [], [3], [], []]
    assert len(table.replicas) == 5 and table._to_reserve == ()
