"""``multiraft bench cluster``: three node processes over TCP on loopback, against one process.

Two setups run the same workload in the same invocation:

* **loopback**: three ``multiraft node`` processes (durable engine, plain TCP on
  127.0.0.1), driven through their admin ports; each node runs the load for the
  groups it leads (:func:`multiraft.bench.load.run_load` behind the admin op
  ``load``), so no client traffic competes with raft traffic;
* **in-process**: three nodes in this process on the in-memory network, each with
  its own durable engine, the same load generator called directly.

Workloads: one group with many outstanding proposals, then N groups (1,000 by
default) with a few outstanding proposals each. Reported per setup and workload:
committed commands/s, p50/p99 commit latency, frames/s and bytes/s between nodes
(loopback; the memory network moves objects, so it has frames only), CPU seconds
per wall second per node (in-process: the one process hosting all three), and the
loopback/in-process throughput ratio.

The closed loops give the peak: a request leaves only when another completes,
so one loop's throughput is its depth over a round trip. On the loopback
cluster the workload's own depth (256 outstanding for one group, 4 per group
for N) runs again 4, 16 and 64 times deeper while each step still gains 10%
and at most 16,384 proposals are outstanding (:func:`_find_peak`; not with
``--tiny``), and the peak is the best of them.
Latency is then measured under an open loop on the loopback cluster (requests
issued on a fixed schedule whatever the replies do, latency counted from the
scheduled send time; see :mod:`multiraft.bench.open_loop`) at fractions of that
peak (``--fractions``, default 0.5): p50/p99/p999 and the rate achieved. With
``--rates`` it also runs the open loop at those fixed rates (requests per
second), which stay the same from run to run and commit to commit while the
peak moves with the machine's load: the figures to compare two versions by.
The generator runs inside the node processes, on the cores raft needs; after
each open-loop run it is measured alone at the busiest node's rate, against a
stand-in node in this process (:func:`multiraft.bench.open_loop.generator_cost`),
so the report says how much of that node's core the load itself took.

Each node's CPU over all those loopback runs of a workload is then split into a
fixed cost per ready cycle and a cost per commit
(:mod:`multiraft.bench.cycle_cost`): the figures that say why an open loop at
half of the peak, which runs with much smaller cycles than the peak, is busier
than half. They are printed with how well they fit, and kept in the JSON
details (``cpu_model``), not in the table: a fit over a few noisy runs can be
far off, and with many groups a cycle's cost grows with the groups it visits,
which two numbers do not describe.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from multiraft.bench.cycle_cost import CycleCost, fit_cycle_cost
from multiraft.bench.load import percentile, run_load
from multiraft.bench.open_loop import generator_cost
from multiraft.bench.report import BenchReport, bench_parser, machine_info, run_main
from multiraft.duration_histogram import DurationHistogram

__all__ = ["main", "measure", "parser"]

NODES = (1, 2, 3)
#: Latency samples each node returns at most (evenly spaced over its sorted samples).
_SAMPLES = 20_000


def _leader_for(group_id: int) -> int:
    return group_id % 3 + 1


def _summarize(
    runs: list[dict[str, Any]], elapsed: float, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    commits = sum(r["commits"] for r in runs)
    samples = sorted(s for r in runs for s in r["samples_ms"])
    out: dict[str, Any] = {
        "commits": commits,
        "errors": sum(r["errors"] for r in runs),
        "seconds": round(elapsed, 3),
        "commits_per_s": round(commits / elapsed),
        "p50_ms": round(percentile(samples, 0.50), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "p999_ms": round(percentile(samples, 0.999), 3),
    }
    for key in ("scheduled", "late"):
        if runs and all(key in r for r in runs):
            out[key] = sum(r[key] for r in runs)
    for key in ("frames", "bytes"):
        if key in before:
            out[f"{key}_per_s"] = round((after[key] - before[key]) / elapsed)
    out["cpu_per_wall"] = {
        str(k): round((after["cpu"][k] - before["cpu"][k]) / elapsed, 3) for k in before["cpu"]
    }
    if "cycles" in before:
        out["cpu_seconds"] = {
            str(k): round(after["cpu"][k] - before["cpu"][k], 4) for k in before["cpu"]
        }
        out["ready_cycles"] = {
            str(k): after["cycles"][k] - before["cycles"][k] for k in before["cycles"]
        }
        if before.get("tasks"):
            out["task_cpu_per_cycle_us"] = {
                str(k): _task_cpu_per_cycle(
                    before["tasks"][k], after["tasks"][k], out["ready_cycles"][str(k)]
                )
                for k in before["tasks"]
            }
    if "writes" in before:
        out["durable_writes"] = _write_times(before, after)
    return out


def _task_cpu_per_cycle(
    before: dict[str, Any], after: dict[str, Any], cycles: int
) -> dict[str, float]:
    """Microseconds of CPU per ready cycle of each task (and of the loop's polling,
    as ``io wait``) between two ``task_cpu`` snapshots, busiest first."""
    if cycles <= 0:
        return {}
    spent = {
        name: row["cpu_seconds"] - before["tasks"].get(name, {}).get("cpu_seconds", 0.0)
        for name, row in after["tasks"].items()
    }
    spent["io wait"] = after["io_wait"]["cpu_seconds"] - before["io_wait"]["cpu_seconds"]
    ranked = sorted(spent.items(), key=lambda item: item[1], reverse=True)
    return {name: round(seconds / cycles * 1e6, 1) for name, seconds in ranked if seconds > 0}


def _cycle_costs(rows: list[dict[str, Any]]) -> dict[str, CycleCost]:
    """Each node's fixed CPU per ready cycle and CPU per commit, fitted over ``rows``
    (the loopback runs of one workload: closed loops and open loops)."""
    usable = [r for r in rows if "ready_cycles" in r]
    out: dict[str, CycleCost] = {}
    for node in sorted(usable[0]["ready_cycles"]) if usable else ():
        fit = fit_cycle_cost(
            (r["cpu_seconds"][node], r["commits"], r["ready_cycles"][node]) for r in usable
        )
        if fit is not None:
            out[node] = fit
    return out


def _print_cycle_costs(count: int, costs: dict[str, CycleCost]) -> None:
    for node, cost in costs.items():
        print(
            f"{'CPU model':>10} {count:>5} groups, node {node}: "
            f"{cost.per_cycle * 1e3:.3f} ms per ready cycle + "
            f"{cost.per_commit * 1e6:.2f} us per commit "
            f"(break-even at {cost.commits_per_cycle_break_even():,.0f} commits per cycle; "
            f"{cost.runs} runs, worst error {cost.worst_relative_error:.0%})",
            file=sys.stderr,
            flush=True,
        )


def _split_by_leader(groups: list[int], leader_of: dict[int, int]) -> dict[int, list[int]]:
    by_leader: dict[int, list[int]] = {i: [] for i in NODES}
    for g in groups:
        by_leader[leader_of.get(g) or _leader_for(g)].append(g)
    return by_leader


async def _drive(
    by_leader: dict[int, list[int]], run_one: Callable[[int, list[int]], Awaitable[Any]]
) -> tuple[list[dict[str, Any]], float]:
    """Run the load on every node at once; each node's result and the wall time."""
    runs: list[dict[str, Any]] = []

    async def drive(i: int) -> None:
        if by_leader[i]:
            runs.append(await run_one(i, by_leader[i]))

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in NODES:
            nursery.start_soon(drive, i)
    return runs, time.perf_counter() - began


