"""``multiraft bench groups``: the coordinator at scale, three nodes in one process.

Measures, on the in-memory network with real time and in-memory logs:

* creating and electing N groups (``Node.create_groups``, 1,000 groups per call
  on each node, every group campaigned by one designated node), and checks that
  every group's first leader is its campaigner at term 2 on every node: no group
  waited for an election timeout;
* RSS per group replica;
* CPU seconds per wall second while the N groups sit quiesced, and the groups
  ticked meanwhile (should be 0);
* heartbeat frames and bytes per tick per peer with 10, 1,000 and N groups
  that are not allowed to quiesce (one node leads them all);
* commits per second with proposals spread over 1,000 groups (proposed on
  their leaders), with one and with eight proposals in flight per group.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from multiraft.bench.report import BenchReport
from multiraft.config import NodeConfig
from multiraft.group_spec import GroupSpec
from multiraft.node import Node, open_node

__all__ = ["main"]

NODES = (1, 2, 3)
#: Groups per ``create_groups`` call: every node creates a chunk before the next
#: chunk starts, so messages for groups a node has not created yet stay well
#: within its unknown-group buffer (1,024 groups by default).
CHUNK = 1_000


class _CounterMachine:
    """The cheapest useful state machine: counts applied commands."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def apply(self, index: int, command: bytes) -> object:
        self.count += 1
        return index

    def snapshot(self) -> bytes:
        return str(self.count).encode()

    def restore(self, data: bytes) -> None:
        self.count = int(data)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@asynccontextmanager
async def _cluster(net: Any, **config: Any) -> AsyncIterator[dict[int, Node]]:
    async with AsyncExitStack() as stack:
        nodes = {}
        for i in NODES:
            cfg = NodeConfig(i, **config)
            nodes[i] = await stack.enter_async_context(open_node(cfg, transport=net.transport(i)))
        yield nodes


def _rotating_campaigner(g: int) -> int:
    return g % len(NODES) + 1


async def _create(nodes: dict[int, Node], count: int, campaigner: Callable[[int], int]) -> None:
    for start in range(0, count, CHUNK):
        gids = range(start, min(start + CHUNK, count))
        for i in NODES:
            await nodes[i].create_groups(
                GroupSpec(g, NODES, _CounterMachine(), campaign=campaigner(g) == i) for g in gids
            )


async def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.05)
        return
    raise RuntimeError(f"bench groups: {what} not reached within {timeout} s")


async def _wait_leaders(nodes: dict[int, Node], count: int, timeout: float = 600) -> None:
    """Wait until every node knows a leader for every group (polls only the rest)."""
    pending = [(n, g) for n in nodes.values() for g in range(count)]
    with trio.move_on_after(timeout):
        while True:
            pending = [(n, g) for n, g in pending if n.leader_of(g) is None]
            if not pending:
                return
            await trio.sleep(0.05)
    raise RuntimeError(f"bench groups: {len(pending)} replicas without a leader after {timeout} s")


def _all_quiesced(nodes: dict[int, Node], count: int) -> bool:
    return all(n.stats()["quiesced_groups"] == count for n in nodes.values())


def _not_first_elected(nodes: dict[int, Node], count: int, campaigner: Callable[[int], int]) -> int:
    """Groups whose leader is not their campaigner at term 2 on some node."""
    bad = 0
    for g in range(count):
        want = campaigner(g)
        for n in nodes.values():
            if n.leader_of(g) != want or n.status(g).hard_state.term != 2:
                bad += 1
                break
    return bad


async def _scale(report: BenchReport, count: int, idle_seconds: float) -> None:
    from transport.memory import MemoryNetwork

    net = MemoryNetwork()
    rss0 = _rss_bytes()
    async with _cluster(net) as nodes:
        t0 = time.perf_counter()
        await _create(nodes, count, _rotating_campaigner)
        await _wait_leaders(nodes, count)
        create_s = time.perf_counter() - t0
        late = _not_first_elected(nodes, count, _rotating_campaigner)
        _progress(f"created and elected {count} groups in {create_s:.2f} s ({late} late)")
        report.add(f"create + elect {count:,} groups (3 nodes)", create_s, "s")
        report.add("groups not elected by their campaigner at term 2", late, "groups")
        await _wait(lambda: _all_quiesced(nodes, count), 600, "quiescence")
        rss = (_rss_bytes() - rss0) / (count * len(NODES))
        report.add("RSS per group replica (quiesced)", rss, "bytes")
        ticked0 = sum(n.stats()["groups_ticked"] for n in nodes.values())
        ticks0 = nodes[1].stats()["ticks"]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await trio.sleep(idle_seconds)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        ticks = nodes[1].stats()["ticks"] - ticks0
        ticked = sum(n.stats()["groups_ticked"] for n in nodes.values()) - ticked0
        _progress(f"idle: {cpu / wall:.4f} CPU s per wall s over {ticks} ticks")
        report.add(
            f"idle CPU, {count:,} quiesced groups (3 nodes)", 100 * cpu / wall, "% of a core"
        )
        report.add("groups ticked while idle", ticked, "group ticks")


