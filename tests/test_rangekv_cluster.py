"""Range KV example end to end in one process: splits, routing, scans, CAS, concurrent writes."""

from __future__ import annotations

import random

import trio
import trio.testing

from examples.rangekv.commands import (
    AllocateRangeIds,
    CasOutcome,
    IdBlock,
    Refused,
    Split,
    SplitOutcome,
)
from examples.rangekv.descriptor import RangeDescriptor, check_tiling
from examples.rangekv.verify import verify_store
from examples.rangekv.wire import pack
from examples.rangekv.workload import Workload
from rangekv_support import assert_every_key_in_its_range, kv_cluster, wait_for


def _key(rng: random.Random) -> bytes:
    return f"{rng.getrandbits(32):08x}".encode()


async def test_bootstrap_makes_one_range_covering_every_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster() as c:
        whole = RangeDescriptor(2, b"", None, 0, (1, 2, 3))
        for host in c.hosts.values():
            assert host.directory.descriptors() == [whole]
            assert host.directory.next_range_id == 3
            assert host.ranges[2].descriptor == whole
        client = c.client()
        assert await client.get(b"anything") is None
        await client.put(b"anything", b"1")
        assert await client.get(b"anything") == b"1"


async def test_ranges_split_past_the_threshold_and_every_key_reads_from_its_range(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(5)
    async with kv_cluster(split_keys=8) as c:
        client = c.client()
        expected = {}
        for i in range(120):
            key = _key(rng)
            expected[key] = f"v{i}".encode()
            await client.put(key, expected[key])
        directory = c.hosts[1].directory
        await wait_for(
            lambda: all(len(sm.data) <= 8 for sm in c.hosts[1].ranges.values()),
            "every range at or under the threshold",
        )
        await wait_for(lambda: len(directory) == len(c.hosts[1].ranges), "directory up to date")
        assert len(directory) >= 120 // 8
        await wait_for(
            lambda: all(len(h.ranges) == len(directory) for h in c.hosts.values()),
            "every node hosting every range",
        )
        await trio.sleep(1)  # followers apply the last commands
        assert_every_key_in_its_range(c, expected)
        for key, value in expected.items():
            assert await client.get(key) == value
        stats = c.hosts[1].stats()
        assert stats["splits_recorded"] == len(directory) - 1
        assert stats["ranges_hosted"] == len(directory)


async def test_a_split_under_concurrent_writes_loses_no_acknowledged_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster() as c:
        client = c.client()
        acknowledged: dict[bytes, bytes] = {}
        done = trio.Event()

        async def writer(w: int) -> None:
            rng = random.Random(w)
            for i in range(60):
                key = _key(rng) + f".{w}".encode()
                await client.put(key, f"{w}-{i}".encode())
                acknowledged[key] = f"{w}-{i}".encode()

        async def splitter() -> None:
            splitter_client = c.client()
            outcomes = []
            for at in (b"8", b"4", b"c", b"2", b"6", b"a", b"e"):
                outcomes.append(await splitter_client.split(at, at))
                await trio.sleep(0.05)
            assert all(isinstance(o, SplitOutcome) for o in outcomes), outcomes
            done.set()

        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(writer, w)
            nursery.start_soon(splitter)
        assert done.is_set()
        await wait_for(lambda: len(c.hosts[1].directory) == 8, "eight ranges in the directory")
        await trio.sleep(1)
        assert len(acknowledged) == 480
        assert_every_key_in_its_range(c, acknowledged)
        assert dict(await client.scan()) == acknowledged


async def test_scan_crosses_range_boundaries_in_key_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster() as c:
        client = c.client()
        keys = [bytes([k]) * 2 for k in b"abcdefghijklmnop"]
        for k in keys:
            await client.put(k, k.upper())
        for at in (b"d", b"h", b"m"):
            assert isinstance(await client.split(at, at), SplitOutcome)
        await wait_for(lambda: len(c.hosts[1].directory) == 4, "four ranges")
        everything = [(k, k.upper()) for k in keys]
        assert await client.scan() == everything
        assert await client.scan(b"c", b"n") == everything[2:13]
        assert await client.scan(b"cc", None, limit=6) == everything[2:8]
        assert await client.scan(b"zz") == []
        assert await client.scan(b"e", b"e") == []


async def test_compare_and_set_across_ranges(autojump_clock: trio.testing.MockClock) -> None:
    async with kv_cluster() as c:
        client = c.client()
        assert await client.compare_and_set(b"a", None, b"1") == CasOutcome(True, b"1")
        assert await client.compare_and_set(b"a", None, b"2") == CasOutcome(False, b"1")
        assert await client.compare_and_set(b"a", b"9", b"2") == CasOutcome(False, b"1")
        await client.put(b"x", b"old")
        assert isinstance(await client.split(b"m", b"m"), SplitOutcome)
        assert await client.compare_and_set(b"x", b"old", b"new") == CasOutcome(True, b"new")
        assert await client.compare_and_set(b"a", b"1", None) == CasOutcome(True, None)
        assert await client.get(b"a") is None
        assert await client.get(b"x") == b"new"
        await client.delete(b"x")
        assert await client.compare_and_set(b"x", None, b"again") == CasOutcome(True, b"again")


async def test_a_split_request_outside_or_at_the_start_of_the_range_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster() as c:
        client = c.client()
        assert isinstance(await client.split(b"a", b""), Refused)
        assert isinstance(await client.split(b"a"), Refused)  # no keys: no middle key
        await client.put(b"a", b"1")
        await client.put(b"b", b"1")
        outcome = await client.split(b"a")
        assert outcome == SplitOutcome(
            RangeDescriptor(2, b"", b"b", 1, (1, 2, 3)),
            RangeDescriptor(3, b"b", None, 0, (1, 2, 3)),
        )
        assert isinstance(await client.split(b"c", b"a"), Refused)


async def test_directory_tiles_and_matches_every_range_after_many_splits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(9)
    async with kv_cluster(split_keys=4) as c:
        client = c.client()
        for _ in range(100):
            await client.put(_key(rng), b"v")
        directory = c.hosts[1].directory
        await wait_for(
            lambda: (
                len(directory) == len(c.hosts[1].ranges)
                and all(sm.ready and not sm.children for sm in c.hosts[1].ranges.values())
            ),
            "splits settled",
        )
        ranges = await client.ranges()
        check_tiling(ranges)
        assert len(ranges) >= 100 // 4
        assert [d.range_id for d in ranges] == [d.range_id for d in directory.descriptors()]
        for desc in ranges:
            assert c.hosts[1].ranges[desc.range_id].descriptor == desc
        ids = sorted(d.range_id for d in ranges)
        assert ids[0] == 2 and len(set(ids)) == len(ids)


async def test_mixed_workload_while_ranges_split_passes_every_check(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster(split_keys=8) as c:
        workload = Workload(c.client(), workers=16, seed=4)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(workload.run)
            await wait_for(lambda: len(c.hosts[1].directory) >= 30, "30 ranges", timeout=120)
            workload.stop()
        assert workload.mismatches == []
        counts = workload.counts
        assert min(counts.puts, counts.gets, counts.deletes, counts.cas, counts.scans) > 0
        report = await verify_store(c.link, c.client(), workload.expected())
        assert report.ranges >= 30
        assert report.keys == len(workload.expected())
        assert report.replicas_checked == 3 * report.ranges
        assert report.reads == report.keys
        assert_every_key_in_its_range(c, workload.expected())


async def test_a_split_the_directory_missed_is_recorded_by_the_ranges_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster() as c:
        client = c.client()
        for k in (b"a", b"k", b"q", b"z"):
            await client.put(k, k)
        node = c.hosts[1].node
        # Split the range the way a leader would, but never tell the directory
        # (as if the proposing node died right after the split applied).
        block = await node.propose(1, pack(AllocateRangeIds(1)))
        assert isinstance(block, IdBlock)
        outcome = await node.propose(2, pack(Split(b"m", block.first, 0, 1)))
        assert isinstance(outcome, SplitOutcome)
        assert len(c.hosts[1].directory) == 1
        # Clients still find the moved keys through the range's answer...
        assert await client.get(b"q") == b"q"
        # ...and the leader's next maintenance pass records the split.
        await wait_for(lambda: len(c.hosts[1].directory) == 2, "the split recorded", timeout=5)
        assert c.hosts[1].directory.descriptors() == [outcome.left, outcome.right]
        assert c.hosts[1].counters.splits_recorded == 1
        assert await c.client().get(b"z") == b"z"
