"""The pieces of ``multiraft bench cluster``: load generator, percentiles, merged figures."""

from __future__ import annotations

import pytest

from multiraft.bench.cluster_bench import (
    _busiest_share,
    _find_peak,
    _open_loop_label,
    _parse,
    _rate_key,
    _rate_shares,
    _split_by_leader,
    _summarize,
)
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
        "p999_ms": 4.0,
        "frames_per_s": 10,
        "bytes_per_s": 2000,
        "cpu_per_wall": {"1": 0.25, "2": 0.5},
    }


def test_summary_of_open_loop_runs_adds_up_scheduled_and_late_requests() -> None:
    runs = [
        {"commits": 8, "errors": 2, "scheduled": 10, "late": 3, "samples_ms": [5.0]},
        {"commits": 4, "errors": 0, "scheduled": 4, "late": 0, "samples_ms": [7.0]},
    ]
    cpu = {"cpu": {1: 0.0}}
    row = _summarize(runs, 1.0, cpu, cpu)
    assert (row["commits"], row["errors"], row["scheduled"], row["late"]) == (12, 2, 14, 3)
    assert (row["p50_ms"], row["p999_ms"]) == (5.0, 7.0)


def test_open_loop_rate_is_shared_in_proportion_to_the_groups_each_node_leads() -> None:
    assert _rate_shares({1: [1, 2, 3], 2: [4], 3: []}, 1000.0) == {1: 750.0, 2: 250.0, 3: 0.0}
    assert _rate_shares({1: [], 2: [], 3: []}, 1000.0) == {}


def test_open_loop_runs_at_half_the_peak_unless_told_other_fractions() -> None:
    assert _parse(["--tiny"]).fractions == [0.5]
    assert _parse(["--tiny", "--fractions", "0.25,0.5,0.75"]).fractions == [0.25, 0.5, 0.75]
    with pytest.raises(SystemExit):
        _parse(["--fractions", "1.5"])


def test_open_loop_also_runs_at_fixed_rates_when_told() -> None:
    assert _parse(["--tiny"]).rates == []
    assert _parse(["--tiny", "--rates", "3000,13000"]).rates == [3000.0, 13000.0]
    for bad in ("0", "-5", "fast", ""):
        with pytest.raises(SystemExit):
            _parse(["--rates", bad])
    assert _rate_key(13000.0) == "13000/s"
    assert _open_loop_label(_rate_key(13000.0)) == "at 13,000/s"
    assert _open_loop_label(str(0.25)) == "at 25% of peak"


def test_groups_go_to_their_known_leader_or_to_the_node_that_campaigned() -> None:
    assert _split_by_leader([1, 2, 3, 4], {1: 3, 2: 0, 4: 1}) == {1: [3, 4], 2: [], 3: [1, 2]}


def test_quick_mode_runs_two_second_workloads_of_1_and_n_groups() -> None:
    opts = _parse(["--quick", "--groups", "50"])
    assert opts.seconds == 2.0
    assert opts.workloads == [(1, 256), (50, 4)]
    assert opts.peak_search is True
    assert _parse(["--tiny"]).peak_search is False


async def _search(
    base: int, base_rate: float, rates: dict[int, float], groups: int = 1
) -> tuple[float, list[int]]:
    """Run the peak search against closed loops that make ``rates[depth]`` commits/s."""

    async def closed_loop(depth: int) -> dict[str, float]:
        return {"commits_per_s": rates[depth], "p50_ms": depth / 10, "p99_ms": depth / 5}

    peak, runs = await _find_peak(base, base_rate, closed_loop, groups)
    assert all(r["p50_ms"] == r["outstanding"] / 10 for r in runs)
    return peak, [r["outstanding"] for r in runs]


async def test_the_peak_search_goes_deeper_while_each_step_gains_ten_percent() -> None:
    # 1,024 gains 60%, 4,096 gains 20%, 16,384 only 5%: stop there, peak 60.5k.
    rates = {1024: 48_000.0, 4096: 57_600.0, 16384: 60_480.0, 65536: 90_000.0}
    assert await _search(256, 30_000.0, rates) == (60_480.0, [1024, 4096, 16384])
    # A deeper loop that loses ends the search; the peak stays the best one.
    assert await _search(256, 30_000.0, {1024: 29_000.0}) == (30_000.0, [1024])
    # Never more than 64 times the workload's depth...
    rates = {16: 10.0, 64: 100.0, 256: 1_000.0, 1024: 10_000.0}
    assert await _search(4, 1.0, rates) == (1_000.0, [16, 64, 256])
    # ...nor more than 16,384 proposals outstanding over all groups.
    assert await _search(4, 1.0, rates, groups=1_000) == (10.0, [16])
    assert await _search(256, 1.0, {1024: 2.0, 4096: 4.0, 16384: 8.0}) == (8.0, [1024, 4096, 16384])


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


async def test_load_retries_puts_refused_for_want_of_a_leader_without_committing_them() -> None:
    net = MemoryNetwork()
    led, leaderless = KVStateMachine(), KVStateMachine()
    async with open_node(NodeConfig(1, tick_interval=0.01), transport=net.transport(1)) as node:
        await node.create_group(1, [1], state_machine=led, campaign=True)
        # Node 2 never runs: group 2 can elect no leader, and every put to it is
        # refused at once (NotLeaderError) and sent again 10 ms later.
        await node.create_group(2, [1, 2], state_machine=leaderless)
        await node.propose(1, KVCommand("put", b"k").to_bytes())
        applied_before = led.applied_index
        result = await run_load(node, [1, 2], 0.3, outstanding=4, value_size=10)
    assert result["commits"] == led.applied_index - applied_before > 0
    assert leaderless.data == {}
    # Each retry round sends all four of group 2's slots again, refused together.
    assert result["errors"] >= 8
    assert result["errors"] % 4 == 0


def test_summary_reports_each_nodes_durable_writes_of_the_window() -> None:
    from multiraft.duration_histogram import DurationHistogram

    def hist(*seconds: float) -> DurationHistogram:
        h = DurationHistogram()
        for s in seconds:
            h.observe(s)
        return h

    # Node 1 wrote before the window (one 10 ms write) and twice in it.
    before = {
        "cpu": {1: 0.0},
        "writes": {1: {"waited": hist(0.010), "in_engine": hist(0.001)}},
    }
    after = {
        "cpu": {1: 0.5},
        "writes": {
            1: {
                "waited": hist(0.010, 0.000_3, 0.003),
                "in_engine": hist(0.001, 0.000_1, 0.000_1),
            }
        },
    }
    row = _summarize([{"commits": 2, "errors": 0, "samples_ms": [1.0]}], 1.0, before, after)
    assert row["durable_writes"] == {
        "1": {
            "writes": 2,
            "waited_p50_ms": 0.512,  # 300 µs: bucket [256, 512) µs
            "waited_p99_ms": 4.096,  # 3 ms: bucket [2048, 4096) µs
            "in_engine_p50_ms": 0.128,
            "in_engine_p99_ms": 0.128,
        }
    }


def test_the_generator_is_measured_at_the_busiest_nodes_share_of_the_rate() -> None:
    assert _busiest_share({1: 0.0, 2: 14000.0, 3: 0.0}) == (2, 14000.0)
    assert _busiest_share({1: 3000.0, 2: 4000.0, 3: 4000.0}) == (2, 4000.0)