# --------------------------------------------------------------- loopback


async def _process_counters(nodes: dict[int, Any]) -> dict[str, Any]:
    stats = {i: await nodes[i].call("stats") for i in NODES}
    return {
        "frames": sum(s["transport"]["frames_sent"] for s in stats.values()),
        "bytes": sum(s["transport"]["bytes_sent"] for s in stats.values()),
        "cpu": {i: s["cpu_seconds"] for i, s in stats.items()},
        "cycles": {i: s["node"]["ready_cycles"] for i, s in stats.items()},
        "tasks": {i: s["task_cpu"] for i, s in stats.items() if "task_cpu" in s},
        "writes": {
            i: {k: DurationHistogram.from_dict(h) for k, h in s["write_durations"].items()}
            for i, s in stats.items()
        },
    }


def _write_times(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per node, the durable writes of the window: count, p50/p99 waited and in the engine (ms).

    Quantiles are bucket upper bounds (see :mod:`multiraft.duration_histogram`).
    """
    out: dict[str, dict[str, float]] = {}
    for i, hists in after["writes"].items():
        row: dict[str, float] = {}
        for kind, hist in hists.items():
            window = hist.minus(before["writes"][i][kind])
            row["writes"] = window.count
            row[f"{kind}_p50_ms"] = window.quantile(0.5) * 1e3 if window.count else 0.0
            row[f"{kind}_p99_ms"] = window.quantile(0.99) * 1e3 if window.count else 0.0
        out[str(i)] = row
    return out


def _rate_shares(by_leader: dict[int, list[int]], rate: float) -> dict[int, float]:
    """Each node's part of ``rate``: in proportion to the groups it leads."""
    total = sum(len(led) for led in by_leader.values())
    return {i: rate * len(led) / total for i, led in by_leader.items()} if total else {}


async def _process_workload(
    nodes: dict[int, Any],
    groups: list[int],
    seconds: float,
    outstanding: int,
    rate: float | None = None,
) -> dict[str, Any]:
    """Closed-loop load (``outstanding`` per group), or open-loop at ``rate`` puts/s overall."""
    by_leader = _split_by_leader(groups, dict(await nodes[1].call("leaders", groups=groups)))
    shares = _rate_shares(by_leader, rate or 0.0)

    async def run_one(i: int, led: list[int]) -> Any:
        if rate is not None:
            return await nodes[i].call(
                "load", groups=led, seconds=seconds, rate=shares[i], samples=_SAMPLES
            )
        return await nodes[i].call(
            "load", groups=led, seconds=seconds, outstanding=outstanding, samples=_SAMPLES
        )

    before = await _process_counters(nodes)
    runs, elapsed = await _drive(by_leader, run_one)
    after = await _process_counters(nodes)
    out = _summarize(runs, elapsed, before, after)
    if rate is not None:
        busiest, busiest_rate = _busiest_share(shares)
        # The generator runs inside the nodes, on the cores raft needs: measure
        # what it alone costs at the busiest node's rate, here, with the nodes idle.
        alone = await generator_cost(busiest_rate, min(seconds, 2.0), by_leader[busiest])
        out["generator"] = {
            "node": busiest,
            "rate_per_s": round(busiest_rate),
            "cpu_us_per_request": alone["cpu_us_per_request"],
            "cpu_per_wall": alone["cpu_per_wall"],
        }
    return out


def _busiest_share(shares: dict[int, float]) -> tuple[int, float]:
    """The node with the largest part of an open-loop rate, and that part."""
    node = max(sorted(shares), key=lambda i: shares[i])
    return node, shares[node]


async def _await_leaders(ask: Any, groups: list[int], timeout: float) -> None:
    with trio.fail_after(timeout):
        while True:
            leaders = await ask(groups)
            if all(leader for _, leader in leaders):
                return
            await trio.sleep(0.1)


async def _loopback(root: Path, opts: argparse.Namespace) -> dict[str, Any]:
    from multiraft.node_launcher import NodeProcess, free_ports

    ports = free_ports(3)
    out: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        nodes: dict[int, NodeProcess] = {}
        for i in NODES:
            args = [
                "--id", str(i), "--listen", f"127.0.0.1:{ports[i - 1]}",
                "--data-dir", str(root / f"proc{i}"), "--log-level", "WARNING",
            ]  # fmt: skip
            for j in NODES:
                if j != i:
                    args += ["--peer", f"{j}=127.0.0.1:{ports[j - 1]}"]
            if getattr(opts, "task_cpu", False):
                args.append("--task-cpu")
            nodes[i] = NodeProcess(args, root / f"proc{i}.log", nursery)
        try:
            async with trio.open_nursery() as starting:
                for node in nodes.values():
                    starting.start_soon(node.start)
            first = 1
            for count, outstanding in opts.workloads:
                groups = list(range(first, first + count))
                first += count
                for i in NODES:
                    await nodes[i].call("create_groups", groups=groups, replicas=list(NODES))
                for g in groups:
                    await nodes[_leader_for(g)].call("campaign", group=g)

                async def ask(gs: list[int]) -> Any:
                    return await nodes[1].call("leaders", groups=gs)

                await _await_leaders(ask, groups, 60)
                row = await _process_workload(nodes, groups, opts.seconds, outstanding)
                out[str(count)] = row
                _print_row("loopback", count, outstanding, row)

                peak: float = row["commits_per_s"]
                deeper_runs: list[dict[str, Any]] = []
                if opts.peak_search:
                    closed_loop = partial(_printed_closed_loop, nodes, groups, opts.seconds)
                    peak, deeper_runs = await _find_peak(outstanding, peak, closed_loop, count)
                row["deeper_closed_loops"] = deeper_runs
                row["peak_per_s"] = peak
                print(
                    f"{'peak':>10} {count:>5} groups: {peak:,} commits/s, the best closed loop",
                    file=sys.stderr,
                    flush=True,
                )
                open_loop: dict[str, Any] = {}
                points = [
                    (str(fraction), fraction * peak) for fraction in getattr(opts, "fractions", ())
                ]
                points += [(_rate_key(rate), rate) for rate in getattr(opts, "rates", ())]
                for key, rate in points:
                    at = await _process_workload(nodes, groups, opts.seconds, outstanding, rate)
                    at["offered_per_s"] = round(rate)
                    open_loop[key] = at
                    _print_open_row(count, _open_loop_label(key), at)
                if open_loop:
                    row["open_loop"] = open_loop
                costs = _cycle_costs([row, *deeper_runs, *open_loop.values()])
                row["cpu_model"] = {node: attrs.asdict(cost) for node, cost in costs.items()}
                _print_cycle_costs(count, costs)
        finally:
            with trio.CancelScope(shield=True):
                for node in nodes.values():
                    await node.kill()
            nursery.cancel_scope.cancel()
    return out


# ------------------------------------------------------------- in-process


async def _in_process_workload(
    root: Path, count: int, outstanding: int, seconds: float
) -> dict[str, Any]:
    from contextlib import AsyncExitStack

    from multiraft.config import NodeConfig
    from multiraft.kv import KVStateMachine
    from multiraft.node import open_node
    from transport.memory import MemoryNetwork

    net = MemoryNetwork()
    groups = list(range(1, count + 1))
    async with AsyncExitStack() as stack:
        nodes = {
            i: await stack.enter_async_context(
                open_node(
                    NodeConfig(i),
                    transport=net.transport(i),
                    data_dir=str(root / f"mem{count}-{i}"),
                )
            )
            for i in NODES
        }
        for i in NODES:
            for g in groups:
                await nodes[i].create_group(g, list(NODES), state_machine=KVStateMachine())
        for g in groups:
            await nodes[_leader_for(g)].campaign(g)

        async def ask(gs: list[int]) -> Any:
            return [[g, nodes[1].leader_of(g) or 0] for g in gs]

        await _await_leaders(ask, groups, 60)
        by_leader = _split_by_leader(groups, dict(await ask(groups)))

        async def run_one(i: int, led: list[int]) -> Any:
            return await run_load(nodes[i], led, seconds, outstanding, samples=_SAMPLES)

        before = {"frames": net.total_frames_sent(), "cpu": {"all": time.process_time()}}
        runs, elapsed = await _drive(by_leader, run_one)
        after = {"frames": net.total_frames_sent(), "cpu": {"all": time.process_time()}}
    return _summarize(runs, elapsed, before, after)


async def _in_process(root: Path, opts: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for count, outstanding in opts.workloads:
        row = await _in_process_workload(root, count, outstanding, opts.seconds)
        out[str(count)] = row
        _print_row("in-process", count, outstanding, row)
    return out


# ------------------------------------------------------------------ report


def _print_row(setup: str, count: int, outstanding: int, row: dict[str, Any]) -> None:
    traffic = ""
    if "bytes_per_s" in row:
        traffic = f", {row['frames_per_s']:,} frames/s, {row['bytes_per_s'] / 1e6:.1f} MB/s"
    elif "frames_per_s" in row:
        traffic = f", {row['frames_per_s']:,} frames/s"
    cpu = " ".join(f"{k}:{v:.2f}" for k, v in row["cpu_per_wall"].items())
    print(
        f"{setup:>10} {count:>5} groups x {outstanding:>3} outstanding: "
        f"{row['commits_per_s']:>7,} commits/s, p50 {row['p50_ms']:.1f} ms, "
        f"p99 {row['p99_ms']:.1f} ms{traffic}; CPU/wall {cpu}",
        file=sys.stderr,
        flush=True,
    )
    _print_write_times(row)
    _print_task_cpu(row)


def _print_task_cpu(row: dict[str, Any]) -> None:
    for node, tasks in row.get("task_cpu_per_cycle_us", {}).items():
        top = ", ".join(f"{name.rsplit('.', 1)[-1]} {us:.0f}" for name, us in tasks.items())
        total = sum(tasks.values())
        print(
            f"{'':>10} node {node} event loop, us of CPU per ready cycle: {total:.0f} ({top})",
            file=sys.stderr,
            flush=True,
        )


#: Each deeper closed loop of the peak search keeps this many times more proposals outstanding.
PEAK_SEARCH_FACTOR = 4
#: ... and runs only while the one before it gained at least this share of throughput.
PEAK_SEARCH_MIN_GAIN = 0.10
#: ... up to this many times the workload's own depth,
PEAK_SEARCH_MAX_DEPTH = 64
#: ... and this many proposals outstanding over all groups (a deeper queue only
#: adds latency, and runs into the proposal timeout).
PEAK_SEARCH_MAX_IN_FLIGHT = 16_384


async def _printed_closed_loop(
    nodes: dict[int, Any], groups: list[int], seconds: float, depth: int
) -> dict[str, Any]:
    """A closed loop of ``depth`` outstanding per group on the loopback cluster, printed."""
    row = await _process_workload(nodes, groups, seconds, depth)
    _print_row("loopback", len(groups), depth, row)
    return row


async def _find_peak(
    base: int,
    base_rate: float,
    closed_loop: Callable[[int], Awaitable[dict[str, Any]]],
    groups: int = 1,
) -> tuple[float, list[dict[str, Any]]]:
    """The peak commits/s, and the deeper closed loops run to find it.

    A closed loop's throughput is its depth over a round trip, so one depth can
    stop short of what the cluster carries: one group with 256 outstanding made
    42k commits/s with the leader at 0.65 of a core, with 1,024 outstanding 61k.
    From the workload's own depth ``base`` (which made ``base_rate``), the
    search runs ``closed_loop(depth)`` ``PEAK_SEARCH_FACTOR`` times deeper each
    time, while the last one gained at least ``PEAK_SEARCH_MIN_GAIN`` over the
    best before it, up to ``PEAK_SEARCH_MAX_DEPTH`` times ``base`` and
    ``PEAK_SEARCH_MAX_IN_FLIGHT`` proposals over the ``groups``. The peak is
    the best loop; the open-loop fractions are of that peak.
    """
    peak = base_rate
    runs: list[dict[str, Any]] = []
    depth = base
    deepest = min(base * PEAK_SEARCH_MAX_DEPTH, PEAK_SEARCH_MAX_IN_FLIGHT // groups)
    while depth * PEAK_SEARCH_FACTOR <= deepest:
        depth *= PEAK_SEARCH_FACTOR
        row = await closed_loop(depth)
        rate = row["commits_per_s"]
        runs.append({"outstanding": depth} | row)
        gained = rate >= peak * (1 + PEAK_SEARCH_MIN_GAIN)
        peak = max(peak, rate)
        if not gained:
            break
    return peak, runs


def _rate_key(rate: float) -> str:
    """The key of a fixed-rate open-loop run among the fractions' ("13000/s")."""
    return f"{rate:g}/s"


def _open_loop_label(key: str) -> str:
    """How a run of ``open_loop`` reads: "at 50% of peak" or "at 13,000/s"."""
    if key.endswith("/s"):
        return f"at {float(key[:-2]):,.0f}/s"
    return f"at {float(key):.0%} of peak"


def _print_open_row(count: int, label: str, row: dict[str, Any]) -> None:
    print(
        f"{'open loop':>10} {count:>5} groups {label} "
        f"({row['offered_per_s']:,}/s offered): {row['commits_per_s']:>7,} commits/s, "
        f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, p999 {row['p999_ms']:.1f} ms, "
        f"{row['late']:,} of {row['scheduled']:,} sent late, {row['errors']:,} errors",
        file=sys.stderr,
        flush=True,
    )
    _print_write_times(row)
    _print_task_cpu(row)
    alone = row.get("generator")
    if alone:
        print(
            f"{'':>10} the load generator alone at node {alone['node']}'s "
            f"{alone['rate_per_s']:,}/s: {alone['cpu_us_per_request']:.1f} us CPU per request, "
            f"{alone['cpu_per_wall']:.2f} of a core (it runs inside that node)",
            file=sys.stderr,
            flush=True,
        )


def _print_write_times(row: dict[str, Any]) -> None:
    writes = row.get("durable_writes")
    if not writes:
        return
    parts = [
        f"node {i}: {w['writes']:,.0f} writes, waited p50/p99 <= {w['waited_p50_ms']:.2g}/"
        f"{w['waited_p99_ms']:.2g} ms, in engine <= {w['in_engine_p50_ms']:.2g}/"
        f"{w['in_engine_p99_ms']:.2g} ms"
        for i, w in writes.items()
    ]
    print(f"{'':>10} durable writes: " + "; ".join(parts), file=sys.stderr, flush=True)


def _fractions(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected fractions like 0.5,0.8: {text!r}") from exc
    if not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions of the peak must be in (0, 1]: {text!r}")
    return values


def _rates(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected rates like 3000,13000: {text!r}") from exc
    if not values or not all(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"rates must be requests/s > 0: {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    """This benchmark's command line."""
    p = bench_parser("cluster", __doc__)
    p.add_argument("--seconds", type=float, help="load duration per workload")
    p.add_argument("--groups", type=int, help="groups of the many-group run (default 1,000)")
    p.add_argument("--keep", action="store_true", help="keep the data directories")
    p.add_argument(
        "--fractions",
        type=_fractions,
        default=[0.5],
        help="fractions of the closed-loop peak to run open-loop at (default 0.5)",
    )
    p.add_argument(
        "--rates",
        type=_rates,
        default=[],
        help="fixed rates (requests/s, over all nodes) to run open-loop at as well",
    )
    p.add_argument(
        "--task-cpu",
        action="store_true",
        help="run the node processes with --task-cpu and print each trio task's CPU per "
        "ready cycle after every loopback run (the meter costs a little CPU itself)",
    )
    return p


def _configure(opts: argparse.Namespace) -> argparse.Namespace:
    """Fill in the sizes the flags imply."""
    if opts.seconds is None:
        opts.seconds = 0.5 if opts.tiny else 2.0 if opts.quick else 5.0
    if opts.groups is None:
        opts.groups = 10 if opts.tiny else 1_000
    # (groups, outstanding proposals per group)
    opts.workloads = [(1, 256), (opts.groups, 4)]
    # Deeper closed loops for the peak (see _find_peak); --tiny runs only the first.
    opts.peak_search = not opts.tiny
    return opts


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    return _configure(parser().parse_args(list(argv)))


async def _run(opts: argparse.Namespace, root: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine_info(), "seconds": opts.seconds}
    results["in_process"] = await _in_process(root, opts)
    results["loopback"] = await _loopback(root, opts)
    return results


def measure(args: argparse.Namespace) -> BenchReport:
    """Run both setups; return the figures (the raw rows are in ``details``)."""
    opts = _configure(args)
    random.seed(0)
    report = BenchReport("cluster", "3 node processes over TCP loopback vs 3 nodes in-process")
    with tempfile.TemporaryDirectory(prefix="multiraft-bench-cluster-") as tmp:
        root = Path(tmp)
        results = trio.run(_run, opts, root)
    _add_figures(report, results, [count for count, _ in opts.workloads])
    report.details = results
    return report


def _add_figures(report: BenchReport, results: dict[str, Any], counts: list[int]) -> None:
    """The table rows of each workload (``counts`` groups) from the raw ``results``."""
    for count in counts:
        loop, mem = results["loopback"][str(count)], results["in_process"][str(count)]
        for setup, row in (("loopback", loop), ("in-process", mem)):
            report.add(f"{setup} {count} groups commits", row["commits_per_s"], "commits/s")
            report.add(f"{setup} {count} groups p50", row["p50_ms"], "ms")
            report.add(f"{setup} {count} groups p99", row["p99_ms"], "ms")
        for key, at in loop.get("open_loop", {}).items():
            at_share = _open_loop_label(key)
            rate = at["commits_per_s"]
            report.add(f"loopback {count} groups open loop {at_share}", rate, "ops/s")
            for p in ("p50", "p99", "p999"):
                report.add(f"loopback {count} groups {p} {at_share}", at[f"{p}_ms"], "ms")
            writes = at.get("durable_writes")
            if writes:
                # The slowest node's: a commit waits for its leader's and a follower's write.
                for key, what in (("waited", "waited for"), ("in_engine", "in the engine")):
                    worst = max(w[f"{key}_p50_ms"] for w in writes.values())
                    label = f"  durable write {what}, p50 bound, slowest node, {at_share}"
                    report.add(label, worst, "ms")
            cores = sum(at["cpu_per_wall"].values())
            report.add(f"  CPU of the three nodes, {count} groups, {at_share}", cores, "cores")
            alone = at.get("generator")
            if alone:
                label = f"  load generator alone, {count} groups, CPU per request, {at_share}"
                report.add(label, alone["cpu_us_per_request"], "us")
        report.add(
            f"loopback {count} groups peak (best closed loop)", loop["peak_per_s"], "commits/s"
        )
        report.add(f"loopback {count} groups frames", loop["frames_per_s"], "frames/s")
        report.add(f"loopback {count} groups bytes", loop["bytes_per_s"], "B/s")
        ratio = loop["commits_per_s"] / max(1, mem["commits_per_s"])
        results[f"ratio_{count}"] = round(ratio, 3)
        report.add(f"loopback/in-process throughput, {count} groups", ratio, "x")


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; print the figures (and write JSON with ``--json``)."""
    return run_main(measure, parser(), argv)