async def _heartbeats(report: BenchReport, count: int, ticks: int) -> None:
    from transport.memory import MemoryNetwork

    net = MemoryNetwork(measure_bytes=True)
    async with _cluster(net, quiesce=False) as nodes:
        await _create(nodes, count, lambda g: 1)
        await _wait_leaders(nodes, count)
        await trio.sleep(0.5)
        links = [(1, 2), (2, 1), (1, 3), (3, 1)]
        frames0 = {link: net.frames_sent(*link) for link in links}
        bytes0 = {link: net.bytes_sent(*link) for link in links}
        t0 = nodes[1].stats()["ticks"]
        t0_peer = nodes[2].stats()["ticks"]
        await trio.sleep(ticks * 0.1)
        n = nodes[1].stats()["ticks"] - t0
        n_peer = nodes[2].stats()["ticks"] - t0_peer
        frames = {link: net.frames_sent(*link) - frames0[link] for link in links}
        nbytes = {link: net.bytes_sent(*link) - bytes0[link] for link in links}
    out = frames[(1, 2)] / max(n, 1)
    back = frames[(2, 1)] / max(n_peer, 1)
    _progress(f"{count} active groups: {frames} frames over {n} ticks")
    report.add(f"heartbeat frames per tick per peer, {count:,} active groups", out, "frames")
    report.add(f"  response frames per tick per peer, {count:,} groups", back, "frames")
    report.add(
        f"  heartbeat bytes per tick per peer, {count:,} groups",
        nbytes[(1, 2)] / max(n, 1),
        "bytes",
    )
    report.add(
        f"  response bytes per tick per peer, {count:,} groups",
        nbytes[(2, 1)] / max(n_peer, 1),
        "bytes",
    )


async def _commits(report: BenchReport, count: int, in_flight: int, seconds: float) -> None:
    from transport.memory import MemoryNetwork

    net = MemoryNetwork()
    async with _cluster(net) as nodes:
        await _create(nodes, count, _rotating_campaigner)
        await _wait_leaders(nodes, count)
        done = 0
        deadline = time.perf_counter() + seconds
        payload = b"x" * 100

        async def proposer(g: int) -> None:
            nonlocal done
            node = nodes[_rotating_campaigner(g)]
            while time.perf_counter() < deadline:
                await node.propose(g, payload)
                done += 1

        batches0 = sum(n.stats()["proposal_batches"] for n in nodes.values())
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for g in range(count):
                for _ in range(in_flight):
                    nursery.start_soon(proposer, g)
        elapsed = time.perf_counter() - t0
        batches = sum(n.stats()["proposal_batches"] for n in nodes.values()) - batches0
    _progress(f"{done} commits in {elapsed:.2f} s over {count} groups, {batches} batches")
    report.add(
        f"commits/s over {count:,} groups, {in_flight} in flight per group",
        done / elapsed,
        "commits/s",
    )


async def _run(report: BenchReport, quick: bool) -> None:
    big = 1_000 if quick else 10_000
    await _scale(report, big, 2.0 if quick else 5.0)
    for count in (10, 100 if quick else 1_000, big):
        await _heartbeats(report, count, 5 if quick else 10)
    spread = 100 if quick else 1_000
    for in_flight in (1, 8):
        await _commits(report, spread, in_flight, 2.0 if quick else 5.0)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; ``--quick`` for a small run, ``--json FILE`` to save figures."""
    parser = argparse.ArgumentParser(prog="multiraft bench groups", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(list(argv))
    size = "1,000" if args.quick else "10,000"
    report = BenchReport(
        "groups", f"{size} groups on 3 in-process nodes, memory network, real time"
    )
    trio.run(_run, report, args.quick)
    report.print()
    if args.json:
        report.write_json(args.json)
    return 0
