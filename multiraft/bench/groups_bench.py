"""``multiraft bench groups``: the coordinator at scale, three nodes in one process.

Measures, on the in-memory network with real time and in-memory logs:

* creating and electing N groups (``Node.create_groups``, all N in one call on
  each node, every group campaigned by one designated node), and checks that
  every group's first leader is its campaigner at term 2 on every node (no group
  waited for an election timeout), and the seconds spent collecting garbage;
* RSS per group replica, and the objects the garbage collector tracks per
  replica (what a full collection has to visit);
* CPU seconds per wall second while the N groups sit quiesced, and the group
  ticks meanwhile (0: quiesced groups are not ticked);
* the same for 100,000 quiesced groups (full run only), in a fresh process so
  that its RSS growth is real (``--point N`` measures only this for N groups);
* heartbeat frames (frames carrying heartbeat records), all frames and bytes per
  tick per peer with 10, 1,000 and N groups that are not allowed to quiesce (one
  node leads them all);
* commits per second with proposals spread over 1,000 groups (proposed on their
  leaders), with one and with eight proposals in flight per group.

``--gc tuned`` runs with a larger young generation (:data:`TUNED_GC`, what a
process hosting many groups should use) instead of CPython's defaults. Progress
goes to stderr; the figures are printed at the end (``--json FILE`` saves them).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio

from multiraft.bench.report import BenchReport, bench_parser, run_main
from multiraft.bench.scale_plot import ScalePoint, draw_cost_per_group, plotting_available
from multiraft.config import NodeConfig
from multiraft.group_spec import GroupSpec
from multiraft.node import Node, open_node

__all__ = ["main", "measure", "parser"]

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


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@asynccontextmanager
async def _cluster(net: Any, groups: int, **config: Any) -> AsyncIterator[dict[int, Node]]:
    config.setdefault("unknown_group_buffer_groups", groups)
    async with AsyncExitStack() as stack:
        nodes = {}
        for i in NODES:
            cfg = NodeConfig(i, **config)
            nodes[i] = await stack.enter_async_context(open_node(cfg, transport=net.transport(i)))
        yield nodes


def _rotating_campaigner(g: int) -> int:
    return g % len(NODES) + 1


async def _create(nodes: dict[int, Node], count: int, campaigner: Callable[[int], int]) -> None:
    """Each node creates all the groups in one call.

    A node may hear from a campaigner before it created the group: the message
    waits in its unknown-group buffer (sized by :func:`_cluster` to hold every
    group) and is replayed when the group is created.
    """
    for i in NODES:
        await nodes[i].create_groups(
            GroupSpec(g, NODES, _CounterMachine(), campaign=campaigner(g) == i)
            for g in range(count)
        )


async def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.005)
        return
    raise RuntimeError(f"bench groups: {what} not reached within {timeout} s")


async def _wait_leaders(nodes: dict[int, Node], count: int, timeout: float = 600) -> None:
    """Wait until every node knows a leader for every group.

    Each node's groups are checked in order from the first one without a known
    leader, and nothing is allocated per group: the bench measures the memory
    the nodes take, and a list of pending (node, group) pairs rebuilt at every
    poll would add its own 64 bytes per replica to the peak.
    """
    known = dict.fromkeys(nodes, 0)
    with trio.move_on_after(timeout):
        while True:
            for i, n in nodes.items():
                g = known[i]
                while g < count and n.leader_of(g) is not None:
                    g += 1
                known[i] = g
            if all(g == count for g in known.values()):
                return
            await trio.sleep(0.05)
    stuck = ", ".join(f"node {i} of group {g}" for i, g in known.items() if g < count)
    raise RuntimeError(f"bench groups: no leader known after {timeout} s: {stuck}")


def _all_quiesced(nodes: dict[int, Node], count: int) -> bool:
    """Every node has ``count`` groups quiesced and folded into dormant records
    (they fold ``dormant_after_ticks`` after quiescing)."""
    for n in nodes.values():
        stats = n.stats()
        if stats["quiesced_groups"] != count or stats["dormant_groups"] != count:
            return False
    return True


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


#: ``gc.set_threshold`` of the tuned runs: a young generation of 50,000 objects and
#: full collections only after 100 middle ones. A node holds ~50 long-lived
#: objects per group replica; with CPython's defaults, creating 10,000 groups on
#: three nodes triggers ~20 full collections of over a million objects each.
TUNED_GC = (50_000, 20, 100)


#: Quiesced groups the full run also measures (memory and idle CPU), in a fresh process.
LARGE_QUIESCED = 100_000

#: Seconds a ``--point`` run measures the idle CPU over.
POINT_IDLE_SECONDS = 5.0


class _GcClock:
    """Seconds spent in CPython's cyclic garbage collector while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        if info.get("generation") == 2:
            self.full += 1

    def __enter__(self) -> _GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _gc_tracked_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def _scale(report: BenchReport, count: int, idle_seconds: float) -> None:
    from transport.memory import MemoryNetwork

    gc.collect()
    net = MemoryNetwork()
    rss0 = _rss_bytes()
    async with _cluster(net, count) as nodes:
        objects0 = _gc_tracked_objects()
        with _GcClock() as gc_clock:
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            await _create(nodes, count, _rotating_campaigner)
            await _wait_leaders(nodes, count)
            create_s = time.perf_counter() - t0
            create_cpu = time.process_time() - cpu0
        late = _not_first_elected(nodes, count, _rotating_campaigner)
        _progress(
            f"created and elected {count} groups in {create_s:.2f} s ({create_cpu:.2f} s CPU,"
            f" {gc_clock.seconds:.2f} s collecting garbage, {gc_clock.full} full collections),"
            f" {late} not first elected"
        )
        report.add(f"create + elect {count:,} groups, 3 nodes", create_s, "s")
        report.add("  of which in the garbage collector", gc_clock.seconds, "s")
        report.add("  CPU time of the process meanwhile", create_cpu, "s")
        report.add("  groups not elected first by their campaigner at term 2", late, "groups")
        await _wait(lambda: _all_quiesced(nodes, count), 600, "quiescence")
        replicas = count * len(NODES)
        rss = (_rss_bytes() - rss0) / replicas
        report.add(f"RSS per group replica, {count:,} quiesced groups", rss, "bytes")
        ticked0 = sum(n.stats()["groups_ticked"] for n in nodes.values())
        ticks0 = nodes[1].stats()["ticks"]
        with _GcClock() as idle_gc:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await trio.sleep(idle_seconds)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
        ticks = nodes[1].stats()["ticks"] - ticks0
        ticked = sum(n.stats()["groups_ticked"] for n in nodes.values()) - ticked0
        _progress(
            f"idle: {cpu / wall:.4f} CPU s per wall s over {ticks} ticks"
            f" ({idle_gc.seconds:.2f} s collecting garbage, {idle_gc.full} full collections)"
        )
        report.add(
            f"idle CPU, {count:,} quiesced groups on 3 nodes", 100 * cpu / wall, "% of a core"
        )
        report.add("  of which collecting garbage", 100 * idle_gc.seconds / wall, "% of a core")
        report.add("  group ticks while idle", ticked, "ticks")
        # Counted last: listing every object costs memory of its own.
        objects = (_gc_tracked_objects() - objects0) / replicas
        report.add("  objects tracked by the garbage collector per replica", objects, "objects")


