"""``multiraft sim``: run the deterministic fault simulator over many seeds, or replay one.

::

    multiraft sim --seeds 1000 --groups 100 --steps 40   # a sweep: progress bar, final table
    multiraft sim --seed 17 --trace                      # replay one seed, readable trace
    multiraft sim --workload rangekv --seeds 50          # the range store: splits, moves

A sweep runs seeds ``--start-seed`` .. ``--start-seed + --seeds - 1``. Every
failing seed prints its violations, a summary of its fault schedule and the
command that replays it; the exit status is 1 when any seed failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from multiraft.testing.faults import FAULT_KINDS
from multiraft.testing.simulator import SimConfig, SimResult, run_seed

__all__ = ["SweepTotals", "main"]

_BAR_WIDTH = 30


def _parser() -> argparse.ArgumentParser:
    defaults = SimConfig()
    p = argparse.ArgumentParser(
        prog="multiraft sim",
        description="deterministic simulation of a multiraft cluster under faults",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="run (replay) this one seed")
    which.add_argument("--seeds", type=int, default=100, help="number of seeds in a sweep")
    p.add_argument("--start-seed", type=int, default=0, help="first seed of a sweep")
    p.add_argument(
        "--workload",
        choices=("groups", "rangekv"),
        default=defaults.workload,
        help="many raft groups, or the range-splitting KV store of examples/rangekv",
    )
    p.add_argument("--nodes", type=int, default=defaults.nodes, help="nodes (3-9)")
    p.add_argument("--groups", type=int, default=defaults.groups, help="raft groups (groups)")
    p.add_argument("--keys", type=int, default=defaults.keys, help="client keys (rangekv)")
    p.add_argument(
        "--steps", type=int, default=defaults.steps, help="fault schedule steps per seed"
    )
    p.add_argument("--trace", action="store_true", help="print the readable event trace")
    p.add_argument(
        "--verbose", action="store_true", help="with --trace, also every frame, write and apply"
    )
    return p


class SweepTotals:
    """What a sweep found, summed over its seeds."""

    def __init__(self) -> None:
        self.seeds = 0
        self.failed_seeds: list[int] = []
        self.violations = 0
        self.faults: Counter[str] = Counter()
        self.kv_operations = 0
        self.acknowledged = 0
        self.entries_committed = 0
        self.elections = 0
        self.membership_changes = 0
        self.splits = 0
        self.simulated_seconds = 0.0
        self.wall_seconds = 0.0

    def add(self, r: SimResult) -> None:
        """Count one seed's result."""
        self.seeds += 1
        if not r.ok:
            self.failed_seeds.append(r.seed)
        self.violations += len(r.violations)
        self.faults.update(r.faults)
        self.kv_operations += r.kv_operations
        self.acknowledged += r.acknowledged
        self.entries_committed += r.entries_committed
        self.elections += r.elections
        self.membership_changes += r.membership_changes
        self.splits += r.splits
        self.simulated_seconds += r.simulated_seconds
        self.wall_seconds += r.wall_seconds

    def table(self) -> str:
        """The final table."""
        rate = self.seeds / self.wall_seconds if self.wall_seconds else 0.0
        faults = sum(self.faults.values())
        rows = [
            ("seeds run", f"{self.seeds} ({rate:.2f} seeds/s, {self.wall_seconds:.1f} s)"),
            ("simulated time", f"{self.simulated_seconds:.0f} s"),
            ("faults injected", str(faults)),
        ]
        rows += [(f"  {kind}", str(self.faults[kind])) for kind in FAULT_KINDS]
        rows += [
            ("operations checked", str(self.kv_operations + self.acknowledged)),
            ("  KV (linearizability)", str(self.kv_operations)),
            ("  acknowledged proposals", str(self.acknowledged)),
            ("entries committed", str(self.entries_committed)),
            ("elections", str(self.elections)),
            ("membership changes", str(self.membership_changes)),
            ("range splits", str(self.splits)),
            ("violations", str(self.violations)),
        ]
        if self.failed_seeds:
            shown = " ".join(map(str, self.failed_seeds[:20]))
            more = " ..." if len(self.failed_seeds) > 20 else ""
            rows.append(("failing seeds", shown + more))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _progress(out: TextIO, done: int, total: int, failed: int, started: float) -> None:
    filled = _BAR_WIDTH * done // total if total else _BAR_WIDTH
    rate = done / (time.perf_counter() - started + 1e-9)
    out.write(
        f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{total} seeds"
        f"  {failed} failing  {rate:.2f} seeds/s"
    )
    out.flush()


def _config(args: argparse.Namespace, *, keep_trace: bool) -> SimConfig:
    return SimConfig(
        workload=args.workload,
        nodes=args.nodes,
        groups=args.groups,
        keys=args.keys,
        steps=args.steps,
        keep_trace=keep_trace,
        verbose_trace=args.verbose,
    )


def _run_one(args: argparse.Namespace, out: TextIO) -> int:
    r = run_seed(args.seed, _config(args, keep_trace=args.trace))
    if args.trace:
        for line in r.trace_lines:
            print(line, file=out)
        print(file=out)
    totals = SweepTotals()
    totals.add(r)
    print(f"seed {r.seed}: trace hash {r.trace_hash} ({r.trace_events} events)", file=out)
    print(totals.table(), file=out)
    if not r.ok:
        print(r.failure_report(), file=out)
        return 1
    return 0


def _sweep(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = _config(args, keep_trace=False)
    totals = SweepTotals()
    started = time.perf_counter()
    total = args.seeds
    for seed in range(args.start_seed, args.start_seed + total):
        r = run_seed(seed, config)
        totals.add(r)
        if not r.ok:
            err.write("\n")
            print(r.failure_report(), file=out)
        _progress(err, totals.seeds, total, len(totals.failed_seeds), started)
    err.write("\n")
    print(totals.table(), file=out)
    return 1 if totals.failed_seeds else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``multiraft sim``."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        _config(args, keep_trace=False)
    except ValueError as exc:
        print(f"multiraft sim: {exc}", file=sys.stderr)
        return 2
    if args.seed is None and args.seeds < 1:
        print("multiraft sim: --seeds must be at least 1", file=sys.stderr)
        return 2
    # Faults make raft and the coordinator log warnings by the thousand; the
    # simulator reports what matters itself.
    logger = logging.getLogger("multiraft")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        if args.seed is not None:
            return _run_one(args, sys.stdout)
        return _sweep(args, sys.stdout, sys.stderr)
    finally:
        logger.setLevel(level)
