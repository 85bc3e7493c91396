"""One seed replays exactly: same trace hash in-process, in another process, and via the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio._core import _run as trio_run_module

from multiraft.testing.sim_runtime import CostMeter, SimulatedThreads, run_deterministic
from multiraft.testing.simulator import SimConfig, SimResult, run_seed

ROOT = Path(__file__).resolve().parent.parent
SMALL = SimConfig(groups=6, steps=6)


@pytest.fixture(scope="module")
def seed11() -> SimResult:
    return run_seed(11, SMALL)


def test_two_runs_of_one_seed_have_the_same_trace_hash(seed11: SimResult) -> None:
    first = seed11
    second = run_seed(11, SMALL)
    assert first.ok, first.failure_report()
    assert first.trace_events > 1000
    assert first.trace_hash == second.trace_hash
    assert first.trace_events == second.trace_events
    assert first.faults == second.faults
    assert first.fault_log == second.fault_log
    assert first.kv_operations == second.kv_operations
    assert first.simulated_seconds == second.simulated_seconds


def test_different_seeds_have_different_trace_hashes(seed11: SimResult) -> None:
    hashes = {run_seed(seed, SMALL).trace_hash for seed in (1, 2)} | {seed11.trace_hash}
    assert len(hashes) == 3


def test_a_seed_replays_to_the_same_hash_in_a_fresh_process_with_another_hash_seed(
    seed11: SimResult,
) -> None:
    here = seed11
    script = (
        "import json, sys\n"
        "from multiraft.testing.simulator import SimConfig, run_seed\n"
        "r = run_seed(11, SimConfig(groups=6, steps=6))\n"
        "print(json.dumps([r.trace_hash, r.trace_events]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [here.trace_hash, here.trace_events]


def test_replay_command_prints_the_same_hash_as_the_run(seed11: SimResult) -> None:
    here = seed11
    replay = ["sim", "--seed", "11", "--groups", "6", "--steps", "6"]
    out = subprocess.run(
        [sys.executable, "-m", "multiraft.cli", *replay],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"seed 11: trace hash {here.trace_hash} ({here.trace_events} events)" in out.stdout


def test_deterministic_run_restores_trio_scheduler_state_and_worker_threads() -> None:
    generator = trio_run_module._r
    before = generator.getstate()
    flag = trio_run_module._ALLOW_DETERMINISTIC_SCHEDULING
    real_run_sync = trio.to_thread.run_sync

    async def main() -> float:
        assert trio.to_thread.run_sync is not real_run_sync
        await trio.sleep(5)
        return trio.current_time()

    assert run_deterministic(main, seed=3, threads=SimulatedThreads(CostMeter())) == 5.0
    assert generator.getstate() == before
    assert flag is trio_run_module._ALLOW_DETERMINISTIC_SCHEDULING
    assert trio.to_thread.run_sync is real_run_sync


def test_simulated_threads_charge_reported_cost_after_the_work() -> None:
    meter = CostMeter()
    threads = SimulatedThreads(meter)
    seen: list[float] = []

    def work(x: int) -> int:
        meter.add(0.25)
        meter.add(0.5)
        seen.append(trio.current_time())
        return x * 2

    async def main() -> tuple[int, float]:
        result = await trio.to_thread.run_sync(work, 21)
        return result, trio.current_time()

    assert run_deterministic(main, seed=0, threads=threads) == (42, 0.75)
    assert seen == [0.0]
    assert threads.calls == 1
