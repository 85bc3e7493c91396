"""``multiraft bench groups``: the coordinator at scale, three nodes in one process.

Measures, on the in-memory network with real time: creating and electing N
groups; CPU seconds per wall second while N groups sit quiesced; heartbeat
frames and bytes per tick per peer with 10, 1,000 and N unquiesced groups; RSS
per group; commits per second with proposals spread over 1,000 groups.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from multiraft.config import NodeConfig
from multiraft.node import Node, open_node

__all__ = ["main"]

NODES = (1, 2, 3)


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


def _machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


@asynccontextmanager
async def _cluster(net: Any, **config: Any) -> AsyncIterator[dict[int, Node]]:
    async with AsyncExitStack() as stack:
        nodes = {}
        for i in NODES:
            cfg = NodeConfig(i, **config)
            nodes[i] = await stack.enter_async_context(open_node(cfg, transport=net.transport(i)))
        yield nodes


async def _create(nodes: dict[int, Node], count: int) -> None:
    for g in range(count):
        for i in NODES:
            await nodes[i].create_group(
                g, list(NODES), state_machine=_CounterMachine(), campaign=(i == g % 3 + 1)
            )


async def _wait(cond: Any, timeout: float) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.02)


def _all_led(nodes: dict[int, Node], count: int) -> bool:
    return all(nodes[1].leader_of(g) is not None for g in range(count))


def _all_quiesced(nodes: dict[int, Node], count: int) -> bool:
    return all(n.stats()["quiesced_groups"] == count for n in nodes.values())


async def _scale(count: int, idle_seconds: float) -> dict[str, Any]:
    from transport.memory import MemoryNetwork

    net = MemoryNetwork()
    rss0 = _rss_bytes()
    async with _cluster(net) as nodes:
        t0 = time.perf_counter()
        await _create(nodes, count)
        await _wait(lambda: _all_led(nodes, count), 600)
        create_s = time.perf_counter() - t0
        rss_per_group = (_rss_bytes() - rss0) / (count * len(NODES))
        await _wait(lambda: _all_quiesced(nodes, count), 600)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        ticks0 = nodes[1].stats()["ticks"]
        await trio.sleep(idle_seconds)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        idle_ticks = nodes[1].stats()["ticks"] - ticks0
    return {
        "groups": count,
        "create_and_elect_s": round(create_s, 3),
        "rss_bytes_per_group_replica": round(rss_per_group),
        "idle_cpu_per_wall_s": round(cpu / wall, 5),
        "idle_ticks": idle_ticks,
    }


async def _heartbeats(count: int, ticks: int) -> dict[str, Any]:
    from transport.memory import MemoryNetwork

    net = MemoryNetwork(measure_bytes=True)
    async with _cluster(net, quiesce=False) as nodes:
        for g in range(count):
            for i in NODES:
                await nodes[i].create_group(
                    g, list(NODES), state_machine=_CounterMachine(), campaign=(i == 1)
                )
        await _wait(lambda: _all_led(nodes, count), 600)
        await trio.sleep(0.5)
        f0, b0 = net.frames_sent(1, 2), net.bytes_sent(1, 2)
        t0 = nodes[1].stats()["ticks"]
        await trio.sleep(ticks * 0.1)
        n = nodes[1].stats()["ticks"] - t0
        frames = net.frames_sent(1, 2) - f0
        nbytes = net.bytes_sent(1, 2) - b0
    return {
        "groups": count,
        "ticks": n,
        "frames_per_tick_per_peer": round(frames / max(n, 1), 3),
        "bytes_per_tick_per_peer": round(nbytes / max(n, 1)),
    }


async def _commits(count: int, seconds: float) -> dict[str, Any]:
    from transport.memory import MemoryNetwork

    net = MemoryNetwork()
    async with _cluster(net) as nodes:
        await _create(nodes, count)
        await _wait(lambda: _all_led(nodes, count), 600)
        done = 0
        deadline = time.perf_counter() + seconds

        async def proposer(g: int) -> None:
            nonlocal done
            node = nodes[g % 3 + 1]
            while time.perf_counter() < deadline:
                await node.propose(g, b"x" * 100)
                done += 1

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for g in range(count):
                nursery.start_soon(proposer, g)
        elapsed = time.perf_counter() - t0
    return {"groups": count, "commits": done, "commits_per_s": round(done / elapsed)}


async def _run(quick: bool) -> dict[str, Any]:
    big = 1_000 if quick else 10_000
    results: dict[str, Any] = {"machine": _machine(), "quick": quick}
    results["scale"] = await _scale(big, 2.0 if quick else 5.0)
    print(
        f"create+elect {big} groups: {results['scale']['create_and_elect_s']} s;"
        f" idle CPU/wall {results['scale']['idle_cpu_per_wall_s']};"
        f" RSS/group replica {results['scale']['rss_bytes_per_group_replica']} B",
        flush=True,
    )
    results["heartbeats"] = []
    for count in (10, 1_000 if not quick else 100, big):
        row = await _heartbeats(count, 10 if not quick else 5)
        results["heartbeats"].append(row)
        print(
            f"heartbeats with {count} active groups: {row['frames_per_tick_per_peer']}"
            f" frames, {row['bytes_per_tick_per_peer']} B per tick per peer",
            flush=True,
        )
    results["commits"] = await _commits(1_000 if not quick else 100, 5.0 if not quick else 2.0)
    print(
        f"commits/s over {results['commits']['groups']} groups:"
        f" {results['commits']['commits_per_s']}",
        flush=True,
    )
    return results


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; ``--quick`` for a small run, ``--json FILE`` to save figures."""
    parser = argparse.ArgumentParser(prog="multiraft bench groups")
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(list(argv))
    machine = _machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()), flush=True)
    results = trio.run(_run, args.quick)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0
