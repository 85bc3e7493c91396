"""Range KV example: moving a range's replica to another node, and restarting every node."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from examples.rangekv.commands import SplitOutcome
from examples.rangekv.host import RangeHost
from multiraft import GroupRemovedError
from rangekv_support import assert_every_key_in_its_range, kv_cluster, wait_for
from storage import MemoryLogEngine

KEYS = [bytes([c]) * 3 for c in b"abcdefghijklmnopqrstuvwxyz"]


@pytest.mark.parametrize("from_node", [3, 1])
async def test_moving_a_replica_brings_the_data_to_the_new_node_by_snapshot(
    autojump_clock: trio.testing.MockClock, from_node: int
) -> None:
    async with kv_cluster(
        (1, 2, 3, 4), replicas=(1, 2, 3), snapshot_entries=5, snapshot_keep_entries=0
    ) as c:
        client = c.client()
        for k in KEYS:
            await client.put(k, k.upper())
        assert c.hosts[1].node.leader_of(2) == 1
        after = await client.move_replica(2, from_node=from_node, to_node=4)
        kept = tuple(sorted({1, 2, 3, 4} - {from_node}))
        assert after.replicas == kept
        mover = c.hosts[4]
        await wait_for(
            lambda: 2 in mover.ranges and mover.ranges[2].ready and len(mover.ranges[2].data) == 26,
            "node 4 holding range 2",
        )
        assert mover.node.stats()["snapshots_restored"] == 1
        assert mover.ranges[2].descriptor is not None
        assert mover.ranges[2].descriptor.replicas == kept
        gone = c.hosts[from_node]
        assert 2 not in gone.ranges
        assert 2 not in gone.node.group_ids()
        with pytest.raises(GroupRemovedError):
            gone.node.leader_of(2)
        leader = c.hosts[kept[0]].node.leader_of(2)
        assert leader in kept
        assert set(c.hosts[leader].node.status(2).progress) == set(kept)
        # The range keeps serving, and its next split lands on the new replica set.
        await client.put(b"zzz", b"after the move")
        assert await client.get(b"zzz") == b"after the move"
        outcome = await client.split(b"a", b"n")
        assert isinstance(outcome, SplitOutcome)
        assert outcome.right.replicas == kept
        new = outcome.right.range_id
        await wait_for(
            lambda: all(new in c.hosts[i].ranges and c.hosts[i].ranges[new].ready for i in kept),
            "the split-off range on the new replicas",
        )
        assert new not in gone.ranges
        await trio.sleep(1)
        expected = {k: k.upper() for k in KEYS} | {b"zzz": b"after the move"}
        assert_every_key_in_its_range(c, expected)


def _settled(hosts: dict[int, RangeHost]) -> bool:
    return all(
        h.directory.ready
        and len(h.ranges) == len(h.directory)
        and all(sm.ready and not sm.children for sm in h.ranges.values())
        for h in hosts.values()
    )


async def test_a_restarted_cluster_recovers_every_range_from_its_logs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engines = {i: MemoryLogEngine() for i in (1, 2, 3)}
    rng = random.Random(3)
    expected: dict[bytes, bytes] = {}
    async with kv_cluster(split_keys=4, engines=engines) as c:
        client = c.client()
        for i in range(60):
            key = f"{rng.getrandbits(24):06x}".encode()
            expected[key] = str(i).encode()
            await client.put(key, expected[key])
        await wait_for(lambda: _settled(c.hosts), "splits settled on every node")
        before = dict(c.hosts)
    ranges_before = before[1].directory.descriptors()
    assert len(ranges_before) >= 60 // 4
    async with kv_cluster(split_keys=4, engines=engines, bootstrap=False) as c:
        await wait_for(lambda: _settled(c.hosts), "every range recovered on every node")
        ranges_after = c.hosts[1].directory.descriptors()
        assert ranges_after == ranges_before
        await trio.sleep(1)
        assert_every_key_in_its_range(c, expected)
        client = c.client()
        for key, value in expected.items():
            assert await client.get(key) == value
