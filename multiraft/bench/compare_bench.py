"""``multiraft bench compare``: multiraft against PySyncObj, same machine, same run.

Needs the optional ``pysyncobj`` package (``pip install '.[compare]'``); without
it the command exits with status 2. Two measurements:

* **throughput**: three processes on loopback hosting one replicated key-value
  group, the leader keeping ``--outstanding`` 100-byte puts in flight for
  ``--seconds``: first three PySyncObj processes (default configuration), then
  three ``multiraft node`` processes (the loopback workload of ``bench
  cluster``); committed ops/s, p50/p99 latency and the multiraft/PySyncObj ratio;
* **many groups**: three PySyncObj processes each adding groups (a port and a
  tick thread per group per node) ``--step`` at a time until every group has a
  leader, stopping at ``--max-groups``, at a time bound or at a memory bound;
  reports the count reached, RSS per group replica and idle CPU per process.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from multiraft.bench.report import BenchReport, bench_parser, run_main

__all__ = ["main", "measure", "parser"]

_PEER = [sys.executable, "-m", "multiraft.bench.pysyncobj_peer"]


def _run_peers(mode_args: list[list[str]], timeout: float) -> list[list[dict[str, Any]]]:
    """Start one peer process per argument list; each one's JSON lines."""
    procs = [
        subprocess.Popen(_PEER + a, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for a in mode_args
    ]
    out = []
    try:
        for p in procs:
            stdout, _ = p.communicate(timeout=timeout)
            out.append([json.loads(line) for line in stdout.splitlines() if line.startswith("{")])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def _pysyncobj_load(seconds: float, outstanding: int) -> dict[str, Any]:
    from multiraft.node_launcher import free_ports

    ports = ",".join(str(p) for p in free_ports(3))
    common = ["--ports", ports, "--seconds", str(seconds), "--outstanding", str(outstanding)]
    lines = _run_peers([["load", "--node", str(i), *common] for i in (1, 2, 3)], seconds + 90)
    leaders = [r for rs in lines for r in rs if r.get("leader")]
    if len(leaders) != 1:
        raise RuntimeError(f"PySyncObj load run found no single leader: {lines}")
    row = leaders[0]
    row["commits_per_s"] = row["commits"] / row["elapsed"]
    return row


def _pysyncobj_groups(max_groups: int, step: int, seconds: float, rss_mib: int) -> dict[str, Any]:
    base = random.Random().randrange(10_000, 32_000 - 3 * max_groups)
    common = [
        "--base-port", str(base), "--max-groups", str(max_groups), "--step", str(step),
        "--seconds", str(seconds), "--rss-mib", str(rss_mib), "--idle", "2",
    ]  # fmt: skip
    lines = _run_peers([["groups", "--node", str(i), *common] for i in (1, 2, 3)], seconds + 120)
    finals = [r for rs in lines for r in rs if r.get("final")]
    if len(finals) != 3:
        raise RuntimeError(f"PySyncObj groups run did not finish on every node: {lines}")
    return {
        "reached": min(f["reached"] for f in finals),
        "stopped_by": sorted({f["stopped_by"] for f in finals}),
        "rss_per_group": max(f["rss_per_group"] for f in finals),
        "threads": max(f["threads"] for f in finals),
        "idle_cpu": max(f["idle_cpu"] for f in finals),
    }


def _multiraft_load(seconds: float, outstanding: int) -> dict[str, Any]:
    from multiraft.bench.cluster_bench import _loopback

    opts = argparse.Namespace(seconds=seconds, workloads=[(1, outstanding)])
    with tempfile.TemporaryDirectory(prefix="multiraft-bench-compare-") as tmp:
        rows = trio.run(_loopback, Path(tmp), opts)
    row: dict[str, Any] = rows["1"]
    return row


def parser() -> argparse.ArgumentParser:
    """This benchmark's command line."""
    p = bench_parser("compare", __doc__)
    p.add_argument("--seconds", type=float, help="load duration of each throughput run")
    p.add_argument("--outstanding", type=int, default=256, help="puts in flight on the leader")
    p.add_argument("--max-groups", type=int, help="most PySyncObj groups to try per node")
    p.add_argument("--step", type=int, default=100, help="PySyncObj groups added at a time")
    p.add_argument("--rss-mib", type=int, default=1024, help="memory bound per PySyncObj node")
    return p


def measure(args: argparse.Namespace) -> BenchReport:
    """Run both libraries; return the figures."""
    seconds = args.seconds or (1.0 if args.tiny else 3.0 if args.quick else 5.0)
    max_groups = args.max_groups or (20 if args.tiny else 500 if args.quick else 2_000)
    bound = 10.0 if args.tiny else 30.0 if args.quick else 90.0
    report = BenchReport(
        "compare", "PySyncObj vs multiraft, 3 processes on TCP loopback, 100-byte puts"
    )
    theirs = _pysyncobj_load(seconds, args.outstanding)
    ours = _multiraft_load(seconds, args.outstanding)
    for name, row in (("PySyncObj", theirs), ("multiraft", ours)):
        report.add(f"{name} 1 group committed ops/s", row["commits_per_s"], "ops/s")
        report.add(f"{name} 1 group p50", row["p50_ms"], "ms")
        report.add(f"{name} 1 group p99", row["p99_ms"], "ms")
    ratio = ours["commits_per_s"] / max(1e-9, theirs["commits_per_s"])
    report.add("multiraft / PySyncObj committed ops/s", ratio, "x")
    many = _pysyncobj_groups(max_groups, min(args.step, max_groups), bound, args.rss_mib)
    report.add(f"PySyncObj groups reached per node (of {max_groups:,})", many["reached"], "groups")
    report.add("PySyncObj RSS per group replica", many["rss_per_group"], "bytes")
    report.add("PySyncObj threads per node", many["threads"], "threads")
    report.add("PySyncObj idle CPU per node at that count", 100 * many["idle_cpu"], "% of a core")
    report.details = {"pysyncobj": theirs, "multiraft": ours, "pysyncobj_groups": many}
    return report


def main(argv: Sequence[str]) -> int:
    """Run the comparison, or exit 2 when PySyncObj is not installed."""
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        print(
            "multiraft bench compare needs PySyncObj: pip install 'multiraft[compare]'"
            " (or pip install pysyncobj)",
            file=sys.stderr,
        )
        return 2
    return run_main(measure, parser(), argv)
