"""The open-loop load generator: a fixed send schedule, latency counted from the schedule."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from multiraft.bench.open_loop import generator_cost, request_count, run_open_loop, send_times
from multiraft.errors import NotLeaderError, ProposalTimeoutError
from multiraft.kv import KVCommand
from multiraft.proposals import Completions, Waiter


def test_send_times_are_evenly_spaced_at_the_rate_for_the_duration() -> None:
    assert send_times(10.0, 4.0, 1.0) == [10.0, 10.25, 10.5, 10.75]
    assert send_times(0.0, 1000.0, 0.002) == [0.0, 0.001]


def test_request_count_is_the_whole_requests_of_the_schedule() -> None:
    assert request_count(4.0, 1.25) == 5
    assert request_count(1000.0, 0.002) == 2
    # 0.1 * 30 is 3.0000000000000004 in floating point, 0.3 * 10 is 3.0 exactly.
    assert request_count(30.0, 0.1) == 3
    assert request_count(3.0, 0.999) == 2
    assert request_count(0.0, 5.0) == request_count(5.0, 0.0) == request_count(-1.0, 5.0) == 0


def test_send_times_are_empty_without_rate_or_duration() -> None:
    assert send_times(5.0, 0.0, 1.0) == []
    assert send_times(5.0, 100.0, 0.0) == []


class FakeGroups:
    """Answers each put ``delay`` seconds after its submission, recording when it arrived.

    Puts to a group in ``refuse`` are refused at once; puts to one in ``fail``
    get that exception as their outcome after ``delay``.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        delay: float,
        refuse: frozenset[int] = frozenset(),
        fail: dict[int, BaseException] | None = None,
    ) -> None:
        self.nursery = nursery
        self.delay = delay
        self.refuse = refuse
        self.fail = fail or {}
        self.calls: list[tuple[float, int, bytes]] = []

    def submit(
        self, group_id: int, command: bytes, completions: Completions, tag: object
    ) -> Waiter:
        self.calls.append((trio.current_time(), group_id, command))
        if group_id in self.refuse:
            raise NotLeaderError(group_id, None)
        waiter = Waiter(completions, tag)
        self.nursery.start_soon(self._answer, group_id, waiter)
        return waiter

    async def _answer(self, group_id: int, waiter: Waiter) -> None:
        await trio.sleep(self.delay)
        error = self.fail.get(group_id)
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_error(error)


def _key(command: bytes) -> bytes:
    return KVCommand.from_bytes(command).key


