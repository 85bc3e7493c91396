"""A settled raft member folded into a DormantState and rebuilt answers every later
input exactly as the original would have."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiraft.raft.dormant import DormantState, dormant_state, revive
from multiraft.raft.errors import RaftError
from multiraft.raft.inflights import Inflights
from multiraft.raft.rawnode import RawNode
from multiraft.raft.types import Message, MessageType, ProgressState, StateType
from progress_fields import progress_fields
from raft_harness import new_storage, new_test_config
from storage import MemoryStorage

MT = MessageType
IDS = (1, 2, 3)


def _dump(rn: RawNode) -> tuple[Any, ...]:
    """Everything of a member that can influence what it does next (not its
    leftover votes: only a candidate reads them, after clearing them)."""
    r = rn.raft
    log = r.raft_log
    progress = [progress_fields(pid, pr) for pid, pr in r.trk.progress.items()]
    return (
        r.term,
        r.vote,
        r.lead,
        r.state,
        r.is_learner,
        r.election_elapsed,
        r.heartbeat_elapsed,
        r.randomized_election_timeout,
        r.election_rand_state,
        r.pending_conf_index,
        r.lead_transferee,
        r.uncommitted_size,
        list(r.msgs),
        list(r.read_states),
        list(r.read_only.pending),
        log.committed,
        log.applied,
        log.last_index(),
        log.unstable.offset,
        r.trk.config,
        progress,
        rn._prev_hard_state,
        rn._prev_soft_state,
    )


class _Cluster:
    """Three RawNodes over MemoryStorage with a message queue; with ``fold``, every
    member that can be folded after handling its Ready is replaced by its rebuild."""

    def __init__(self, fold: bool, pre_vote: bool, check_quorum: bool) -> None:
        self.fold = fold
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.storages: dict[int, MemoryStorage] = {i: new_storage(IDS) for i in IDS}
        self.nodes = {i: RawNode(self._config(i)) for i in IDS}
        self.queue: list[Message] = []
        self.folds = 0

    def _config(self, i: int) -> Any:
        return new_test_config(
            i,
            10,
            1,
            self.storages[i],
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            max_inflight_msgs=2,
            seed=1000 + i,
        )

    def settle(self, i: int) -> None:
        rn = self.nodes[i]
        s = self.storages[i]
        while rn.has_ready():
            rd = rn.ready()
            if rd.snapshot is not None:
                s.apply_snapshot(rd.snapshot)
            if rd.entries:
                s.append(rd.entries)
            if rd.hard_state is not None:
                s.set_hard_state(rd.hard_state)
            self.queue.extend(rd.messages)
            rn.advance(rd)
        if self.fold:
            state = dormant_state(rn.raft, self._config(i).seed)
            if state is not None:
                self.nodes[i] = RawNode.from_dormant(self._config(i), state)
                self.folds += 1

    def act(self, action: tuple[str, int]) -> None:
        kind, k = action
        i = IDS[k % 3]
        rn = self.nodes[i]
        if kind == "tick":
            rn.tick()
        elif kind == "campaign":
            rn.campaign()
        elif kind == "propose":
            with contextlib.suppress(RaftError):  # no leader to forward to
                rn.propose(b"cmd%d" % k)
        elif kind == "read":
            rn.read_index(b"read%d" % k)
        elif self.queue:
            m = self.queue.pop(k % len(self.queue))
            if kind == "drop":
                return
            if kind == "duplicate":
                self.queue.append(m)
            i = m.to
            with contextlib.suppress(RaftError):  # refused alike by both clusters
                self.nodes[i].step(m)
        self.settle(i)


_ACTIONS = st.tuples(
    st.sampled_from(
        ("tick",) * 3 + ("deliver",) * 4 + ("campaign", "propose", "read", "drop", "duplicate")
    ),
    st.integers(min_value=0, max_value=50),
)


@settings(max_examples=300, deadline=None)
@given(
    actions=st.lists(_ACTIONS, min_size=1, max_size=250),
    pre_vote=st.booleans(),
    check_quorum=st.booleans(),
)
def test_a_folded_and_rebuilt_member_behaves_exactly_like_the_original(
    actions: list[tuple[str, int]], pre_vote: bool, check_quorum: bool
) -> None:
    plain = _Cluster(False, pre_vote, check_quorum)
    folding = _Cluster(True, pre_vote, check_quorum)
    for step, action in enumerate(actions):
        plain.act(action)
        folding.act(action)
        for i in IDS:
            assert _dump(folding.nodes[i]) == _dump(plain.nodes[i]), (step, action, i)
        assert folding.queue == plain.queue, (step, action)


@pytest.mark.parametrize("seed", range(10))
def test_long_random_runs_fold_often_and_never_diverge(seed: int) -> None:
    rng = random.Random(seed)
    kinds = ("tick",) * 4 + ("deliver",) * 5 + ("campaign", "propose", "propose", "read", "drop")
    plain = _Cluster(False, seed % 2 == 0, seed % 3 != 0)
    folding = _Cluster(True, seed % 2 == 0, seed % 3 != 0)
    for step in range(600):
        action = (rng.choice(kinds), rng.randrange(50))
        plain.act(action)
        folding.act(action)
        for i in IDS:
            assert _dump(folding.nodes[i]) == _dump(plain.nodes[i]), f"seed {seed} step {step}"
        assert folding.queue == plain.queue, f"seed {seed} step {step}"
    assert folding.folds > 100, f"seed {seed}: only {folding.folds} folds"
    committed = max(n.raft.raft_log.committed for n in plain.nodes.values())
    assert committed > 3, f"seed {seed}: the run committed only up to {committed}"


def _settled_leader(check_quorum: bool = True) -> _Cluster:
    """Node 1 led term 1 (entries 1-2), then handed leadership to node 2, which
    leads term 2 (entries 3-4); all of it is committed and known everywhere."""
    c = _Cluster(False, True, check_quorum)

    def deliver_all() -> None:
        while c.queue:
            c.act(("deliver", 0))

    c.act(("campaign", 0))
    deliver_all()
    c.act(("propose", 0))
    deliver_all()
    c.nodes[1].transfer_leader(2)
    c.settle(1)
    deliver_all()
    c.act(("propose", 1))
    deliver_all()
    # One heartbeat round so the followers learn the last commit index.
    c.nodes[2].raft.bcast_heartbeat()
    c.settle(2)
    deliver_all()
    return c


def test_settled_leader_and_followers_fold_and_rebuild_field_for_field() -> None:
    c = _settled_leader()
    leader = c.nodes[2]
    assert (leader.raft.state, leader.raft.term, leader.raft.raft_log.committed) == (
        StateType.LEADER,
        2,
        4,
    )
    for i in IDS:
        state = dormant_state(c.nodes[i].raft, c._config(i).seed)
        assert isinstance(state, DormantState), i
        assert (state.term, state.commit, state.applied, state.lead) == (2, 4, 4, 2)
        assert state.member_ids == IDS and state.learners == 0
        rebuilt = RawNode.from_dormant(c._config(i), state)
        assert _dump(rebuilt) == _dump(c.nodes[i])
        assert not rebuilt.has_ready()
    s = dormant_state(leader.raft, c._config(2).seed)
    assert s is not None
    assert (s.state, s.progress_last, s.active) == (StateType.LEADER, 4, 0b101)
    f = dormant_state(c.nodes[3].raft, c._config(3).seed)
    assert f is not None
    assert (f.state, f.progress_last, f.active, f.sent_commits) == (StateType.FOLLOWER, 2, 0, ())
    windows = {id(pr.inflights) for pr in revive(c._config(2), s).trk.progress.values()}
    assert windows == {id(Inflights.shared_empty(2, 0))}


def test_rebuilt_leader_commits_the_next_proposal_at_the_next_index_in_its_term() -> None:
    c = _settled_leader()
    state = dormant_state(c.nodes[2].raft, c._config(2).seed)
    assert state is not None
    c.nodes[2] = RawNode.from_dormant(c._config(2), state)
    c.act(("propose", 1))
    sent = [(m.type, m.to, m.index, [e.index for e in m.entries]) for m in c.queue]
    assert sent == [(MT.APP, 1, 4, [5]), (MT.APP, 3, 4, [5])]
    while c.queue:
        c.act(("deliver", 0))
    assert [(n.raft.term, n.raft.raft_log.committed) for n in c.nodes.values()] == [
        (2, 5),
        (2, 5),
        (2, 5),
    ]
    assert c.nodes[2].raft.state == StateType.LEADER


def test_rebuilt_follower_times_out_at_the_same_tick_and_draws_the_same_timeouts() -> None:
    plain = _settled_leader()
    folded = _settled_leader()
    state = dormant_state(folded.nodes[3].raft, folded._config(3).seed)
    assert state is not None
    folded.nodes[3] = RawNode.from_dormant(folded._config(3), state)
    timeouts = []
    for _ in range(2):
        for c in (plain, folded):
            n = c.nodes[3]
            ticks = 0
            while n.raft.state == StateType.FOLLOWER:
                n.tick()
                ticks += 1
            timeouts.append((ticks, n.raft.state, n.raft.randomized_election_timeout))
            c.settle(3)
            c.queue.clear()
            n.raft.become_follower(n.raft.term, 0)
    assert timeouts[0] == timeouts[1] and timeouts[2] == timeouts[3]
    assert timeouts[0][1] == StateType.PRE_CANDIDATE


def test_members_with_anything_outstanding_do_not_fold() -> None:
    c = _settled_leader()
    leader = c.nodes[2]
    leader.propose(b"x")
    assert dormant_state(leader.raft, c._config(2).seed) is None  # unstable entries, messages
    c.settle(2)
    assert dormant_state(leader.raft, c._config(2).seed) is None  # appends in flight
    while c.queue:
        c.act(("deliver", 0))
    assert dormant_state(leader.raft, c._config(2).seed) is not None
    leader.raft.trk.progress[1].become_probe()
    assert dormant_state(leader.raft, c._config(2).seed) is None
    follower = c.nodes[1]
    assert dormant_state(follower.raft, c._config(1).seed) is not None
    follower.raft.trk.progress[3].recent_active = True
    assert dormant_state(follower.raft, c._config(1).seed) is None
    candidate = c.nodes[3].raft
    candidate.become_pre_candidate()
    assert dormant_state(candidate, c._config(3).seed) is None


def test_rebuilding_over_a_storage_that_changed_is_refused() -> None:
    c = _settled_leader()
    state = dormant_state(c.nodes[3].raft, c._config(3).seed)
    assert state is not None
    hs = c.storages[3].initial_state()[0]
    c.storages[3].set_hard_state(type(hs)(term=hs.term + 1, vote=0, commit=hs.commit))
    with pytest.raises(AssertionError, match="storage changed while dormant"):
        revive(c._config(3), state)


def test_follower_progress_keeps_the_values_of_its_last_new_term() -> None:
    c = _settled_leader()
    pr = c.nodes[3].raft.trk.progress
    assert [(p.state, p.match, p.next) for p in pr.values()] == [
        (ProgressState.PROBE, 0, 3),
        (ProgressState.PROBE, 0, 3),
        (ProgressState.PROBE, 2, 3),
    ]


def test_a_folded_member_keeps_how_many_timeouts_it_drew_not_its_generator_state() -> None:
    c = _settled_leader()
    for i in IDS:
        r = c.nodes[i].raft
        seed = c._config(i).seed
        state = dormant_state(r, seed)
        assert state is not None
        # splitmix64 steps its state by a constant per draw, from the seed.
        step = 0x9E3779B97F4A7C15
        assert r.election_rand_state == (seed + state.rand_draws * step) % (1 << 64)
        assert 2 <= state.rand_draws < 10, state.rand_draws
        assert revive(c._config(i), state).election_rand_state == r.election_rand_state


def test_a_member_folds_into_the_record_it_is_given_and_only_if_it_folds() -> None:
    c = _settled_leader()
    record = DormantState()
    assert repr(record) == "DormantState(empty)"
    leader = c.nodes[2]
    leader.propose(b"x")
    assert dormant_state(leader.raft, c._config(2).seed, record) is None
    assert not hasattr(record, "term")  # left untouched
    follower = c.nodes[3]
    assert dormant_state(follower.raft, c._config(3).seed, record) is record
    assert (record.state, record.term, record.lead) == (StateType.FOLLOWER, 2, 2)
    # Filled again by a later fold, of another member even: every field rewritten.
    c.settle(2)
    while c.queue:
        c.act(("deliver", 0))
    assert dormant_state(leader.raft, c._config(2).seed, record) is record
    fresh = dormant_state(leader.raft, c._config(2).seed)
    assert fresh is not None and fresh is not record
    assert {f: getattr(record, f) for f in DormantState.__slots__} == {
        f: getattr(fresh, f) for f in DormantState.__slots__
    }
    assert record.state == StateType.LEADER
    assert _dump(RawNode.from_dormant(c._config(2), record)) == _dump(leader)
