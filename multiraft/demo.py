"""``multiraft demo``: a local cluster running the range-splitting KV store.

Starts three nodes (by default three processes talking TCP on 127.0.0.1;
``--in-process`` runs them in this process over the in-memory network), each
with its durable log engine in a temporary directory (or ``--data-dir``). A
self-checking workload writes, reads, deletes, compares-and-sets and scans keys
until the key space has split into ``--ranges`` ranges, showing progress on
one line. Then it checks that the directory tiles the key space, that every
replica of every range holds exactly the keys it must, and that a
linearizable read of every key returns its value; prints a summary and exits
0, or 1 with the reason when a check fails.

The store lives in :mod:`examples.rangekv`, imported when the command runs.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from examples.rangekv.client import HostLink, RangeClient
    from examples.rangekv.verify import VerifyReport
    from examples.rangekv.workload import Workload

__all__ = ["DemoFailure", "main"]

NODES = (1, 2, 3)


class DemoFailure(Exception):
    """A check of the demo failed; the message says which and how."""


class _Cluster(Protocol):
    @property
    def link(self) -> HostLink: ...

    async def bootstrap(self, replicas: Sequence[int] | None = None) -> None: ...

    def client(self, **options: float) -> RangeClient: ...


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="multiraft demo",
        description="run a local 3-node cluster with the range-splitting KV store",
    )
    p.add_argument("--ranges", type=int, default=1000, help="split until this many ranges")
    p.add_argument(
        "--in-process", action="store_true", help="run the nodes in this process (memory network)"
    )
    p.add_argument("--data-dir", help="keep the nodes' logs here (default: a temporary directory)")
    p.add_argument("--split-keys", type=int, default=16, help="split ranges above this many keys")
    p.add_argument("--workers", type=int, default=128, help="concurrent client workers")
    p.add_argument("--value-bytes", type=int, default=16, help="size of the values written")
    p.add_argument("--seed", type=int, default=0, help="seed of the workload")
    p.add_argument(
        "--time-limit", type=float, default=300.0, help="fail if the ranges are not reached by then"
    )
    p.add_argument(
        "--no-balance",
        action="store_true",
        help="leave new ranges' leaders where they were elected",
    )
    return p


@asynccontextmanager
async def _open_cluster(args: argparse.Namespace, data_root: str) -> AsyncIterator[_Cluster]:
    from examples.rangekv.host import RangeSettings

    balance = not args.no_balance
    if args.in_process:
        from examples.rangekv.local import open_local_cluster

        settings = RangeSettings(split_keys=args.split_keys, balance_leaders=balance)
        async with open_local_cluster(NODES, settings=settings, data_root=data_root) as local:
            yield local
    else:
        from examples.rangekv.processes import open_process_cluster

        async with open_process_cluster(
            NODES, data_root, split_keys=args.split_keys, balance_leaders=balance
        ) as processes:
            yield processes


class _Monitor:
    """Polls every node's counters; renders the progress line and the final table."""

    def __init__(self, link: HostLink, workload: Workload, target: int) -> None:
        self.link = link
        self.workload = workload
        self.target = target
        self.started = time.perf_counter()
        self.stats: dict[int, dict[str, int]] = {}
        self._tty = sys.stdout.isatty()
        self._last_line = 0.0

    async def poll(self) -> dict[int, dict[str, int]]:
        from examples.rangekv.protocol import StatsReply, StatsRequest

        out = {}
        for node_id in self.link.node_ids:
            reply = await self.link.call(node_id, StatsRequest())
            if not isinstance(reply, StatsReply):
                raise DemoFailure(f"node {node_id} answered a stats request with {reply!r}")
            out[node_id] = reply.stats
        self.stats = out
        return out

    def ranges(self) -> int:
        return max((s["directory_ranges"] for s in self.stats.values()), default=0)

    async def until_target(self, time_limit: float, interval: float = 0.5) -> None:
        """Print progress until the directory holds ``target`` ranges."""
        before = await self.poll()
        ops_before = self.workload.counts.total
        t_before = time.perf_counter()
        while self.ranges() < self.target:
            if time.perf_counter() - self.started > time_limit:
                self._end_line()
                raise DemoFailure(
                    f"only {self.ranges()} of {self.target} ranges after {time_limit:.0f}s"
                )
            await trio.sleep(interval)
            now = await self.poll()
            t_now = time.perf_counter()
            ops_now = self.workload.counts.total
            self._progress(
                before, now, (ops_now - ops_before) / (t_now - t_before), t_now - t_before
            )
            before, ops_before, t_before = now, ops_now, t_now
        self._end_line()

    def _progress(
        self,
        before: dict[int, dict[str, int]],
        now: dict[int, dict[str, int]],
        ops: float,
        dt: float,
    ) -> None:
        hb_key = "heartbeat_frames_sent"
        hb_frames = sum(now[n][hb_key] - before[n][hb_key] for n in now) / dt
        records = sum(
            now[n]["heartbeats_coalesced"] - before[n]["heartbeats_coalesced"] for n in now
        )
        groups = sum(s["groups"] for s in now.values())
        leaders = "/".join(str(now[n]["leaders"]) for n in sorted(now))
        line = (
            f"{time.perf_counter() - self.started:6.1f}s  ranges {self.ranges():>5}/{self.target}"
            f"  leaders {leaders}  {ops:>6,.0f} ops/s  hb frames/s {hb_frames:>5,.0f}"
            f" ({records / dt:>6,.0f} hb records/s) for {groups:,} group replicas"
        )
        if self._tty:
            print("\r" + line.ljust(120), end="", flush=True)
        elif time.perf_counter() - self._last_line >= 5.0:
            print(line, flush=True)
            self._last_line = time.perf_counter()

    def _end_line(self) -> None:
        if self._tty:
            print(flush=True)

    async def idle_rates(self, settle: float = 1.0, window: float = 2.0) -> dict[str, float]:
        """Frames and heartbeat records per second per node while nothing is written."""
        await trio.sleep(settle)
        before = await self.poll()
        await trio.sleep(window)
        now = await self.poll()
        hb_key = "heartbeat_frames_sent"
        n = len(now)
        return {
            "frames_per_s_per_node": sum(
                now[i]["frames_sent"] - before[i]["frames_sent"] for i in now
            )
            / window
            / n,
            "hb_frames_per_s_per_node": sum(now[i][hb_key] - before[i][hb_key] for i in now)
            / window
            / n,
            "hb_records_per_s_per_node": sum(
                now[i]["heartbeats_coalesced"] - before[i]["heartbeats_coalesced"] for i in now
            )
            / window
            / n,
            "quiesced": sum(s["quiesced_groups"] for s in now.values()),
            "groups": sum(s["groups"] for s in now.values()),
        }


