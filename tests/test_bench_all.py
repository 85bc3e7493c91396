"""``multiraft bench all``: one table of every benchmark's figures, and their JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from multiraft.bench.all_bench import markdown_table
from multiraft.bench.report import BenchReport

#: Figures each benchmark must report with a positive value, even at its tiny size.
POSITIVE_FIGURES = {
    "raft": [
        "batched (propose_batch, 1,000/cycle) entries/s",
        "batched (1,000 propose() calls/cycle) entries/s",
        "one at a time committed entries/s",
        "one at a time steps/s",
    ],
    "storage": [
        "engine:  1000-entry batches",
        "engine:  1000-entry batches syncs/write",
        "sqlite:  1000-entry batches",
        "engine / sqlite at 1,000-entry batches",
    ],
    "groups": [
        "create + elect 30 groups, 3 nodes",
        "heartbeat frames per tick per peer, 10 active groups",
        "heartbeat frames per tick per peer, 30 active groups",
        "  heartbeat bytes per tick per peer, 30 groups",
        "commits/s over 10 groups, 1 in flight per group",
        "commits/s over 10 groups, 8 in flight per group",
    ],
    "cluster": [
        "loopback 1 groups commits",
        "in-process 1 groups commits",
        "loopback 10 groups commits",
        "loopback 10 groups p99",
        "loopback/in-process throughput, 10 groups",
        "loopback 1 groups open loop at 50% of peak",
        "loopback 1 groups p50 at 50% of peak",
        "loopback 1 groups p99 at 50% of peak",
        "loopback 1 groups p999 at 50% of peak",
        "loopback 10 groups open loop at 50% of peak",
        "loopback 10 groups p99 at 50% of peak",
    ],
}


def test_bench_all_tiny_writes_every_benchmarks_named_positive_figures(tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    proc = subprocess.run(
        [sys.executable, "-m", "multiraft.cli", "bench", "all", "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["machine"]["cpus"] >= 1
    by_name = {b["benchmark"]: b for b in data["benchmarks"]}
    assert list(by_name) == ["raft", "storage", "groups", "cluster"]
    for name, labels in POSITIVE_FIGURES.items():
        assert by_name[name]["command"] == f"multiraft bench {name} --tiny"
        figures = {f["label"]: f["value"] for f in by_name[name]["figures"]}
        assert all(math.isfinite(v) and v >= 0 for v in figures.values()), figures
        for label in labels:
            assert figures[label] > 0, (name, label, figures)
    for count in ("1", "10"):
        loopback = by_name["cluster"]["details"]["loopback"][count]
        half = loopback["open_loop"]["0.5"]
        assert half["offered_per_s"] == round(0.5 * loopback["commits_per_s"])
        assert half["scheduled"] > 0
        assert half["commits"] + half["errors"] == half["scheduled"]
    heartbeats = {f["label"]: f["value"] for f in by_name["groups"]["figures"]}
    assert heartbeats["heartbeat frames per tick per peer, 30 active groups"] == 1.0
    stdout = proc.stdout.splitlines()
    assert stdout[1].startswith("# machine: ")
    assert "| figure | value | unit | command |" in stdout
    assert "| one at a time committed entries/s |" in proc.stdout


def test_markdown_table_has_one_row_per_figure_with_its_command() -> None:
    report = BenchReport("raft", "test")
    report.add("entries/s batched", 123456.7, "entries/s")
    report.add("  of which in GC", 0.25, "s")
    table = markdown_table([("multiraft bench raft --quick", report)])
    assert table.splitlines() == [
        "| figure | value | unit | command |",
        "|---|---:|---|---|",
        "| entries/s batched | 123,457 | entries/s | `multiraft bench raft --quick` |",
        "| of which in GC | 0.250 | s | `multiraft bench raft --quick` |",
    ]
