"""The opt-in meter of each trio task's CPU (``multiraft node --task-cpu``)."""

from __future__ import annotations

import time

import trio

from multiraft.node_process import _parser
from multiraft.task_cpu import TaskCpuMeter


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_each_tasks_steps_and_cpu_are_charged_to_its_name() -> None:
    meter = TaskCpuMeter()

    async def busy() -> None:
        for _ in range(3):
            _burn(0.01)
            await trio.sleep(0)

    async def idle() -> None:
        await trio.sleep(0.05)

    async def main() -> None:
        trio.lowlevel.add_instrument(meter)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(busy, name="busy")
                nursery.start_soon(idle, name="idle")
        finally:
            trio.lowlevel.remove_instrument(meter)

    trio.run(main)
    got = meter.snapshot()
    tasks = got["tasks"]
    # Three burning steps, then the step that returns: the busiest task comes first.
    assert next(iter(tasks)) == "busy"
    assert tasks["busy"]["steps"] == 4
    assert 0.03 <= tasks["busy"]["cpu_seconds"] < 0.5
    # The step in which the meter was added (and the one it was removed in) is not
    # charged: no other task shows the thread's CPU since it started (imports and all).
    others = [row["cpu_seconds"] for name, row in tasks.items() if name not in ("busy", "idle")]
    assert all(seconds < 0.02 for seconds in others)
    assert not any(name.endswith(".main") for name in tasks)
    # The sleeper: one step to start its sleep, one to return.
    assert tasks["idle"]["steps"] == 2
    assert tasks["idle"]["cpu_seconds"] < tasks["busy"]["cpu_seconds"]
    # The loop polled while the sleeper slept; its CPU, not its wait, is counted.
    assert got["io_wait"]["waits"] >= 1
    assert 0.0 <= got["io_wait"]["cpu_seconds"] < 0.05


def test_a_fresh_meter_reports_nothing() -> None:
    assert TaskCpuMeter().snapshot() == {
        "tasks": {},
        "io_wait": {"waits": 0, "cpu_seconds": 0.0},
    }


def test_node_processes_meter_task_cpu_only_when_told() -> None:
    base = ["--id", "1", "--listen", "127.0.0.1:7001", "--data-dir", "d"]
    assert _parser().parse_args(base).task_cpu is False
    assert _parser().parse_args([*base, "--task-cpu"]).task_cpu is True
