"""Range KV example: a range led by a node without a directory replica splits and records splits.

The directory (group 1) lives on the three bootstrap nodes; a replica move can
put a range's leadership on a node outside them. That leader reaches the
directory through its peers: it reserves range ids, checks the recorded
generation and records the two halves of a split there, and it finishes a
split whose record was interrupted (the split applied in the range, the
proposer gone before telling the directory). Simulator seeds 64 and 75 (five
nodes) were such ranges: a split nobody could record, replicas at generation 2
and the directory at 1 for good.
"""

from __future__ import annotations

import trio
import trio.testing

from examples.rangekv.commands import (
    AllocateRangeIds,
    IdBlock,
    InitDirectory,
    Refused,
    Split,
    SplitOutcome,
)
from examples.rangekv.descriptor import DIRECTORY_ID, RangeDescriptor
from examples.rangekv.directory import Placement
from examples.rangekv.local import LocalCluster
from examples.rangekv.placement import members
from examples.rangekv.protocol import (
    DirectoryCommandRequest,
    NotHosted,
    Ok,
    SplitRequest,
    TransferLeaderRequest,
)
from examples.rangekv.wire import pack
from rangekv_support import kv_cluster, wait_for

KEYS = [bytes([c]) * 2 for c in b"abcdefghijklmnop"]
RANGE = 2
#: The first id the directory hands out after bootstrap (1: itself, 2: the first range).
NEXT_ID = 3
#: Range 2's replicas once its replica on node 3 moved to node 4.
MOVED = (1, 2, 4)


def _directories(c: LocalCluster) -> list[list[RangeDescriptor]]:
    return [c.hosts[i].directory.descriptors() for i in (1, 2, 3)]


async def _range_led_by_node_4(c: LocalCluster) -> None:
    """Keys a..p in range 2, its replicas moved to nodes 1, 2, 4 and node 4 leading it."""
    client = c.client()
    for k in KEYS:
        await client.put(k, k.upper())
    await client.move_replica(RANGE, 3, 4)
    await wait_for(
        lambda: (
            all(members(c.hosts[i].node.membership(RANGE)) == set(MOVED) for i in MOVED)
            and all(d[0].replicas == MOVED for d in _directories(c))
        ),
        "the move settled",
    )
    assert await c.link.call(1, TransferLeaderRequest(RANGE, 4)) == Ok()
    await wait_for(lambda: c.hosts[4].node.leader_of(RANGE) == 4, "node 4 leading range 2")
    assert not c.hosts[4].directory.ready
    assert _directories(c) == [[RangeDescriptor(RANGE, b"", None, 0, MOVED)]] * 3


def _assert_split_recorded(c: LocalCluster, recorder: int) -> None:
    left = RangeDescriptor(RANGE, b"", b"hh", 1, MOVED)
    right = RangeDescriptor(NEXT_ID, b"hh", None, 0, MOVED)
    assert _directories(c) == [[left, right]] * 3
    for i in (1, 2, 3):
        assert c.hosts[i].directory.placement(NEXT_ID) == Placement(NEXT_ID, 0, MOVED)
    for i in MOVED:
        assert c.hosts[i].ranges[RANGE].descriptor == left
    assert {i: c.hosts[i].counters.splits_recorded for i in c.hosts} == {
        i: int(i == recorder) for i in c.hosts
    }


async def test_a_leader_without_a_directory_replica_splits_and_records_both_halves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster((1, 2, 3, 4), replicas=(1, 2, 3)) as c:
        await _range_led_by_node_4(c)
        outcome = await c.link.call(4, SplitRequest(RANGE, b"hh"))
        assert outcome == SplitOutcome(
            RangeDescriptor(RANGE, b"", b"hh", 1, MOVED),
            RangeDescriptor(NEXT_ID, b"hh", None, 0, MOVED),
        )
        # Recorded through a peer, applied there before the answer; everywhere soon.
        await wait_for(lambda: all(len(d) == 2 for d in _directories(c)), "the split recorded")
        _assert_split_recorded(c, recorder=4)
        assert c.hosts[4].counters.splits_proposed == 1
        await wait_for(
            lambda: all(c.hosts[i]._ready(NEXT_ID) for i in MOVED), "the new range initialized"
        )
        fresh = c.client()
        assert await fresh.get(b"pp") == b"PP"
        assert await fresh.get(b"aa") == b"AA"


async def test_a_split_whose_record_was_interrupted_is_recorded_by_a_leader_without_the_directory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster((1, 2, 3, 4), replicas=(1, 2, 3)) as c:
        await _range_led_by_node_4(c)
        # The split applies in the range, and nobody tells the directory (as if its
        # proposer stopped right after): the range's leader must finish it.
        block = await c.hosts[1].node.propose(DIRECTORY_ID, pack(AllocateRangeIds(1)))
        assert block == IdBlock(NEXT_ID, 1)
        outcome = await c.hosts[4].node.propose(RANGE, pack(Split(b"hh", NEXT_ID, 0, 4)))
        assert isinstance(outcome, SplitOutcome)
        assert _directories(c) == [[RangeDescriptor(RANGE, b"", None, 0, MOVED)]] * 3
        await wait_for(
            lambda: all(len(d) == 2 for d in _directories(c)), "the split recorded", timeout=10
        )
        _assert_split_recorded(c, recorder=4)
        assert c.hosts[4].node.leader_of(RANGE) == 4
        assert await c.client().get(b"mm") == b"MM"


async def test_directory_commands_for_a_host_are_checked_before_they_are_proposed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with kv_cluster((1, 2, 3, 4), replicas=(1, 2, 3)) as c:
        allocate = DirectoryCommandRequest(pack(AllocateRangeIds(2)))
        assert await c.link.call(4, allocate) == NotHosted(DIRECTORY_ID)
        assert await c.link.call(1, allocate) == IdBlock(NEXT_ID, 2)
        first = RangeDescriptor(RANGE, b"", None)
        reset = DirectoryCommandRequest(pack(InitDirectory(first, NEXT_ID)))
        assert await c.link.call(1, reset) == Refused(
            "only AllocateRangeIds, RecordSplit and UpdateReplicas are accepted"
        )
        garbled = DirectoryCommandRequest(pack(AllocateRangeIds(1))[:1] + b"\xc1")
        reply = await c.link.call(1, garbled)
        assert isinstance(reply, Refused)
        assert reply.reason.startswith("malformed command: cannot decode AllocateRangeIds")
        assert c.hosts[1].directory.next_range_id == NEXT_ID + 2