def _scale_in_fresh_process(count: int, gc_setting: str) -> BenchReport:
    """:func:`_scale` for ``count`` groups in a new process (``--point``): its figures.

    A fresh process, so the RSS growth is not hidden by memory an earlier run freed.
    """
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="multiraft-bench-groups-") as tmp:
        out = os.path.join(tmp, "point.json")
        command = [sys.executable, "-m", "multiraft.cli", "bench", "groups"]
        command += ["--point", str(count), "--gc", gc_setting, "--json", out]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        with open(out, encoding="utf-8") as f:
            data = json.load(f)
    report = BenchReport("groups", data["description"])
    for fig in data["figures"]:
        report.add(fig["label"], fig["value"], fig["unit"])
    return report


def _figure(report: BenchReport, prefix: str) -> float:
    """The value of the figure whose label starts with ``prefix``."""
    for label, value, _ in report.figures:
        if label.startswith(prefix):
            return value
    raise KeyError(f"no figure {prefix!r} in {[label for label, _, _ in report.figures]}")


async def _heartbeats(report: BenchReport, count: int, ticks: int) -> None:
    from transport.memory import MemoryNetwork

    net = MemoryNetwork(measure_bytes=True)
    async with _cluster(net, count, quiesce=False) as nodes:
        await _create(nodes, count, lambda g: 1)
        await _wait_leaders(nodes, count)
        await trio.sleep(0.5)
        links = [(1, 2), (2, 1), (1, 3), (3, 1)]

        def counters() -> dict[tuple[int, int], tuple[int, int, int]]:
            return {
                link: (
                    net.heartbeat_frames_sent(*link),
                    net.frames_sent(*link),
                    net.bytes_sent(*link),
                )
                for link in links
            }

        # Count over whole ticks of node 1 (with many groups a tick takes longer
        # than tick_interval: ticks are late, never bunched).
        t0 = nodes[1].stats()["ticks"]
        await _wait(lambda: nodes[1].stats()["ticks"] > t0, 60, "a tick")
        before = counters()
        t1 = nodes[1].stats()["ticks"]
        await _wait(lambda: nodes[1].stats()["ticks"] >= t1 + ticks, 600, "ticks")
        n = nodes[1].stats()["ticks"] - t1
        after = counters()
    delta = {
        link: [a - b for a, b in zip(after[link], before[link], strict=True)] for link in links
    }
    _progress(f"{count} active groups over {n} ticks of node 1: {delta}")
    # Node 1 leads every group: it sends the heartbeats, the peers answer.
    out = [delta[(1, p)] for p in (2, 3)]
    back = [delta[(p, 1)] for p in (2, 3)]
    report.add(
        f"heartbeat frames per tick per peer, {count:,} active groups",
        max(hb for hb, _, _ in out) / n,
        "frames",
    )
    report.add(
        f"  heartbeat-response frames per tick per peer, {count:,} groups",
        max(hb for hb, _, _ in back) / n,
        "frames",
    )
    report.add(
        f"  all frames per tick per peer, {count:,} groups",
        max(f for _, f, _ in out + back) / n,
        "frames",
    )
    report.add(
        f"  heartbeat bytes per tick per peer, {count:,} groups",
        max(b for _, _, b in out) / n,
        "bytes",
    )
    report.add(
        f"  response bytes per tick per peer, {count:,} groups",
        max(b for _, _, b in back) / n,
        "bytes",
    )


