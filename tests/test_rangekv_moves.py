"""Range KV example: replica moves are recoverable, strays are collected, founders rejoin.

A move is recorded in the range and the directory first and carried out by the
range's leader, so a move whose last step failed (or whose client went away) is
finished on a later maintenance pass; a replica the directory no longer lists
removes itself; a founding replica that never created its range recreates it
with the range's bootstrap membership.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import trio
import trio.testing

from examples.rangekv.commands import InitRange, Refused, SplitOutcome
from examples.rangekv.directory import Placement
from examples.rangekv.host import RangeHost, RangeSettings
from examples.rangekv.local import LocalCluster
from examples.rangekv.placement import ReplicaKeeper, members
from examples.rangekv.protocol import (
    DropReplicaRequest,
    MoveReplicaRequest,
    NotHosted,
    Ok,
    RangesReply,
    RangesRequest,
    TransferLeaderRequest,
)
from multiraft import GroupRemovedError, StateMachine
from multiraft.raft import ConfChange, ConfChangeType
from rangekv_support import kv_cluster, wait_for

KEYS = [bytes([c]) * 2 for c in b"abcdefghijklmnop"]
RANGE = 2


def _directories_list(c: LocalCluster, range_id: int, replicas: tuple[int, ...]) -> bool:
    return all(c.hosts[i].directory.by_id[range_id].replicas == replicas for i in (1, 2, 3))


def _membership(c: LocalCluster, node_id: int, range_id: int) -> set[int]:
    return members(c.hosts[node_id].node.membership(range_id))


def _settled(c: LocalCluster, replicas: tuple[int, ...], gone: int) -> bool:
    return (
        _directories_list(c, RANGE, replicas)
        and all(_membership(c, i, RANGE) == set(replicas) for i in replicas)
        and RANGE not in c.hosts[gone].node.group_ids()
    )


def _assert_tombstoned(host: RangeHost, range_id: int) -> None:
    assert range_id not in host.ranges
    assert range_id not in host.node.group_ids()
    with pytest.raises(GroupRemovedError):
        host.node.leader_of(range_id)


async def test_a_move_whose_final_directory_update_fails_is_finished_by_the_leader(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = ReplicaKeeper.record
    refused: list[tuple[int, tuple[int, ...], int]] = []

    async def fail_settled_once(
        self: ReplicaKeeper, range_id: int, replicas: tuple[int, ...], version: int
    ) -> bool:
        # Version 2 is the membership the move ended with: its first update fails.
        if version == 2 and not refused:
            refused.append((range_id, replicas, version))
            return False
        return await record(self, range_id, replicas, version)

    monkeypatch.setattr(ReplicaKeeper, "record", fail_settled_once)
    async with kv_cluster((1, 2, 3, 4), replicas=(1, 2, 3)) as c:
        client = c.client()
        for k in KEYS:
            await client.put(k, k.upper())
        leader = c.hosts[1].node.leader_of(RANGE)
        assert leader == 1
        # The mover records the move and goes away: no client finishes anything.
        assert await c.link.call(leader, MoveReplicaRequest(RANGE, 3, 4)) == Ok()
        # Recorded in the directory (applied here, where it was proposed) before any step.
        assert c.hosts[1].directory.by_id[RANGE].replicas == (1, 2, 3, 4)
        assert _membership(c, 1, RANGE) == {1, 2, 3}
        await wait_for(lambda: _settled(c, (1, 2, 4), gone=3), "the move settled and recorded")
        assert refused == [(RANGE, (1, 2, 4), 2)]
        sm = c.hosts[1].ranges[RANGE]
        assert sm.move is None
        assert sm.replicas_version == 2
        assert sm.descriptor is not None and sm.descriptor.replicas == (1, 2, 4)
        placement = c.hosts[1].directory.placement(RANGE)
        assert placement is not None and (placement.version, placement.founders) == (2, (1, 2, 3))
        _assert_tombstoned(c.hosts[3], RANGE)
        assert c.hosts[3].counters.replicas_collected == 1
        assert c.hosts[4].counters.ranges_joined == 1
        assert c.hosts[1].counters.moves_started == 1
        assert c.hosts[1].counters.move_steps == 2  # the addition and the removal
        # A fresh client routes by the repaired directory to the new replicas.
        fresh = c.client()
        assert (await fresh.ranges())[0].replicas == (1, 2, 4)
        await fresh.put(b"zz", b"after")
        assert await fresh.get(b"zz") == b"after"
        assert await fresh.get(b"cc") == b"CC"
        await wait_for(
            lambda: all(c.hosts[i].ranges[RANGE].data.get(b"zz") == b"after" for i in (1, 2, 4)),
            "the write on every replica",
        )
        # Asking a listed replica to drop itself changes nothing.
        assert isinstance(await c.link.call(2, DropReplicaRequest(RANGE)), Refused)
        assert RANGE in c.hosts[2].node.group_ids()


async def test_a_move_stopped_after_the_addition_is_finished_by_the_next_leader(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with kv_cluster((1, 2, 3, 4), replicas=(1, 2, 3)) as c:
        client = c.client()
        for k in KEYS:
            await client.put(k, k.upper())
        first = c.hosts[1]
        assert first.node.leader_of(RANGE) == 1
        # Node 1 never sees node 4 caught up: it adds node 4 and goes no further.
        monkeypatch.setattr(first.keeper, "_caught_up", lambda *_: False)
        assert await c.link.call(1, MoveReplicaRequest(RANGE, 3, 4)) == Ok()
        await wait_for(lambda: _membership(c, 1, RANGE) == {1, 2, 3, 4}, "node 4 added")
        await trio.sleep(5)
        assert _membership(c, 1, RANGE) == {1, 2, 3, 4}
        assert first.ranges[RANGE].move is not None
        assert first.directory.by_id[RANGE].replicas == (1, 2, 3, 4)
        assert first.counters.move_steps == 1
        assert await c.link.call(1, TransferLeaderRequest(RANGE, 2)) == Ok()
        await wait_for(lambda: _settled(c, (1, 2, 4), gone=3), "the next leader finishing")
        second = c.hosts[2]
        assert second.node.leader_of(RANGE) == 2
        assert second.counters.move_steps == 1  # the removal
        assert second.counters.replicas_settled == 1
        assert first.counters.replicas_settled == 0
        assert second.ranges[RANGE].move is None
        _assert_tombstoned(c.hosts[3], RANGE)
        assert await c.client().get(b"pp") == b"PP"


async def test_a_leader_that_applied_its_own_removal_hands_over_and_the_range_settles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster() as c:
        client = c.client()
        for k in KEYS:
            await client.put(k, k.upper())
        first = c.hosts[1]
        assert first.node.leader_of(RANGE) == 1
        # A removal made around the range store (no move recorded): the leader
        # removes itself and, as in etcd, keeps leading a group it is no member of.
        await first.node.change_membership(RANGE, ConfChange(ConfChangeType.REMOVE_NODE, 1))
        assert _membership(c, 1, RANGE) == {2, 3}
        # Without the hand-over node 1 would lead (and refuse every proposal) forever.
        await wait_for(lambda: _settled(c, (2, 3), gone=1), "the range settled on (2, 3)")
        leader = c.hosts[2].node.leader_of(RANGE)
        assert leader in (2, 3)
        assert c.hosts[leader].counters.replicas_settled == 1
        assert first.counters.replicas_settled == 0
        sm = c.hosts[2].ranges[RANGE]
        assert sm.move is None
        assert sm.replicas_version == 1
        placement = c.hosts[2].directory.placement(RANGE)
        assert placement is not None and placement.version == 1
        _assert_tombstoned(first, RANGE)
        await client.put(b"zz", b"z")
        assert await c.client().get(b"zz") == b"z"


async def test_a_removed_replica_that_missed_its_removal_is_collected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster((1, 2, 3, 4), replicas=(1, 2, 3)) as c:
        client = c.client()
        for k in KEYS:
            await client.put(k, k.upper())
        c.network.isolate(3)
        after = await client.move_replica(RANGE, from_node=3, to_node=4)
        assert after.replicas == (1, 2, 4)
        # Cut off, node 3 never learned it was removed: it still counts itself in.
        assert _membership(c, 3, RANGE) == {1, 2, 3}
        assert RANGE in c.hosts[3].node.group_ids()
        c.network.heal()
        await wait_for(
            lambda: RANGE not in c.hosts[3].node.group_ids(), "node 3 collecting its replica"
        )
        _assert_tombstoned(c.hosts[3], RANGE)
        assert _settled(c, (1, 2, 4), gone=3)
        assert await client.get(b"aa") == b"AA"


class ForgetfulHost(RangeHost):
    """A host that never creates the ranges splits make (it learns of them otherwise)."""

    async def create_split_replica(self, child: InitRange, campaign: bool) -> None:
        return


def _forgetful_node_3(node_id: int, settings: RangeSettings | None) -> RangeHost:
    return ForgetfulHost(node_id, settings) if node_id == 3 else RangeHost(node_id, settings)


async def test_a_founding_replica_missing_its_range_recreates_it_with_the_bootstrap_membership(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with kv_cluster(host_factory=_forgetful_node_3) as c:
        client = c.client()
        for k in KEYS:
            await client.put(k, k.upper())
        node3 = c.hosts[3].node
        created: list[tuple[int, tuple[int, ...], bool]] = []
        create_group = node3.create_group

        async def recording(
            group_id: int,
            replicas: Iterable[int],
            *,
            state_machine: StateMachine,
            campaign: bool = False,
            join: bool = False,
        ) -> None:
            created.append((group_id, tuple(replicas), join))
            await create_group(
                group_id, replicas, state_machine=state_machine, campaign=campaign, join=join
            )

        monkeypatch.setattr(node3, "create_group", recording)
        outcome = await client.split(b"a", b"h")
        assert isinstance(outcome, SplitOutcome)
        new = outcome.right.range_id
        await wait_for(
            lambda: new in c.hosts[3].ranges and c.hosts[3].ranges[new].ready,
            "node 3 hosting the split-off range",
        )
        assert created == [(new, (1, 2, 3), False)]
        assert c.hosts[3].counters.ranges_joined == 1
        assert c.hosts[3].counters.ranges_created == 0
        assert _membership(c, 3, new) == {1, 2, 3}
        held = dict(c.hosts[3].ranges[new].data)
        assert held == {k: k.upper() for k in KEYS if k >= b"h"}


async def test_a_node_without_the_directory_reads_it_through_its_peers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster((1, 2, 3, 4), replicas=(1, 2, 3)) as c:
        whole = c.hosts[1].directory.descriptors()
        expected = RangesReply(tuple(whole), (Placement(RANGE, 0, (1, 2, 3)),))
        # Without a barrier only a directory replica answers, from what it applied.
        assert await c.link.call(4, RangesRequest(consistent=False)) == NotHosted(1)
        assert await c.link.call(2, RangesRequest(consistent=False)) == expected
        keeper = c.hosts[4].keeper
        for consistent in (True, False):
            view = await keeper.read_directory(consistent=consistent)
            assert view is not None
            assert view.ranges == {RANGE: whole[0]}
            assert view.placements == {RANGE: Placement(RANGE, 0, (1, 2, 3))}
        assert keeper.founders(RANGE) == ()
        assert c.hosts[2].keeper.founders(RANGE) == (1, 2, 3)
