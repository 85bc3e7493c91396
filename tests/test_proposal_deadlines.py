"""Request deadlines kept by one timer per node, and the waiter requests park on.

``propose``/``read``/``change_membership`` made while the group has a known
leader hand their deadline to the node's ``RequestDeadlines`` instead of opening
a cancel scope each; the outcomes (results, errors, timing, leader hints) must
be exactly those of a scope per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio
import trio.testing

from multiraft import ProposalTimeoutError
from multiraft.proposals import Waiter
from multiraft.replica import Replica
from multiraft.request_deadlines import RequestDeadlines
from node_cluster import Cluster

_MISSED = "did not complete before the deadline"


def _replica(group_id: int, leader: int, last_leader: int) -> Replica:
    # RequestDeadlines reads only these three fields of a replica.
    return cast(Replica, SimpleNamespace(group_id=group_id, leader=leader, last_leader=last_leader))


@asynccontextmanager
async def _leader_cut_off(**config: Any) -> AsyncIterator[Cluster]:
    """Three nodes, group 1 led by node 1, then nodes 2 and 3 cut off from everyone."""
    async with Cluster(3, **config) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        c.net.isolate(2)
        c.net.isolate(3)
        yield c


# ------------------------------------------------------------------ node level


async def test_a_follower_proposal_with_a_known_leader_is_forwarded_and_returns_the_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        assert await c.nodes[2].propose(1, b"a") == (5, b"a")
        assert await c.nodes[3].propose(1, b"b") == (6, b"b")
        for i in c.ids:
            assert c.sms[(1, i)].applied[-2:] == [(5, b"a"), (6, b"b")]
            assert c.nodes[i]._table.replicas[1].proposal_waiters == {}


async def test_a_proposal_that_cannot_commit_fails_exactly_at_its_deadline_with_the_leader_hint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _leader_cut_off(proposal_timeout=1.0) as c:
        node = c.nodes[1]
        r = node._table.replicas[1]
        outcomes: list[tuple[float, BaseException]] = []
        start = trio.current_time()

        async def propose(command: bytes) -> None:
            try:
                await node.propose(1, command)
            except ProposalTimeoutError as exc:
                outcomes.append((trio.current_time() - start, exc))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(propose, b"x")
            await trio.sleep(0.25)
            nursery.start_soon(propose, b"y")
            await trio.sleep(0.25)
            # Both went to the node's deadline timer, none opened a scope of its own.
            assert len(node._deadlines) == 2
            assert len(r.proposal_waiters) == 2
        assert [round(t, 9) for t, _ in outcomes] == [1.0, 1.25]
        for _, exc in outcomes:
            assert isinstance(exc, ProposalTimeoutError)
            assert (exc.group_id, exc.leader_hint) == (1, 1)
            assert str(exc) == f"proposal in group 1 {_MISSED} (leader hint 1)"
        assert r.proposal_waiters == {}


async def test_a_read_that_cannot_be_confirmed_fails_at_its_deadline_and_forgets_its_waiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Without check_quorum the isolated leader keeps leading (a step-down would
    # drop the read at once instead).
    async with _leader_cut_off(proposal_timeout=2.0, check_quorum=False) as c:
        r = c.nodes[1]._table.replicas[1]
        start = trio.current_time()
        with pytest.raises(ProposalTimeoutError) as info:
            await c.nodes[1].read(1)
        assert trio.current_time() - start == pytest.approx(2.0)
        assert str(info.value) == f"read in group 1 {_MISSED} (leader hint 1)"
        assert r.read_waiters == {}


async def test_a_cancelled_proposal_leaves_no_waiter_and_the_group_keeps_working(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with _leader_cut_off(proposal_timeout=1.0) as c:
        node = c.nodes[1]
        r = node._table.replicas[1]
        with trio.move_on_after(0.3) as scope:
            await node.propose(1, b"x")
        assert scope.cancelled_caught
        assert r.proposal_waiters == {}
        # The timer reaches the abandoned deadline without failing anything else.
        await trio.sleep(1.0)
        c.net.heal()
        index, command = cast(tuple[int, bytes], await node.propose(1, b"after"))
        assert command == b"after"
        assert [cmd for _, cmd in c.sms[(1, 1)].applied][-1] == b"after"
        assert c.sms[(1, 1)].applied[-1][0] == index
        assert r.proposal_waiters == {}


# ---------------------------------------------------------- the timer itself


async def test_deadlines_refuse_requests_until_the_timer_runs_and_out_of_order_deadlines(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = RequestDeadlines()
    r = _replica(7, 2, 2)
    waiters: dict[Any, Waiter] = {}
    now = trio.current_time()
    assert not deadlines.add(now + 1, Waiter(), r, waiters, 1, "proposal")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        await trio.testing.wait_all_tasks_blocked()
        assert deadlines.add(now + 5, Waiter(), r, waiters, 1, "proposal")
        assert deadlines.add(now + 5, Waiter(), r, waiters, 2, "proposal")
        assert not deadlines.add(now + 4.5, Waiter(), r, waiters, 3, "proposal")
        assert len(deadlines) == 2
        nursery.cancel_scope.cancel()
    assert not deadlines.running


async def test_expired_requests_fail_in_deadline_order_and_finished_ones_are_left_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = RequestDeadlines()
    r = _replica(7, 0, 3)
    start = trio.current_time()
    waiters = {k: Waiter() for k in (1, 2, 3)}
    failed_at: dict[int, float] = {}

    async def wait(key: int) -> None:
        try:
            await waiters[key].wait()
        except ProposalTimeoutError as exc:
            assert (exc.group_id, exc.leader_hint) == (7, 3)
            failed_at[key] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        await trio.testing.wait_all_tasks_blocked()
        table = dict(waiters)
        for key, offset in ((1, 1.0), (2, 1.5), (3, 2.0)):
            assert deadlines.add(start + offset, waiters[key], r, table, key, "proposal")
            nursery.start_soon(wait, key)
        await trio.sleep(1.2)
        table.pop(2)
        waiters[2].set_result("done")
        await trio.sleep(2.0)
        assert len(deadlines) == 0
        nursery.cancel_scope.cancel()
    assert failed_at == {1: 1.0, 3: 2.0}
    assert table == {}
    assert await waiters[2].wait() == "done"


async def test_finished_requests_behind_a_stuck_one_are_compacted_away(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadlines = RequestDeadlines()
    r = _replica(1, 1, 1)
    table: dict[Any, Waiter] = {}
    now = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        await trio.testing.wait_all_tasks_blocked()
        stuck = Waiter()
        assert deadlines.add(now + 10, stuck, r, table, 0, "proposal")
        for key in range(1, 3000):
            w = Waiter()
            assert deadlines.add(now + 10, w, r, table, key, "proposal")
            w.set_result(key)
        # Never more than the compaction bound while only one request is pending.
        assert len(deadlines) <= 1024
        stuck.set_result(None)
        w = Waiter()
        assert deadlines.add(now + 10, w, r, table, 5000, "proposal")
        assert len(deadlines) == 1
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------- waiters


async def test_a_waiter_returns_a_result_delivered_before_or_during_the_wait() -> None:
    early = Waiter()
    early.set_result(1)
    early.set_result(2)
    early.set_error(ValueError("late"))
    assert early.done
    assert await early.wait() == 1

    later = Waiter()
    got: list[object] = []

    async def wait() -> None:
        got.append(await later.wait())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert not later.done
        later.set_result("v")
    assert got == ["v"]


async def test_a_waiter_raises_the_delivered_error_object() -> None:
    w = Waiter()
    error = KeyError("gone")
    w.set_error(error)
    w.set_result("ignored")
    with pytest.raises(KeyError) as info:
        await w.wait()
    assert info.value is error


async def test_a_cancelled_wait_leaves_the_waiter_usable_and_one_waiting_task_at_a_time() -> None:
    w = Waiter()
    with trio.move_on_after(0.01) as scope:
        await w.wait()
    assert scope.cancelled_caught
    w.set_result("after")  # nobody waits: nothing to wake
    assert await w.wait() == "after"

    other = Waiter()
    errors: list[BaseException] = []

    async def second() -> None:
        try:
            await other.wait()
        except RuntimeError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other.wait)
        await trio.testing.wait_all_tasks_blocked()
        await second()
        other.set_result(None)
    assert [str(e) for e in errors] == ["another task is already waiting for this outcome"]