def _summary(
    args: argparse.Namespace,
    data_root: str,
    monitor: _Monitor,
    workload: Workload,
    workload_seconds: float,
    report: VerifyReport,
    idle: dict[str, float],
) -> str:
    c = workload.counts
    mode = "in one process, memory network" if args.in_process else "3 processes, TCP 127.0.0.1"
    splits = report.ranges - 1
    lines = [
        "",
        f"multiraft demo: 3 nodes ({mode}), durable logs under {data_root}",
        f"  ranges       {report.ranges:>9,}  (target {args.ranges:,}; {splits:,} splits;"
        " the directory tiles the key space)",
        f"  keys         {report.keys:>9,}  (each checked on all {report.replicas_checked:,}"
        f" range replicas, and read back by linearizable scans of every range)",
        f"  operations   {c.total:>9,}  in {workload_seconds:.1f} s ="
        f" {c.total / max(workload_seconds, 1e-9):,.0f} ops/s"
        f" (puts {c.puts:,}, gets {c.gets:,}, deletes {c.deletes:,}, cas {c.cas:,},"
        f" scans {c.scans:,})",
        f"  replicas converged {report.seconds_to_converge:.1f} s after the workload stopped",
        "",
        "  node   groups  leaders  quiesced   frames sent  hb records sent  storage syncs"
        "  leaders handed over",
    ]
    for node_id in sorted(monitor.stats):
        s = monitor.stats[node_id]
        lines.append(
            f"  {node_id:>4} {s['groups']:>8,} {s['leaders']:>8,} {s['quiesced_groups']:>9,}"
            f" {s['frames_sent']:>13,} {s['heartbeats_coalesced']:>16,}"
            f" {s['storage_syncs']:>14,} {s.get('leaders_handed_over', 0):>20,}"
        )
    lines += [
        "",
        f"  idle for 2 s with {int(idle['groups']):,} group replicas"
        f" ({int(idle['quiesced']):,} quiesced): per node {idle['frames_per_s_per_node']:.1f}"
        f" frames/s ({idle['hb_frames_per_s_per_node']:.1f} carrying heartbeats),"
        f" {idle['hb_records_per_s_per_node']:.1f} heartbeat records/s",
        f"  total wall time {time.perf_counter() - monitor.started:.1f} s",
    ]
    return "\n".join(lines)


