"""``multiraft bench all``: every benchmark in its quick form, one markdown table.

Runs ``raft``, ``storage``, ``groups`` and ``cluster`` one after the other with
``--quick`` (or ``--tiny``), then prints one table of every figure with the
command that measures it, and the machine line. ``--json FILE`` writes every
benchmark's report. Each benchmark's own progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from multiraft.bench.report import BenchReport, bench_parser, machine_info, machine_line

__all__ = ["SUITE", "main", "markdown_table"]

#: The benchmarks ``all`` runs, in order: name -> module.
SUITE: dict[str, str] = {
    "raft": "multiraft.bench.raft_bench",
    "storage": "multiraft.bench.storage_bench",
    "groups": "multiraft.bench.groups_bench",
    "cluster": "multiraft.bench.cluster_bench",
}


def _shown(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3f}"


def markdown_table(runs: Sequence[tuple[str, BenchReport]]) -> str:
    """One markdown table of every figure: figure, value, unit and the command measuring it."""
    lines = ["| figure | value | unit | command |", "|---|---:|---|---|"]
    for command, report in runs:
        for label, value, unit in report.figures:
            lines.append(f"| {label.strip()} | {_shown(value)} | {unit} | `{command}` |")
    return "\n".join(lines)


def _measure(name: str, flag: str) -> BenchReport:
    module = importlib.import_module(SUITE[name])
    make_parser = cast(Callable[[], argparse.ArgumentParser], module.parser)
    measure = cast(Callable[[argparse.Namespace], BenchReport], module.measure)
    return measure(make_parser().parse_args([flag]))


def main(argv: Sequence[str]) -> int:
    """Run the whole suite; print the table (and write JSON with ``--json``)."""
    args = bench_parser("all", __doc__).parse_args(list(argv))
    flag = "--tiny" if args.tiny else "--quick"
    runs: list[tuple[str, BenchReport]] = []
    started = time.perf_counter()
    for name in SUITE:
        print(f"# running multiraft bench {name} {flag}", file=sys.stderr, flush=True)
        runs.append((f"multiraft bench {name} {flag}", _measure(name, flag)))
    elapsed = time.perf_counter() - started
    print(f"# multiraft bench all {flag}: {elapsed:.0f} s")
    print(machine_line())
    print()
    print(markdown_table(runs))
    if args.json:
        data: dict[str, Any] = {
            "machine": machine_info(),
            "seconds": elapsed,
            "benchmarks": [dict(r.as_dict(), command=cmd) for cmd, r in runs],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    return 0
