"""The split of a node's CPU into a fixed cost per ready cycle and a cost per commit."""

from __future__ import annotations

import math

import pytest

from multiraft.bench.cluster_bench import _cycle_costs, _summarize
from multiraft.bench.cycle_cost import CycleCost, fit_cycle_cost


def _cpu(per_commit: float, per_cycle: float, commits: int, cycles: int) -> float:
    return per_commit * commits + per_cycle * cycles


def test_exact_runs_give_back_the_two_costs() -> None:
    # 4 us per commit and 0.8 ms per cycle, at large and at small cycles.
    runs = [
        (_cpu(4e-6, 8e-4, commits, cycles), commits, cycles)
        for commits, cycles in ((380_000, 217), (200_000, 1_540), (12_000, 2_280))
    ]
    fit = fit_cycle_cost(runs)
    assert fit is not None
    assert fit.per_commit == pytest.approx(4e-6, rel=1e-9)
    assert fit.per_cycle == pytest.approx(8e-4, rel=1e-9)
    assert fit.runs == 3
    assert fit.worst_relative_error == pytest.approx(0.0, abs=1e-9)
    assert fit.commits_per_cycle_break_even() == pytest.approx(200.0)


def test_two_runs_are_enough_and_the_worst_error_shows_a_poor_fit() -> None:
    fit = fit_cycle_cost([(1.0, 1_000, 100), (1.0, 2_000, 100)])
    # Equal CPU for twice the commits: commits look free, cycles carry it all.
    assert fit is not None
    assert fit.per_commit == pytest.approx(0.0, abs=1e-12)
    assert fit.per_cycle == pytest.approx(0.01)
    assert fit.worst_relative_error == pytest.approx(0.0, abs=1e-9)
    assert fit.commits_per_cycle_break_even() == math.inf
    noisy = fit_cycle_cost([(1.0, 1_000, 100), (3.0, 2_000, 100), (1.0, 1_500, 300)])
    assert noisy is not None
    assert noisy.worst_relative_error > 0.1


def test_no_fit_from_one_run_idle_runs_or_proportional_runs() -> None:
    assert fit_cycle_cost([]) is None
    assert fit_cycle_cost([(1.0, 1_000, 100)]) is None
    # Runs without commits or without cycles say nothing about one of the costs.
    assert fit_cycle_cost([(1.0, 1_000, 100), (0.1, 0, 50), (0.2, 300, 0)]) is None
    # Ten commits per cycle in both runs: the split is undetermined.
    assert fit_cycle_cost([(1.0, 1_000, 100), (2.0, 2_000, 200)]) is None


def test_summary_counts_each_nodes_cpu_seconds_and_ready_cycles() -> None:
    runs = [{"commits": 10, "errors": 0, "samples_ms": [1.0]}]
    before = {"cpu": {1: 1.0, 2: 2.0}, "cycles": {1: 100, 2: 50}}
    after = {"cpu": {1: 1.5, 2: 2.25}, "cycles": {1: 130, 2: 55}}
    row = _summarize(runs, 0.5, before, after)
    assert row["cpu_seconds"] == {"1": 0.5, "2": 0.25}
    assert row["ready_cycles"] == {"1": 30, "2": 5}
    assert row["cpu_per_wall"] == {"1": 1.0, "2": 0.5}


def test_cycle_costs_fit_each_node_over_a_workloads_runs() -> None:
    def row(commits: int, cycles: dict[str, int]) -> dict[str, object]:
        cost = {"1": (4e-6, 8e-4), "2": (1e-5, 9e-4)}
        return {
            "commits": commits,
            "ready_cycles": cycles,
            "cpu_seconds": {n: _cpu(*cost[n], commits, k) for n, k in cycles.items()},
        }

    rows = [row(380_000, {"1": 217, "2": 212}), row(12_000, {"1": 2_280, "2": 3_513})]
    # A row from before the counters existed is left out.
    costs = _cycle_costs([*rows, {"commits": 5}])
    assert sorted(costs) == ["1", "2"]
    assert isinstance(costs["2"], CycleCost)
    assert costs["1"].per_cycle == pytest.approx(8e-4)
    assert costs["2"].per_commit == pytest.approx(1e-5)
    assert _cycle_costs([rows[0]]) == {}
    assert _cycle_costs([]) == {}


def test_the_table_shows_the_nodes_cpu_per_open_loop_and_keeps_the_model_in_the_details() -> None:
    from multiraft.bench.cluster_bench import _add_figures
    from multiraft.bench.report import BenchReport

    row = {"commits_per_s": 30_000, "p50_ms": 7.5, "p99_ms": 12.5}
    open_row = row | {"p999_ms": 20.0, "cpu_per_wall": {"1": 0.45, "2": 0.8, "3": 0.5}}
    model = {"per_cycle": 0.0012, "per_commit": 6e-6, "runs": 7, "worst_relative_error": 0.2}
    loop = row | {
        "peak_per_s": 56_000,
        "frames_per_s": 900,
        "bytes_per_s": 9_000_000,
        "open_loop": {"0.5": open_row},
        "cpu_model": {"1": model},
    }
    results = {"loopback": {"1": loop}, "in_process": {"1": dict(row)}}
    report = BenchReport("cluster", "test")
    _add_figures(report, results, [1])
    figures = {label: (value, unit) for label, value, unit in report.figures}
    assert figures["  CPU of the three nodes, 1 groups, at 50% of peak"] == (1.75, "cores")
    assert not any("per ready cycle" in label for label in figures)
    assert results["loopback"]["1"]["cpu_model"] == {"1": model}
    assert results["ratio_1"] == 1.0


def test_each_tasks_cpu_per_ready_cycle_comes_from_two_meter_snapshots() -> None:
    before = {
        "cpu": {1: 0.0},
        "cycles": {1: 100},
        "tasks": {
            1: {
                "tasks": {"multiraft.node.Node._run_driver": {"steps": 10, "cpu_seconds": 0.5}},
                "io_wait": {"waits": 5, "cpu_seconds": 0.1},
            }
        },
    }
    after = {
        "cpu": {1: 1.0},
        "cycles": {1: 1_100},
        "tasks": {
            1: {
                "tasks": {
                    "multiraft.node.Node._run_driver": {"steps": 4_010, "cpu_seconds": 0.85},
                    "transport.tcp.TcpTransport._handle_inbound": {
                        "steps": 2_000,
                        "cpu_seconds": 0.23,
                    },
                    "idle": {"steps": 1, "cpu_seconds": 0.0},
                },
                "io_wait": {"waits": 7_005, "cpu_seconds": 0.19},
            }
        },
    }
    row = _summarize([{"commits": 5, "errors": 0, "samples_ms": [1.0]}], 1.0, before, after)
    # 1,000 cycles: the driver spent 0.35 s in them, the reader 0.23 s, polling 0.09 s.
    assert row["task_cpu_per_cycle_us"] == {
        "1": {
            "multiraft.node.Node._run_driver": 350.0,
            "transport.tcp.TcpTransport._handle_inbound": 230.0,
            "io wait": 90.0,
        }
    }
    assert next(iter(row["task_cpu_per_cycle_us"]["1"])) == "multiraft.node.Node._run_driver"


def test_task_cpu_is_left_out_when_the_nodes_do_not_meter_it() -> None:
    state = {"cpu": {1: 0.0}, "cycles": {1: 0}, "tasks": {}}
    row = _summarize([{"commits": 0, "errors": 0, "samples_ms": []}], 1.0, state, state)
    assert "task_cpu_per_cycle_us" not in row
    assert row["ready_cycles"] == {"1": 0}