async def _commits(report: BenchReport, count: int, in_flight: int, seconds: float) -> None:
    from transport.memory import MemoryNetwork

    net = MemoryNetwork()
    async with _cluster(net, count) as nodes:
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


def _sweep(counts: Sequence[int], gc_setting: str) -> list[ScalePoint]:
    """Create, elect and idle each count of groups, each in a fresh process; their costs."""
    points = []
    for count in counts:
        figures = _scale_in_fresh_process(count, gc_setting)
        create_s = _figure(figures, "create + elect")
        rss = _figure(figures, "RSS per group replica")
        idle_percent = _figure(figures, "idle CPU")
        points.append(ScalePoint(count, 1000 * create_s / count, rss, 1000 * idle_percent / count))
    return points


def _sweep_counts(quick: bool, tiny: bool) -> tuple[int, ...]:
    if tiny:
        return (10, 20, 30)
    if quick:
        return (100, 300, 1_000)
    return (1_000, 3_000, 10_000)


async def _run(report: BenchReport, quick: bool, tiny: bool) -> None:
    if tiny:
        big, idle, middle, ticks, spread, seconds = 30, 0.5, 20, 3, 10, 0.3
    elif quick:
        big, idle, middle, ticks, spread, seconds = 1_000, 2.0, 100, 5, 100, 2.0
    else:
        big, idle, middle, ticks, spread, seconds = 10_000, 10.0, 1_000, 10, 1_000, 5.0
    await _scale(report, big, idle)
    for count in (10, middle, big):
        await _heartbeats(report, count, ticks)
    for in_flight in (1, 8):
        await _commits(report, spread, in_flight, seconds)


def parser() -> argparse.ArgumentParser:
    """This benchmark's command line."""
    p = bench_parser("groups", __doc__)
    p.add_argument(
        "--gc",
        choices=("default", "tuned"),
        default="default",
        help="CPython's garbage collector settings, or the tuned ones (TUNED_GC)",
    )
    p.add_argument(
        "--point",
        type=int,
        metavar="N",
        help="only create, elect and idle N groups (the full run measures"
        f" {LARGE_QUIESCED:,} this way, in a fresh process)",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also sweep the group count and draw the cost per group (needs matplotlib)",
    )
    return p


def measure(args: argparse.Namespace) -> BenchReport:
    """Run the benchmark (``--gc tuned`` sets the thresholds for the process); return figures."""
    point = getattr(args, "point", None)
    default_size = "30" if args.tiny else "1,000" if args.quick else "10,000"
    size = f"{point:,}" if point else default_size
    if args.gc == "tuned":
        gc.set_threshold(*TUNED_GC)
    settings = ", ".join(str(t) for t in gc.get_threshold())
    report = BenchReport(
        "groups",
        f"{size} groups on 3 in-process nodes, memory network, real time,"
        f" {args.gc} GC (thresholds {settings})",
    )
    if point:
        trio.run(_scale, report, point, POINT_IDLE_SECONDS)
        return report
    trio.run(_run, report, args.quick, args.tiny)
    if not (args.quick or args.tiny):
        _progress(f"creating {LARGE_QUIESCED:,} groups in a fresh process")
        for label, value, unit in _scale_in_fresh_process(LARGE_QUIESCED, args.gc).figures:
            report.add(label, value, unit)
    if getattr(args, "plot", None):
        points = _sweep(_sweep_counts(args.quick, args.tiny), args.gc)
        draw_cost_per_group(points, args.plot, report.description)
        report.details["cost_per_group"] = [attrs.asdict(p) for p in points]
        _progress(f"cost per group drawn in {args.plot}")
    return report


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; ``--quick`` for a small run, ``--json FILE`` to save figures."""
    args = parser().parse_args(list(argv))
    if args.plot and not plotting_available():
        print(
            "multiraft bench groups --plot needs matplotlib: pip install 'multiraft[plot]'",
            file=sys.stderr,
        )
        return 2
    return run_main(measure, parser(), argv)
