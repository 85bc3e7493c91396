"""``multiraft bench storage``: the durable log engine against the SQLite reference.

For 100-byte entries spread over 1,000 groups, written in batches of 1, 100
and 1,000 entries (one entry per group per batch, each batch one durable
write): durable entries per second and syncs per write. Then the latency of
reading a group's last entry (the tail a leader re-reads) and, after closing
and reopening, of reading its oldest entry (from disk), and the reopen time.
Both engines run the same workload in the same run, each in a fresh
temporary directory on the same file system.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from multiraft.bench.report import BenchReport, bench_parser, run_main
from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import Entry

__all__ = ["main", "measure", "parser", "run_engine"]

_GROUPS = 1_000
_ENTRY_BYTES = 100
_BATCHES = (1, 100, 1_000)


def _batches(batch_entries: int, count: int, next_index: dict[int, int]) -> list[WriteBatch]:
    """``count`` batches of ``batch_entries`` entries, one per group, groups in rotation."""
    data = b"x" * _ENTRY_BYTES
    out = []
    group = 1
    for _ in range(count):
        writes = []
        for _ in range(batch_entries):
            index = next_index[group]
            next_index[group] = index + 1
            writes.append(GroupWrite(group, entries=[Entry(1, index, data=data)]))
            group = group % _GROUPS + 1
        out.append(WriteBatch(writes))
    return out


def run_engine(
    open_engine: Callable[[], Any], quick: bool, rng: random.Random, *, tiny: bool = False
) -> dict[str, float]:
    """Run the whole workload on the engine ``open_engine`` opens; returns its figures."""
    if tiny:
        counts = {1: 20, 100: 5, 1_000: 2}
    elif quick:
        counts = {1: 300, 100: 60, 1_000: 20}
    else:
        counts = {1: 2_000, 100: 300, 1_000: 200}
    engine = open_engine()
    next_index = dict.fromkeys(range(1, _GROUPS + 1), 1)
    out: dict[str, float] = {}
    for size in _BATCHES:
        batches = _batches(size, counts[size], next_index)
        writes_before, syncs_before = engine.writes, engine.syncs
        started = time.perf_counter()
        for batch in batches:
            engine.write(batch)
        elapsed = time.perf_counter() - started
        writes = engine.writes - writes_before
        out[f"entries_per_s_{size}"] = size * len(batches) / elapsed
        out[f"syncs_per_write_{size}"] = (engine.syncs - syncs_before) / max(writes, 1)
    groups = list(range(1, _GROUPS + 1))
    reads = 200 if tiny else 2_000 if quick else 20_000
    picks = [rng.choice(groups) for _ in range(reads)]
    views = {g: engine.storage(g) for g in groups}
    lasts = {g: views[g].last_index() for g in groups}
    started = time.perf_counter()
    for g in picks:
        views[g].entries(lasts[g], lasts[g] + 1)
    out["tail_read_us"] = (time.perf_counter() - started) / reads * 1e6
    engine.close()
    started = time.perf_counter()
    engine = open_engine()
    out["reopen_s"] = time.perf_counter() - started
    views = {g: engine.storage(g) for g in groups}
    started = time.perf_counter()
    for g in picks:
        views[g].entries(1, 2)
    out["old_read_us"] = (time.perf_counter() - started) / reads * 1e6
    out["entries_on_disk"] = float(sum(next_index.values()) - _GROUPS)
    engine.close()
    return out


def parser() -> argparse.ArgumentParser:
    """This benchmark's command line."""
    p = bench_parser("storage", __doc__)
    p.add_argument("--dir", help="directory for the engines' files (default: a temp dir)")
    p.add_argument("--seed", type=int, default=1, help="seed of the read pattern")
    return p


def measure(args: argparse.Namespace) -> BenchReport:
    """Run the storage benchmark on both engines; return the figures."""

    from storage.engine import DurableLogEngine
    from storage.sqlite_log import SqliteLogEngine

    base = tempfile.mkdtemp(prefix="multiraft-storage-bench-", dir=args.dir)
    report = BenchReport(
        "storage",
        f"{_ENTRY_BYTES}-byte entries over {_GROUPS:,} groups, one durable write per batch",
    )
    try:
        engine_dir = os.path.join(base, "engine")
        sqlite_path = os.path.join(base, "reference.sqlite3")
        figures = {
            "engine": run_engine(
                lambda: DurableLogEngine.open(engine_dir),
                args.quick,
                random.Random(args.seed),
                tiny=args.tiny,
            ),
            "sqlite": run_engine(
                lambda: SqliteLogEngine.open(sqlite_path),
                args.quick,
                random.Random(args.seed),
                tiny=args.tiny,
            ),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for name, f in figures.items():
        for size in _BATCHES:
            report.add(f"{name}: {size:>5}-entry batches", f[f"entries_per_s_{size}"], "entries/s")
            report.add(
                f"{name}: {size:>5}-entry batches syncs/write", f[f"syncs_per_write_{size}"], ""
            )
        report.add(f"{name}: tail read (last entry)", f["tail_read_us"], "us")
        report.add(f"{name}: reopen ({f['entries_on_disk']:,.0f} entries)", f["reopen_s"], "s")
        report.add(f"{name}: old read after reopen (first entry)", f["old_read_us"], "us")
    ratio = figures["engine"]["entries_per_s_1000"] / figures["sqlite"]["entries_per_s_1000"]
    report.add("engine / sqlite at 1,000-entry batches", ratio, "x")
    return report


def main(argv: Sequence[str]) -> int:
    """Run the storage benchmark and print its figures."""
    return run_main(measure, parser(), argv)
