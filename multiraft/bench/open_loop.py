"""Open-loop proposal load: requests leave on a fixed schedule, whatever the replies do.

A closed-loop generator (:func:`multiraft.bench.load.run_load`) sends the next
request only when one completes, so a slow reply also delays the requests
behind it and their wait is never measured ("coordinated omission"). Here the
``k``-th request is due at ``start + k / rate`` and its latency is measured
from that scheduled time, not from when it actually left: if the generator
runs late (the event loop was busy, or ``max_in_flight`` requests are already
waiting), the lateness counts against the system, as a user arriving on
schedule would see it.

Requests go to the groups round-robin. ``propose`` is any coroutine taking a
group id and a command (``Node.propose`` in a benchmark), and time is trio's
clock, so tests can drive the generator with ``trio.testing.MockClock``.

The generator wakes at most once per ``wake_every`` seconds (1 ms by default)
and sends every request due by then: thousands of timer wake-ups a second would
cost the node hosting the generator more CPU than the requests themselves. A
request may thus leave up to ``wake_every`` after its scheduled time, and that
delay counts in its latency like any other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from multiraft.bench.load import latency_summary
from multiraft.errors import NotLeaderError, ProposalDroppedError, ProposalTimeoutError
from multiraft.kv import KVCommand

__all__ = ["Propose", "generator_cost", "run_open_loop", "send_times"]

#: Submits one command to one group and returns once it is applied.
Propose = Callable[[int, bytes], Awaitable[object]]

#: Refusals a request may meet: counted as errors, never retried (the schedule moves on).
_REFUSED = (NotLeaderError, ProposalDroppedError, ProposalTimeoutError)


_Job = tuple[int, bytes, float]


class _Worker:
    """A task of the generator's pool: its current request (group, command, due time)."""

    __slots__ = ("_task", "job")

    def __init__(self, job: _Job) -> None:
        self.job = job
        self._task: trio.lowlevel.Task | None = None

    async def park(self, parked: list[_Worker]) -> bool:
        """Wait in ``parked`` for the next request; False when there are no more."""
        self._task = trio.lowlevel.current_task()
        parked.append(self)
        await trio.lowlevel.wait_task_rescheduled(self._abort)
        return self._task is not None

    def hand(self, job: _Job | None) -> None:
        """Wake the parked task with ``job`` (None: the schedule is over)."""
        task = self._task
        assert task is not None
        if job is None:
            self._task = None
        else:
            self.job = job
        trio.lowlevel.reschedule(task)

    @staticmethod
    def take_parked(parked: list[_Worker]) -> _Worker | None:
        """A parked worker from ``parked``, skipping those cancelled while parked."""
        while parked:
            worker = parked.pop()
            if worker._task is not None:
                return worker
        return None

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED


def send_times(start: float, rate: float, seconds: float) -> list[float]:
    """When each request of a ``rate``-per-second schedule lasting ``seconds`` is due."""
    if rate <= 0 or seconds <= 0:
        return []
    count = int(rate * seconds + 1e-9)
    return [start + k / rate for k in range(count)]