class _Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop the nodes cleanly and exit 130."""


async def _run(args: argparse.Namespace, data_root: str) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def interrupt() -> None:
                async for signum in signals:
                    raise _Interrupted(signal.Signals(signum).name)

            nursery.start_soon(interrupt)
            await _demo(args, data_root)
            nursery.cancel_scope.cancel()


async def _demo(args: argparse.Namespace, data_root: str) -> None:
    from examples.rangekv.verify import VerificationError, verify_store
    from examples.rangekv.workload import Workload

    mode = "in-process" if args.in_process else "TCP"
    print(
        f"multiraft demo: starting 3 nodes ({mode}), data in {data_root};"
        f" splitting into {args.ranges:,} ranges",
        flush=True,
    )
    async with _open_cluster(args, data_root) as cluster:
        await cluster.bootstrap()
        client = cluster.client()
        workload = Workload(
            client, workers=args.workers, seed=args.seed, value_bytes=args.value_bytes
        )
        monitor = _Monitor(cluster.link, workload, args.ranges)
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(workload.run)
            try:
                await monitor.until_target(args.time_limit)
            finally:
                workload.stop()
        workload_seconds = time.perf_counter() - started
        if workload.mismatches:
            shown = "\n  ".join(workload.mismatches[:10])
            raise DemoFailure(f"{len(workload.mismatches)} workload checks failed:\n  {shown}")
        try:
            report = await verify_store(cluster.link, client, workload.expected())
        except VerificationError as exc:
            raise DemoFailure(str(exc)) from exc
        idle = await monitor.idle_rates()
        await monitor.poll()
        print(_summary(args, data_root, monitor, workload, workload_seconds, report, idle))


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, exception groups unpacked, in order."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in _leaves(exc) if isinstance(e, kind)), None)


def _describe_failure(exc: BaseException) -> str:
    """The message of the first :class:`DemoFailure` inside ``exc``, else its first error."""
    failure = _find(exc, DemoFailure)
    if failure is not None:
        return str(failure)
    first = _leaves(exc)[0]
    return f"{type(first).__name__}: {first}"


def main(argv: Sequence[str]) -> int:
    """Run the demo; 0 when every check passed, 1 with the reason otherwise, 2 on bad usage.

    SIGINT (Ctrl-C) or SIGTERM stops the nodes cleanly and returns 130.
    """
    args = _parser().parse_args(list(argv))
    if args.ranges < 1 or args.split_keys < 2 or args.workers < 1:
        print(
            "multiraft demo: --ranges and --workers must be >= 1, --split-keys >= 2",
            file=sys.stderr,
        )
        return 2
    data_root = args.data_dir or tempfile.mkdtemp(prefix="multiraft-demo-")
    failure: str | None = None
    try:
        trio.run(_run, args, data_root)
    except Exception as exc:  # any failure ends with a clear message and exit 1
        if _find(exc, _Interrupted) is not None:
            print(f"\nmultiraft demo: interrupted (data kept in {data_root})", file=sys.stderr)
            return 130
        failure = _describe_failure(exc)
    if failure is not None:
        print(f"\nmultiraft demo FAILED: {failure}\n(data kept in {data_root})", file=sys.stderr)
        return 1
    if args.data_dir is None:
        shutil.rmtree(data_root, ignore_errors=True)
    print("multiraft demo: all checks passed", flush=True)
    return 0
