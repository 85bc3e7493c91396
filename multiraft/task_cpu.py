"""Which of a process's trio tasks its event-loop CPU goes to (an opt-in meter).

A node's fixed cost per ready cycle is spread over several tasks: the driver,
one reader per inbound connection, one writer per peer, the receiver that
hands frames to the driver, trio's own task that runs what worker threads send
back. A sampling profiler shows functions, not which task ran them or how
often. :class:`TaskCpuMeter` is a trio instrument that charges the thread CPU
time of every task step to the task's name, and the CPU the event loop spends
polling for I/O to ``io_wait``; divided by the node's ``ready_cycles`` it gives
the CPU per cycle of each task.

It reads the thread's CPU clock twice per task step (a system call each), so
it costs a little of what it measures: ``multiraft node --task-cpu`` turns it
on for a node process, whose admin ``stats`` then carry its :meth:`snapshot`.
"""

from __future__ import annotations

import time
from typing import Any

import trio

__all__ = ["TaskCpuMeter"]


class TaskCpuMeter(trio.abc.Instrument):
    """Thread CPU seconds of each trio task's steps, by task name."""

    def __init__(self) -> None:
        # name -> [steps, CPU seconds]
        self._tasks: dict[str, list[Any]] = {}
        self._io_waits = 0
        self._io_wait_seconds = 0.0
        # -1: no step or poll began since the meter was added (it may be added,
        # or removed, in the middle of one, which must not count).
        self._step_began = -1.0
        self._wait_began = -1.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        """Start the clock for ``task``'s step."""
        self._step_began = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        """Charge the step that just ended to ``task``'s name."""
        began = self._step_began
        if began < 0:
            return
        self._step_began = -1.0
        spent = time.thread_time() - began
        row = self._tasks.get(task.name)
        if row is None:
            row = self._tasks[task.name] = [0, 0.0]
        row[0] += 1
        row[1] += spent

    def before_io_wait(self, timeout: float) -> None:
        """Start the clock for the loop's poll."""
        self._wait_began = time.thread_time()

    def after_io_wait(self, timeout: float) -> None:
        """Charge the poll that just ended (its CPU, not its waiting) to ``io_wait``."""
        began = self._wait_began
        if began < 0:
            return
        self._wait_began = -1.0
        self._io_waits += 1
        self._io_wait_seconds += time.thread_time() - began

    def snapshot(self) -> dict[str, Any]:
        """``{"tasks": {name: {"steps", "cpu_seconds"}}, "io_wait": {"waits", "cpu_seconds"}}``
        since the meter was added, busiest task first."""
        rows = sorted(self._tasks.items(), key=lambda item: item[1][1], reverse=True)
        return {
            "tasks": {name: {"steps": n, "cpu_seconds": s} for name, (n, s) in rows},
            "io_wait": {"waits": self._io_waits, "cpu_seconds": self._io_wait_seconds},
        }