async def test_requests_leave_on_schedule_while_earlier_replies_are_outstanding(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = FakeGroups(nursery, delay=0.5)
    start = trio.current_time()
    result = await run_open_loop(fake.submit, [7, 8], 4.0, 1.25, samples=10, wake_every=0)
    assert [(t - start, g) for t, g, _ in fake.calls] == [
        (0.0, 7),
        (0.25, 8),
        (0.5, 7),
        (0.75, 8),
        (1.0, 7),
    ]
    # Round-robin over the groups: the k-th round writes key-k.
    assert [_key(c) for _, _, c in fake.calls] == [b"key-0", b"key-0", b"key-1", b"key-1", b"key-2"]
    assert result["scheduled"] == 5
    assert result["commits"] == 5
    assert result["errors"] == 0
    assert result["late"] == 0
    assert result["elapsed"] == 1.5
    assert result["samples_ms"] == [500.0] * 5
    assert (result["p50_ms"], result["p99_ms"], result["p999_ms"]) == (500.0, 500.0, 500.0)


async def test_latency_counts_from_the_scheduled_time_when_a_request_leaves_late(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # One request in flight at most: each waits for the previous reply, so
    # requests 2..4 leave late; their wait before leaving is part of their latency.
    fake = FakeGroups(nursery, delay=0.5)
    start = trio.current_time()
    result = await run_open_loop(
        fake.submit, [1], 4.0, 1.0, samples=10, max_in_flight=1, wake_every=0
    )
    assert [t - start for t, _, _ in fake.calls] == [0.0, 0.5, 1.0, 1.5]
    assert result["scheduled"] == 4
    assert result["commits"] == 4
    assert result["late"] == 3
    assert result["elapsed"] == 2.0
    # Due at 0, 0.25, 0.5, 0.75; answered at 0.5, 1.0, 1.5, 2.0.
    assert result["samples_ms"] == [500.0, 750.0, 1000.0, 1250.0]
    assert result["p50_ms"] == 750.0
    assert result["p99_ms"] == 1250.0


async def test_refused_requests_count_as_errors_and_are_not_retried(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = FakeGroups(nursery, delay=0.125, refuse=frozenset({2}))
    result = await run_open_loop(fake.submit, [1, 2], 4.0, 1.0, samples=10, wake_every=0)
    assert [g for _, g, _ in fake.calls] == [1, 2, 1, 2]
    assert (result["scheduled"], result["commits"], result["errors"]) == (4, 2, 2)
    assert result["samples_ms"] == [125.0, 125.0]


async def test_requests_due_between_wake_ups_leave_together_and_count_the_wait(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = FakeGroups(nursery, delay=0.25)
    start = trio.current_time()
    assert start == 0.0
    result = await run_open_loop(fake.submit, [1], 8.0, 1.0, samples=10, wake_every=0.5)
    # Due every 0.125 s; the generator wakes at 0, 0.5 and 1.0 and sends what is due.
    assert [t for t, _, _ in fake.calls] == [0.0, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0]
    assert result["late"] == 0
    assert result["samples_ms"] == [250.0, 250.0, 375.0, 375.0, 500.0, 500.0, 625.0, 625.0]


async def test_outcomes_that_are_timeouts_count_as_errors_without_a_latency(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = FakeGroups(nursery, delay=0.375, fail={2: ProposalTimeoutError(2, None, "proposal")})
    result = await run_open_loop(fake.submit, [1, 2], 4.0, 2.0, samples=10, wake_every=0)
    assert [g for _, g, _ in fake.calls] == [1, 2] * 4
    assert (result["scheduled"], result["commits"], result["errors"]) == (8, 4, 4)
    assert result["samples_ms"] == [375.0] * 4
    # The last outcome (a timeout, due at 1.75 s) came in at 2.125 s.
    assert result["elapsed"] == 2.125


async def test_an_exception_of_the_state_machine_ends_the_run_with_it(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    fake = FakeGroups(nursery, delay=0.25, fail={1: KeyError("boom")})
    with pytest.raises(KeyError, match="boom"):
        await run_open_loop(fake.submit, [1], 4.0, 2.0, wake_every=0)
    # The first outcome (0.25 s) ended the schedule: requests due at 0 and 0.25 left.
    assert [t for t, _, _ in fake.calls] == [0.0, 0.25]


async def test_generator_cost_answers_every_request_of_the_schedule_and_reports_its_cpu(
    autojump_clock: trio.testing.MockClock,
) -> None:
    out = await generator_cost(2000.0, 0.5, [7, 8], answer_every=0.002, idle_seconds=0.1)
    assert (out["scheduled"], out["commits"], out["errors"], out["late"]) == (1000, 1000, 0, 0)
    # A request waits at most for the generator's 1 ms wake-up grid, then for the
    # stand-in's next answer, every 2 ms.
    assert 0.0 <= out["p50_ms"] <= out["p99_ms"] <= 3.001
    assert out["cpu_us_per_request"] >= 0.0 and out["cpu_per_wall"] >= 0.0


async def test_generator_cost_cancelled_mid_run_ends_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    began = trio.current_time()
    with trio.move_on_after(0.3) as scope:
        await generator_cost(2000.0, 1.0, answer_every=0.05, idle_seconds=0.1)
    assert scope.cancelled_caught
    assert trio.current_time() - began == pytest.approx(0.3)
