"""The pieces of ``multiraft bench cluster``: load generator, percentiles, merged figures."""

from __future__ import annotations

import pytest

from multiraft.bench.cluster_bench import _parse, _split_by_leader, _summarize
from multiraft.bench.load import percentile, run_load
from multiraft.config import NodeConfig
from multiraft.kv import KVCommand, KVStateMachine
from multiraft.node import open_node
from transport.memory import MemoryNetwork


@pytest.mark.parametrize(
    ("fraction", "expected"), [(0.0, 1.0), (0.5, 50.0), (0.99, 99.0), (1.0, 100.0)]
)
def test_percentile_is_the_nearest_rank(fraction: float, expected: float) -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, fraction) == expected


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile([], 0.5) == 0.0


def test_summary_merges_node_results_into_rates_and_percentiles() -> None:
    runs = [
        {"commits": 300, "errors": 1, "samples_ms": [1.0, 2.0, 3.0]},
        {"commits": 100, "errors": 0, "samples_ms": [4.0]},
    ]
    before = {"frames": 10, "bytes": 1000, "cpu": {1: 1.0, 2: 2.0}}
    after = {"frames": 30, "bytes": 5000, "cpu": {1: 1.5, 2: 3.0}}
    row = _summarize(runs, 2.0, before, after)
    assert row == {
        "commits": 400,
        "errors": 1,
        "seconds": 2.0,
        "commits_per_s": 200,
        "p50_ms": 2.0,
        "p99_ms": 4.0,
        "frames_per_s": 10,
        "bytes_per_s": 2000,
        "cpu_per_wall": {"1": 0.25, "2": 0.5},
    }


def test_groups_go_to_their_known_leader_or_to_the_node_that_campaigned() -> None:
    assert _split_by_leader([1, 2, 3, 4], {1: 3, 2: 0, 4: 1}) == {1: [3, 4], 2: [], 3: [1, 2]}


def test_quick_mode_runs_two_second_workloads_of_1_and_n_groups() -> None:
    opts = _parse(["--quick", "--groups", "50"])
    assert opts.seconds == 2.0
    assert opts.workloads == [(1, 256), (50, 4)]


async def test_load_counts_exactly_the_puts_the_state_machine_applied() -> None:
    net = MemoryNetwork()
    sm = KVStateMachine()
    async with open_node(NodeConfig(1, tick_interval=0.01), transport=net.transport(1)) as node:
        await node.create_group(1, [1], state_machine=sm, campaign=True)
        await node.propose(1, KVCommand("put", b"k").to_bytes())
        applied_before = sm.applied_index
        result = await run_load(node, [1], 0.3, outstanding=8, value_size=10, samples=50)
    assert result["errors"] == 0
    assert result["commits"] > 0
    assert sm.applied_index - applied_before == result["commits"]
    assert sorted(sm.data) == [b"k"] + [b"key-%d" % s for s in range(8)]
    assert all(v == b"v" * 10 for k, v in sm.data.items() if k != b"k")
    assert 0 < len(result["samples_ms"]) <= 51
    assert result["p50_ms"] <= result["p99_ms"]
