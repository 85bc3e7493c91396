"""Bulk creation, batched proposals, reads at a leader change, log-order application."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from multiraft import (
    GroupExistsError,
    GroupRemovedError,
    GroupSpec,
    ProposalDroppedError,
)
from multiraft.events import MembershipChanged
from multiraft.raft import ConfChange, ConfChangeType, ConfState, StateType
from node_cluster import Cluster, RecordingStateMachine, wait_until


async def test_create_groups_hosts_many_in_one_cycle_and_campaigns_win_at_term_two(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        gids = list(range(300))
        cycles = {i: c.nodes[i].stats()["ready_cycles"] for i in c.ids}
        for i in c.ids:
            await c.nodes[i].create_groups(
                GroupSpec(g, c.ids, RecordingStateMachine(), campaign=(g % 3 + 1 == i))
                for g in gids
            )
        await c.wait_leaders(gids, timeout=2)
        for g in gids:
            leader = g % 3 + 1
            for i in c.ids:
                assert c.nodes[i].leader_of(g) == leader
                assert c.nodes[i].status(g).hard_state.term == 2
        for i in c.ids:
            stats = c.nodes[i].stats()
            assert stats["groups"] == 300
            # The whole election of 300 groups took a handful of cycles, not one per group.
            assert stats["ready_cycles"] - cycles[i] < 20


async def test_create_groups_checks_every_spec_before_hosting_any(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(1) as c:
        node = c.nodes[1]
        await node.create_group(5, [1], state_machine=RecordingStateMachine())

        def spec(g: int, replicas: list[int]) -> GroupSpec:
            return GroupSpec(g, replicas, RecordingStateMachine())

        bad_batches: list[tuple[list[GroupSpec], type[Exception]]] = [
            ([spec(1, [1]), spec(5, [1])], GroupExistsError),
            ([spec(1, [1]), spec(1, [1])], ValueError),
            ([spec(1, [1]), spec(2, [2, 3])], ValueError),
            ([spec(-1, [1])], ValueError),
        ]
        for specs, error in bad_batches:
            with pytest.raises(error):
                await node.create_groups(specs)
            assert node.group_ids() == [5]
        await node.remove_group(5)
        with pytest.raises(GroupRemovedError):
            await node.create_groups([GroupSpec(5, [1], RecordingStateMachine())])


async def test_proposals_queued_in_one_turn_go_to_raft_as_one_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        await c.settle([1])
        before = c.nodes[1].stats()
        results: list[object] = []

        async def propose(k: int) -> None:
            results.append(await c.nodes[1].propose(1, b"p%d" % k))

        async with trio.open_nursery() as nursery:
            for k in range(10):
                nursery.start_soon(propose, k)
        after = c.nodes[1].stats()
        assert after["proposals"] - before["proposals"] == 10
        assert after["proposal_batches"] - before["proposal_batches"] == 1
        # One append: ten consecutive indexes, each the result of its own command.
        await wait_until(lambda: c.nodes[3].applied_index(1) == 14, 1)
        applied = c.sms[(1, 3)].applied
        assert [i for i, _ in applied] == list(range(5, 15))
        assert sorted(results, key=repr) == sorted(applied, key=repr)
        assert sorted(cmd for _, cmd in applied) == sorted(b"p%d" % k for k in range(10))


async def test_a_batch_refused_by_raft_fails_every_proposal_in_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, max_uncommitted_entries_size=1) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        c.net.isolate(2)
        c.net.isolate(3)
        outcomes: list[str] = []

        async def propose(data: bytes) -> None:
            try:
                await c.nodes[1].propose(1, data)
                outcomes.append("ok")
            except ProposalDroppedError:
                outcomes.append("dropped")

        with trio.move_on_after(1):
            async with trio.open_nursery() as nursery:
                # The first batch is accepted whatever its size (it cannot commit):
                # it fills the uncommitted budget, so the next batch is refused whole.
                nursery.start_soon(propose, b"first")
                await trio.sleep(0.05)
                for k in range(3):
                    nursery.start_soon(propose, b"more%d" % k)
        assert outcomes == ["dropped"] * 3
        assert c.nodes[1].stats()["proposal_batches"] == 2


async def test_read_taken_by_a_leader_that_steps_down_fails_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        await c.nodes[1].propose(1, b"a")
        # Followers unreachable: the read's heartbeat round cannot complete.
        c.net.isolate(2)
        c.net.isolate(3)
        failed_at: list[float] = []

        async def read() -> None:
            with pytest.raises(ProposalDroppedError, match="leader changed"):
                await c.nodes[1].read(1)
            failed_at.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.sleep(0.05)
            start = trio.current_time()
        # check_quorum makes the isolated leader step down after an election timeout.
        assert c.nodes[1].status(1).soft_state.raft_state != StateType.LEADER
        assert failed_at and failed_at[0] - start < 3.0
        assert c.nodes[1].config.proposal_timeout == 10.0


class _MembershipAwareMachine(RecordingStateMachine):
    """Records, at every applied command, the learners its replica knows of."""

    def __init__(self, learners: Callable[[], tuple[int, ...]]) -> None:
        super().__init__()
        self.learners = learners
        self.learners_at: list[tuple[int, ...]] = []

    def apply(self, index: int, command: bytes) -> object:
        self.learners_at.append(self.learners())
        return super().apply(index, command)


async def test_membership_change_takes_effect_in_log_order_among_commands(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        sm = _MembershipAwareMachine(lambda: c.nodes[2]._replica(1).conf_state.learners)
        for i in c.ids:
            machine = sm if i == 2 else RecordingStateMachine()
            await c.nodes[i].create_group(1, c.ids, state_machine=machine, campaign=(i == 1))
        await c.wait_leaders([1])
        # Node 2 misses indexes 5 to 7 and gets them in one committed batch later.
        c.net.isolate(2)
        assert await c.nodes[1].propose(1, b"before") == (5, b"before")
        cs = await c.nodes[1].change_membership(1, ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4))
        assert cs == ConfState(voters=(1, 2, 3), learners=(4,))
        assert await c.nodes[1].propose(1, b"after") == (7, b"after")
        events = c.nodes[2].events()
        c.net.heal()
        await wait_until(lambda: c.nodes[2].applied_index(1) == 7, 3, "node 2 catches up")
        assert sm.applied == [(5, b"before"), (7, b"after")]
        # The change at 6 took effect after index 5 was applied and before index 7.
        assert sm.learners_at == [(), (4,)]
        assert events.get_nowait() == MembershipChanged(1, cs, 6)
