"""Range KV example: the range a split creates elects its leader at once, and keeps it.

The replica whose node proposed the split campaigns when it hosts the new group,
so the new range has a leader in one election (term 2) without any election
timeout; a replica that applies the split late finds the new group's early
messages held for it (BUFFER policy), follows the leader elected meanwhile,
and disturbs nothing: no other leader, no new term.
"""

from __future__ import annotations

import trio
import trio.testing

from examples.rangekv.commands import InitRange, SplitOutcome
from examples.rangekv.host import RangeHost, RangeSettings
from multiraft import EventSubscription, LeaderChanged
from rangekv_support import kv_cluster, wait_for

ELECTION_TICKS = 10
KEYS = [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz"]


class LateHost(RangeHost):
    """A host that creates split-made ranges only once ``gate`` is set."""

    def __init__(self, node_id: int, settings: RangeSettings | None = None) -> None:
        super().__init__(node_id, settings)
        self.gate = trio.Event()

    async def create_split_replica(self, child: InitRange, campaign: bool) -> None:
        await self.gate.wait()
        await super().create_split_replica(child, campaign)


def _late_node_3(node_id: int, settings: RangeSettings | None) -> RangeHost:
    return LateHost(node_id, settings) if node_id == 3 else RangeHost(node_id, settings)


def _leader_events(events: list[object], group_id: int) -> list[tuple[int | None, int]]:
    return [
        (e.leader, e.term)
        for e in events
        if isinstance(e, LeaderChanged) and e.group_id == group_id
    ]


async def _pump(subscription: EventSubscription, out: list[object]) -> None:
    async for event in subscription:
        out.append(event)


async def _record_events(
    hosts: dict[int, RangeHost],
    into: dict[int, list[object]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record every event of every node from now on into ``into[node_id]``."""
    async with trio.open_nursery() as nursery:
        for node_id, host in hosts.items():
            into[node_id] = []
            nursery.start_soon(_pump, host.node.events(), into[node_id])
        task_status.started()


async def test_new_range_has_a_leader_in_one_election_without_an_election_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster(election_ticks=ELECTION_TICKS) as c, trio.open_nursery() as nursery:
        client = c.client()
        for k in KEYS:
            await client.put(k, k)
        events: dict[int, list[object]] = {}
        await nursery.start(_record_events, c.hosts, events)
        node1 = c.hosts[1].node
        ticks_before = node1.stats()["ticks"]
        started = trio.current_time()
        outcome = await client.split(b"a", b"m")
        assert isinstance(outcome, SplitOutcome)
        new = outcome.right.range_id
        await wait_for(
            lambda: all(
                new in h.ranges and h.node.leader_of(new) == 1 and h.ranges[new].ready
                for h in c.hosts.values()
            ),
            "new range led by node 1 and initialized everywhere",
        )
        ticks = node1.stats()["ticks"] - ticks_before
        assert ticks <= 1, ticks  # the election took no timeout at all
        assert trio.current_time() - started < ELECTION_TICKS * node1.config.tick_interval
        for node_id, host in c.hosts.items():
            assert host.node.status(new).hard_state.term == 2, node_id
            assert _leader_events(events[node_id], new) == [(1, 2)], node_id
            assert dict(host.ranges[new].data) == {k: k for k in KEYS if k >= b"m"}
        assert c.hosts[1].counters.ranges_created == 1
        nursery.cancel_scope.cancel()


async def test_a_replica_applying_the_split_late_follows_the_leader_without_disruption(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        kv_cluster(election_ticks=ELECTION_TICKS, host_factory=_late_node_3) as c,
        trio.open_nursery() as nursery,
    ):
        client = c.client()
        for k in KEYS:
            await client.put(k, k)
        events: dict[int, list[object]] = {}
        await nursery.start(_record_events, c.hosts, events)
        late = c.hosts[3]
        assert isinstance(late, LateHost)
        outcome = await client.split(b"a", b"m")
        assert isinstance(outcome, SplitOutcome)
        new = outcome.right.range_id
        await wait_for(
            lambda: (
                all(c.hosts[i].ranges.get(new) is not None for i in (1, 2))
                and c.hosts[1].ranges[new].ready
            ),
            "new range initialized on nodes 1 and 2",
        )
        # Node 3 applied the split but has not hosted the new group for 3 s (at least
        # 1.5 election timeouts); nodes 1 and 2 carry on alone.
        await client.put(b"zz", b"written without node 3")
        await trio.sleep(3.0)
        assert new not in late.node.group_ids()
        assert late.node.stats()["unknown_groups_buffered"] == 1
        assert late.node.stats()["unknown_messages_buffered"] >= 2
        term = c.hosts[1].node.status(new).hard_state.term
        assert term == 2
        late.gate.set()
        await wait_for(
            lambda: (
                new in late.ranges
                and late.node.leader_of(new) == 1
                and late.ranges[new].ready
                and b"zz" in late.ranges[new].data
            ),
            "node 3 following node 1 with the new range's data",
        )
        await trio.sleep(3.0)  # long enough for any election it might start to show
        for node_id, host in c.hosts.items():
            status = host.node.status(new)
            assert status.hard_state.term == term, node_id
            assert status.soft_state.lead == 1, node_id
            assert _leader_events(events[node_id], new) == [(1, term)], node_id
        assert late.node.stats()["unknown_groups_buffered"] == 0
        assert dict(late.ranges[new].data) == dict(c.hosts[1].ranges[new].data)
        assert await client.get(b"zz") == b"written without node 3"
        nursery.cancel_scope.cancel()
