"""Open-loop proposal load: requests leave on a fixed schedule, whatever the replies do.

A closed-loop generator (:func:`multiraft.bench.load.run_load`) sends the next
request only when one completes, so a slow reply also delays the requests
behind it and their wait is never measured ("coordinated omission"). Here the
``k``-th request is due at ``start + k / rate`` and its latency is measured
from that scheduled time, not from when it actually left: if the generator
runs late (the event loop was busy, or ``max_in_flight`` requests are already
waiting), the lateness counts against the system, as a user arriving on
schedule would see it.

Requests go to the groups round-robin. They are submitted without waiting
(``submit`` has the signature of ``Node.propose_nowait``, which it is in a
benchmark) and one task collects their outcomes, as a server holding many
clients' requests would. Time is trio's clock, so tests can drive the
generator with ``trio.testing.MockClock``.

The generator wakes at most once per ``wake_every`` seconds (1 ms by default)
and sends every request due by then: thousands of timer wake-ups a second would
cost the node hosting the generator more CPU than the requests themselves. A
request may thus leave up to ``wake_every`` after its scheduled time, and that
delay counts in its latency like any other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

from multiraft.bench.load import REFUSED, latency_summary
from multiraft.kv import KVCommand
from multiraft.proposals import Completions, Waiter

__all__ = ["Submit", "generator_cost", "request_count", "run_open_loop", "send_times"]

#: Submits one command to one group without waiting (``Node.propose_nowait``):
#: ``submit(group_id, command, completions, tag)``; the request's waiter joins
#: ``completions`` with its outcome, carrying ``tag``.
Submit = Callable[[int, bytes, Completions, object], object]


def request_count(rate: float, seconds: float) -> int:
    """How many requests a ``rate``-per-second schedule lasting ``seconds`` holds."""
    if rate <= 0 or seconds <= 0:
        return 0
    return int(rate * seconds + 1e-9)


def send_times(start: float, rate: float, seconds: float) -> list[float]:
    """When each request of a ``rate``-per-second schedule lasting ``seconds`` is due.

    :func:`run_open_loop` computes each due time as it goes, the same way: a
    list made up front took 13 ms for 144,000 requests, and requests due
    meanwhile all left late, in one burst.
    """
    return [start + k / rate for k in range(request_count(rate, seconds))]


class _Tally:
    """Outcomes of the requests in flight, collected by one task as they come in."""

    __slots__ = (
        "_room",
        "completions",
        "errors",
        "failure",
        "in_flight",
        "latencies",
    )

    def __init__(self) -> None:
        self.completions = Completions()
        self.latencies: list[float] = []
        self.errors = 0
        self.in_flight = 0
        #: An outcome that was neither a result nor a refusal (the state machine raised).
        self.failure: BaseException | None = None
        self._room: trio.Event | None = None

    async def wait_until_fewer_than(self, limit: int) -> None:
        """Return once fewer than ``limit`` requests are in flight."""
        while self.in_flight >= limit:
            self._room = room = trio.Event()
            await room.wait()

    async def collect(self, run: trio.CancelScope) -> None:
        """Record each outcome as it arrives (runs until cancelled).

        A latency is counted from the request's due time (its tag) to when this
        task sees the outcome, as a client waiting for it would. An outcome that
        is neither a result nor a refusal is kept as :attr:`failure` and cancels
        ``run``, the whole load.
        """
        completions = self.completions
        latencies = self.latencies
        current_time = trio.current_time
        while True:
            finished = await completions.wait()
            now = current_time()
            for waiter in finished:
                error = waiter.error
                if error is None:
                    due = waiter.tag
                    assert isinstance(due, float)
                    latencies.append(now - due)
                elif isinstance(error, REFUSED):
                    self.errors += 1
                else:
                    self.failure = error
                    run.cancel()
                    return
            self.in_flight -= len(finished)
            room = self._room
            if room is not None:
                self._room = None
                room.set()


async def run_open_loop(
    submit: Submit,
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
    # Submitted without waiting, outcomes collected in batches by one task: the
    # generator shares the node's CPU, and a task per request (even a pool of
    # parked ones) cost 12 to 17 us of it per request at 10,000-20,000/s.
    tally = _Tally()
    completions = tally.completions
    late = 0
    current_time = trio.current_time
    count = request_count(rate, seconds)
    group_count = len(groups)
    late_after = wake_every + 0.001
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tally.collect, nursery.cancel_scope, name="open-loop outcomes")
        # The schedule starts once the generator is ready to send, and each due
        # time is computed as it comes: setting-up time is not the system's.
        start = current_time()
        for k in range(count):
            due = start + k / rate
            if current_time() < due:
                wake = due
                if wake_every > 0:
                    wake = start + math.ceil((due - start) / wake_every) * wake_every
                await trio.sleep_until(wake)
            # No checkpoint while there is room: requests already due leave
            # together, as from independent clients, not one per loop turn.
            if tally.in_flight >= max_in_flight:
                await tally.wait_until_fewer_than(max_in_flight)
            if current_time() - due > late_after:
                late += 1
            round_, slot = divmod(k, group_count)
            try:
                submit(groups[slot], commands[round_ % keys_per_group], completions, due)
            except REFUSED:
                tally.errors += 1
            else:
                tally.in_flight += 1
        await tally.wait_until_fewer_than(1)
        nursery.cancel_scope.cancel()
    if tally.failure is not None:
        raise tally.failure
    out = {
        "scheduled": count,
        "commits": len(tally.latencies),
        "errors": tally.errors,
        "late": late,
        "elapsed": current_time() - start,
    }
    out.update(latency_summary(tally.latencies, samples))
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
    for a node: it keeps each request's waiter and answers every waiting one at
    once, every ``answer_every`` seconds (a ready cycle's cadence). The process
    CPU time consumed, less what the stand-in's wake-ups cost with no request
    at all (measured for ``idle_seconds`` first), is the generator's schedule,
    its submissions and the collection of outcomes: the share of a core the
    load takes from the node it runs in before any raft work. Returns the
    :func:`run_open_loop` figures plus ``cpu_us_per_request`` and
    ``cpu_per_wall`` (of one core).
    """
    waiting: list[Waiter] = []

    def submit(_group_id: int, _command: bytes, completions: Completions, tag: object) -> None:
        waiting.append(Waiter(completions, tag))

    async def answer() -> None:
        while True:
            await trio.sleep(answer_every)
            batch = waiting[:]
            waiting.clear()
            for waiter in batch:
                waiter.set_result(None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        idle_cpu = time.process_time()
        idle_began = time.perf_counter()
        await trio.sleep(idle_seconds)
        idle_rate = (time.process_time() - idle_cpu) / max(1e-9, time.perf_counter() - idle_began)
        cpu_before = time.process_time()
        wall_before = time.perf_counter()
        out = await run_open_loop(submit, groups, rate, seconds)
        wall = time.perf_counter() - wall_before
        cpu = max(0.0, time.process_time() - cpu_before - idle_rate * wall)
        nursery.cancel_scope.cancel()
    out["cpu_us_per_request"] = round(cpu / max(1, out["commits"]) * 1e6, 2)
    out["cpu_per_wall"] = round(cpu / wall, 3) if wall > 0 else 0.0
    return out
