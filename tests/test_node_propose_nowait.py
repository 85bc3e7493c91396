"""Requests submitted without waiting: ``Node.propose_nowait`` and ``Completions``.

Every accepted request must report on its completions queue exactly once, with
exactly the outcome ``propose`` would have returned or raised (result, state
machine exception, timeout at the deadline, node closed), and carrying the
submitter's tag; refusals known at the call (no leader, no group, bad
arguments) raise at once and submit nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from multiraft import (
    GroupNotFoundError,
    NodeClosedError,
    NotLeaderError,
    ProposalDroppedError,
    ProposalTimeoutError,
)
from multiraft.proposals import Completions, Waiter
from node_cluster import Cluster


@asynccontextmanager
async def _group_one(*, cut_off: bool = False, **config: Any) -> AsyncIterator[Cluster]:
    """Three nodes, group 1 led by node 1; with ``cut_off``, nodes 2 and 3 isolated."""
    async with Cluster(3, **config) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        if cut_off:
            c.net.isolate(2)
            c.net.isolate(3)
        yield c


async def _collect(completions: Completions, count: int) -> list[list[Waiter]]:
    """The batches ``completions.wait`` returns until ``count`` requests reported."""
    batches: list[list[Waiter]] = []
    while sum(map(len, batches)) < count:
        batches.append(await completions.wait())
    return batches


async def test_outcomes_arrive_in_one_batch_per_ready_cycle_with_their_tags_and_results(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _group_one() as c:
        node = c.nodes[1]
        completions = Completions()
        waiters = [
            node.propose_nowait(1, b"c%d" % k, completions, tag=("client", k)) for k in range(5)
        ]
        assert not any(w.done for w in waiters)
        batches = await _collect(completions, 5)
        # Proposed in one driver turn: one raft batch, committed and answered together.
        assert len(batches) == 1
        assert batches[0] == waiters
        assert [w.tag for w in waiters] == [("client", k) for k in range(5)]
        assert [w.result() for w in waiters] == [(5 + k, b"c%d" % k) for k in range(5)]
        assert all(w.error is None for w in waiters)
        assert node._table.replicas[1].proposal_waiters == {}
        await c.settle([1])
        for i in c.ids:
            assert c.sms[(1, i)].applied[-5:] == [(5 + k, b"c%d" % k) for k in range(5)]
        assert len(completions) == 0


async def test_a_request_submitted_on_a_follower_is_forwarded_and_reports_there(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _group_one() as c:
        completions = Completions()
        waiter = c.nodes[3].propose_nowait(1, b"far", completions, tag=7)
        [[reported]] = await _collect(completions, 1)
        assert reported is waiter
        assert (waiter.tag, waiter.result()) == (7, (5, b"far"))
        assert c.nodes[3]._table.replicas[1].proposal_waiters == {}
        assert c.nodes[1]._table.replicas[1].proposal_waiters == {}


async def test_the_state_machine_exception_is_the_outcome_and_result_raises_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _group_one() as c:
        completions = Completions()
        bad = c.nodes[1].propose_nowait(1, b"fail", completions)
        good = c.nodes[1].propose_nowait(1, b"ok", completions)
        [batch] = await _collect(completions, 2)
        assert batch == [bad, good]
        assert isinstance(bad.error, ValueError)
        assert str(bad.error) == "refused at 5"
        with pytest.raises(ValueError, match="refused at 5"):
            bad.result()
        assert good.result() == (6, b"ok")


async def test_a_batch_refused_by_raft_reports_dropped_for_each_request_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _group_one(cut_off=True, max_uncommitted_entries_size=1) as c:
        node = c.nodes[1]
        completions = Completions()
        # The first batch fills the uncommitted budget (it cannot commit), so the
        # next batch is refused whole, in the driver turn that takes it.
        first = node.propose_nowait(1, b"first", completions)
        await trio.sleep(0.05)
        start = trio.current_time()
        more = [node.propose_nowait(1, b"more%d" % k, completions) for k in range(3)]
        [batch] = await _collect(completions, 3)
        assert batch == more
        assert trio.current_time() - start < 0.01
        assert all(isinstance(w.error, ProposalDroppedError) for w in more)
        assert not first.done
        assert node.stats()["proposal_batches"] == 2


async def test_with_no_known_leader_it_raises_at_once_and_submits_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        # Nobody campaigns: the group has no leader for a whole election timeout.
        await c.create_groups([1], leader=lambda g: 0)
        node = c.nodes[2]
        completions = Completions()
        proposals = node._counters.proposals
        with pytest.raises(NotLeaderError) as info:
            node.propose_nowait(1, b"x", completions)
        assert (info.value.group_id, info.value.leader_hint) == (1, None)
        assert node._counters.proposals == proposals
        assert node._table.replicas[1].proposal_waiters == {}
        await trio.sleep(0.01)
        assert len(completions) == 0


async def test_bad_arguments_and_unknown_groups_raise_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(1) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        node = c.nodes[1]
        completions = Completions()
        with pytest.raises(TypeError, match="command must be bytes, got str"):
            node.propose_nowait(1, "text", completions)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="completions must be a Completions, got list"):
            node.propose_nowait(1, b"x", [])  # type: ignore[arg-type]
        with pytest.raises(GroupNotFoundError):
            node.propose_nowait(2, b"x", completions)
        assert len(completions) == 0


async def test_a_request_that_cannot_commit_reports_a_timeout_exactly_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _group_one(cut_off=True, proposal_timeout=1.0) as c:
        node = c.nodes[1]
        completions = Completions()
        start = trio.current_time()
        first = node.propose_nowait(1, b"x", completions, tag="x")
        await trio.sleep(0.25)
        second = node.propose_nowait(1, b"y", completions, tag="y")
        [[a], [b]] = await _collect(completions, 2)
        assert (a, b) == (first, second)
        assert trio.current_time() - start == pytest.approx(1.25)
        for waiter in (a, b):
            error = waiter.error
            assert isinstance(error, ProposalTimeoutError)
            assert (error.group_id, error.leader_hint) == (1, 1)
        assert node._table.replicas[1].proposal_waiters == {}


async def test_a_lowered_timeout_still_expires_the_request_at_its_own_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _group_one(cut_off=True, proposal_timeout=5.0) as c:
        node = c.nodes[1]
        completions = Completions()
        start = trio.current_time()
        late = node.propose_nowait(1, b"late", completions)
        node.config.proposal_timeout = 1.0
        early = node.propose_nowait(1, b"early", completions)
        [[first]] = await _collect(completions, 1)
        assert first is early
        assert trio.current_time() - start == pytest.approx(1.0)
        assert isinstance(early.error, ProposalTimeoutError)
        assert not late.done
        [[second]] = await _collect(completions, 1)
        assert second is late
        assert trio.current_time() - start == pytest.approx(5.0)
        assert isinstance(late.error, ProposalTimeoutError)
        assert node._table.replicas[1].proposal_waiters == {}


async def test_closing_the_node_reports_every_request_in_flight_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _group_one(cut_off=True) as c:
        node = c.nodes[1]
        completions = Completions()
        waiters = [node.propose_nowait(1, b"p%d" % k, completions) for k in range(3)]
        await trio.sleep(0.1)
        assert len(completions) == 0
        await c.stop(1)
        reported = completions.take_nowait()
        assert reported == waiters
        assert all(isinstance(w.error, NodeClosedError) for w in reported)
        with pytest.raises(NodeClosedError):
            node.propose_nowait(1, b"after", completions)
        assert completions.take_nowait() == []


# ------------------------------------------------------------ Completions itself


async def test_a_waiter_reports_to_its_completions_once_whatever_outcomes_follow() -> None:
    completions = Completions()
    waiter = Waiter(completions, tag="t")
    with pytest.raises(RuntimeError, match="not in yet"):
        waiter.result()
    waiter.set_result(1)
    waiter.set_error(KeyError("late"))
    waiter.set_result(2)
    assert completions.take_nowait() == [waiter]
    assert (waiter.result(), waiter.error, waiter.tag) == (1, None, "t")
    # Nothing left: an empty list of the caller's own, not the queue's.
    empty = completions.take_nowait()
    assert empty == []
    empty.append(waiter)
    assert len(completions) == 0


async def test_wait_returns_everything_finished_since_the_last_call_in_order() -> None:
    completions = Completions()
    waiters = [Waiter(completions, tag=k) for k in range(3)]
    waiters[2].set_result(None)
    waiters[0].set_result(None)
    assert len(completions) == 2
    assert await completions.wait() == [waiters[2], waiters[0]]
    async with trio.open_nursery() as nursery:
        got: list[list[Waiter]] = []

        async def collect() -> None:
            got.append(await completions.wait())

        nursery.start_soon(collect)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        waiters[1].set_error(KeyError("x"))
    assert got == [[waiters[1]]]


async def test_one_task_at_a_time_may_wait_and_a_cancelled_wait_leaves_nothing_behind() -> None:
    completions = Completions()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(completions.wait)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="another task is already waiting"):
            await completions.wait()
        nursery.cancel_scope.cancel()
    # The cancelled waiter is gone: a new outcome queues, and a new wait takes it.
    waiter = Waiter(completions)
    waiter.set_result(3)
    assert await completions.wait() == [waiter]