async def run_open_loop(
    propose: Propose,
    groups: Sequence[int],
    rate: float,
    seconds: float,
    *,
    value_size: int = 100,
    samples: int = 0,
    max_in_flight: int = 10_000,
    keys_per_group: int = 256,
    wake_every: float = 0.001,
) -> dict[str, Any]:
    """Issue ``rate`` KV puts per second for ``seconds``, spread over ``groups``.

    Returns ``commits`` (acknowledged puts), ``errors`` (refused or timed-out
    ones), ``scheduled`` (requests due), ``late`` (requests that left more than
    1 ms after the wake-up tick meant for them), ``elapsed`` seconds (first due time to last
    reply), the latency percentiles ``p50_ms``, ``p99_ms`` and ``p999_ms`` of
    acknowledged puts measured from their scheduled times, and ``samples_ms`` (up
    to ``samples`` latencies evenly spaced over the sorted ones).
    """
    if not groups:
        raise ValueError("an open-loop load needs at least one group")
    value = b"v" * value_size
    commands = [KVCommand("put", b"key-%d" % k, value).to_bytes() for k in range(keys_per_group)]
    latencies: list[float] = []
    errors = 0
    late = 0
    slots = trio.Semaphore(max_in_flight)
    current_time = trio.current_time
    # Requests go to a pool of worker tasks that park between requests, not to
    # one new task each: the generator shares the node's CPU, and spawning a
    # task per request took 12% of a loopback leader's time at 13,000/s.
    parked: list[_Worker] = []
    closing = False

    async def work(worker: _Worker) -> None:
        nonlocal errors
        while True:
            group_id, command, due = worker.job
            try:
                await propose(group_id, command)
            except _REFUSED:
                errors += 1
            else:
                latencies.append(current_time() - due)
            finally:
                slots.release()
            if closing or not await worker.park(parked):
                return

    start = current_time()
    schedule = send_times(start, rate, seconds)
    group_count = len(groups)
    late_after = wake_every + 0.001
    async with trio.open_nursery() as nursery:
        for k, due in enumerate(schedule):
            if current_time() < due:
                wake = due
                if wake_every > 0:
                    wake = start + math.ceil((due - start) / wake_every) * wake_every
                await trio.sleep_until(wake)
            try:
                # No checkpoint while a slot is free: requests already due leave
                # together, as from independent clients, instead of one per
                # turn of the event loop.
                slots.acquire_nowait()
            except trio.WouldBlock:
                await slots.acquire()
            if current_time() - due > late_after:
                late += 1
            round_, slot = divmod(k, group_count)
            job = (groups[slot], commands[round_ % keys_per_group], due)
            worker = _Worker.take_parked(parked)
            if worker is None:
                nursery.start_soon(work, _Worker(job), name="open-loop put")
            else:
                worker.hand(job)
        closing = True
        while (worker := _Worker.take_parked(parked)) is not None:
            worker.hand(None)
    out = {
        "scheduled": len(schedule),
        "commits": len(latencies),
        "errors": errors,
        "late": late,
        "elapsed": current_time() - start,
    }
    out.update(latency_summary(latencies, samples))
    return out


async def generator_cost(
    rate: float,
    seconds: float,
    groups: Sequence[int] = (1,),
    *,
    answer_every: float = 0.002,
    idle_seconds: float = 0.5,
) -> dict[str, Any]:
    """What the open loop itself costs the process that hosts it, per request.

    Runs :func:`run_open_loop` at ``rate`` for ``seconds`` against a stand-in
    for a node: each request parks its worker until the stand-in answers every
    waiting request at once, every ``answer_every`` seconds (a ready cycle's
    cadence). The process CPU time consumed, less what the stand-in's wake-ups
    cost with no request at all (measured for ``idle_seconds`` first), is the
    generator's schedule and worker pool and a request's park and wake-up on
    the proposer's side: the share of a core the load takes from the node it
    runs in before any raft work. Returns the :func:`run_open_loop` figures plus
    ``cpu_us_per_request`` and ``cpu_per_wall`` (of one core).
    """
    waiting: list[trio.lowlevel.Task] = []

    async def propose(_group_id: int, _command: bytes) -> None:
        task = trio.lowlevel.current_task()
        waiting.append(task)

        def forget(_raise_cancel: object) -> trio.lowlevel.Abort:
            # Called wherever the cancellation comes from: name the task, not the caller.
            waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(forget)

    async def answer() -> None:
        while True:
            await trio.sleep(answer_every)
            batch = waiting[:]
            waiting.clear()
            for task in batch:
                trio.lowlevel.reschedule(task)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        idle_cpu = time.process_time()
        idle_began = time.perf_counter()
        await trio.sleep(idle_seconds)
        idle_rate = (time.process_time() - idle_cpu) / max(1e-9, time.perf_counter() - idle_began)
        cpu_before = time.process_time()
        wall_before = time.perf_counter()
        out = await run_open_loop(propose, groups, rate, seconds)
        wall = time.perf_counter() - wall_before
        cpu = max(0.0, time.process_time() - cpu_before - idle_rate * wall)
        nursery.cancel_scope.cancel()
    out["cpu_us_per_request"] = round(cpu / max(1, out["commits"]) * 1e6, 2)
    out["cpu_per_wall"] = round(cpu / wall, 3) if wall > 0 else 0.0
    return out
