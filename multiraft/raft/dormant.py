"""A settled raft member folded into a few integers, and unfolded again exactly.

A node hosting many idle groups keeps, per group, a whole graph of raft objects
(the member, its log, the progress of every peer...) although, once the group
has settled, all of it follows from the stored log and hard state plus a dozen
numbers. :func:`dormant_state` captures those numbers when, and only when, the
member is in a form :func:`revive` rebuilds exactly; the rebuilt member then
answers every later input (message, tick, proposal) as the original would have,
including the random draws of its next election timeout.

The forms rebuilt exactly:

* a follower whose peers' progress is what a new term leaves (every peer probing
  from ``X + 1``, only its own entry at match ``X``, for the last index ``X``
  at that time), as followers never touch it afterwards unless a membership
  change adds a member;
* a leader whose every peer (and itself) replicates with nothing in flight,
  matched up to its last index; what differs per peer (heard from recently,
  commit index sent) is kept.

In both, nothing may be waiting to be persisted, sent or applied: no unstable
entries or snapshot, no outgoing message, read state or pending read, no
leadership transfer, and the storage holds the member's hard state. A
(pre-)candidate is never captured. The votes a leader or follower still holds
from its last election are not kept: only a (pre-)candidate reads them, and
becoming one clears them first.
"""

from __future__ import annotations

from multiraft.raft.config import Config
from multiraft.raft.inflights import Inflights
from multiraft.raft.interning import InternTable
from multiraft.raft.progress import Progress
from multiraft.raft.raft import Raft
from multiraft.raft.tracker import TrackerConfig
from multiraft.raft.types import NONE, ProgressState, StateType

__all__ = ["DormantState", "dormant_progress", "dormant_state", "revive"]

_LEADER = StateType.LEADER
_FOLLOWER = StateType.FOLLOWER
_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE

#: The step of the member's election-timeout generator (splitmix64, see
#: ``Raft.reset_randomized_election_timeout``): its state after ``k`` draws is
#: its seed plus ``k`` steps, so a folded member keeps ``k``, a small number,
#: rather than a 64-bit state allocated while it was awake.
_RAND_STEP = 0x9E3779B97F4A7C15
_RAND_STEP_INVERSE = pow(_RAND_STEP, -1, 1 << 64)
_MASK64 = (1 << 64) - 1

#: Groups with the same members list them in the same order, and settled leaders
#: of groups created together sent the same commit indexes: share the tuples.
_SHARED_TUPLES: InternTable[tuple[int, ...], tuple[int, ...]] = InternTable()


def _shared(values: tuple[int, ...]) -> tuple[int, ...]:
    known = _SHARED_TUPLES.get(values)
    return known if known is not None else _SHARED_TUPLES.add(values, values)


class DormantState:
    """What a settled member keeps while its raft objects are dropped.

    Made empty (every field unset) and filled by :func:`dormant_state`, so a
    record can be allocated long before its member folds (a replica makes its
    own when it is created) and be filled again at every later fold: folding a
    member then allocates nothing that outlives the fold.

    ``progress_last`` is the last index the peers' progress was set from (the
    follower's ``X``; the leader's last index). ``member_ids`` lists the tracked
    members in the member's own order; bit ``i`` of ``learners`` (of ``active``)
    says member ``i`` is a learner (was heard from recently, leaders only);
    ``sent_commits`` is the commit index each member was last sent (leaders
    only). ``rand_draws`` counts the election timeouts drawn since the member's
    generator was seeded.
    """

    __slots__ = (
        "active",
        "applied",
        "commit",
        "config",
        "election_elapsed",
        "heartbeat_elapsed",
        "lead",
        "learners",
        "member_ids",
        "pending_conf_index",
        "progress_last",
        "rand_draws",
        "randomized_election_timeout",
        "sent_commits",
        "state",
        "term",
        "vote",
    )

    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    state: StateType
    election_elapsed: int
    heartbeat_elapsed: int
    randomized_election_timeout: int
    rand_draws: int
    pending_conf_index: int
    config: TrackerConfig
    member_ids: tuple[int, ...]
    learners: int
    progress_last: int
    active: int
    sent_commits: tuple[int, ...]

    def __repr__(self) -> str:
        if not hasattr(self, "term"):
            return "DormantState(empty)"
        return (
            f"DormantState({self.state.name} term={self.term} lead={self.lead} "
            f"commit={self.commit} applied={self.applied} members={self.member_ids})"
        )


def _nothing_outstanding(r: Raft) -> bool:
    log = r.raft_log
    unstable = log.unstable
    if r.msgs or r.read_states or r.pending_read_index_messages or r.read_only.pending:
        return False
    if unstable.entries or unstable.snapshot is not None:
        return False
    if r.lead_transferee != NONE or r.uncommitted_size != 0:
        return False
    if unstable.offset != log.storage.last_index() + 1:
        return False
    hs, _ = log.storage.initial_state()
    return (hs.term, hs.vote, hs.commit) == (r.term, r.vote, log.committed)


def _window_empty(pr: Progress) -> bool:
    w = pr.inflights
    return w.count() == 0 and w.bytes() == 0


def _follower_progress_last(r: Raft) -> int | None:
    """The ``X`` every peer's progress was restarted from, or None if one moved."""
    progress = r.trk.progress
    own = progress.get(r.id)
    if own is not None:
        x = own.match
    elif progress:
        x = next(iter(progress.values())).next - 1
    else:
        x = 0
    self_id = r.id
    for pid, pr in progress.items():
        if (
            pr.state is not _PROBE
            or pr.match != (x if pid == self_id else 0)
            or pr.next != x + 1
            or pr.recent_active
            or pr.pending_snapshot
            or pr.probe_next
            or pr.msg_app_flow_paused
            or pr.sent_commit
            or not _window_empty(pr)
        ):
            return None
    return x


def _leader_progress_settled(r: Raft, last: int) -> bool:
    for pr in r.trk.progress.values():
        if (
            pr.state is not _REPLICATE
            or pr.match != last
            or pr.next != last + 1
            or pr.pending_snapshot
            or pr.probe_next
            or pr.msg_app_flow_paused
            or not _window_empty(pr)
        ):
            return False
    return True


def _rand_origin(seed: int | None, member_id: int) -> int:
    # What Raft seeds its election-timeout generator with, from its Config.
    return (seed if seed is not None else member_id) & _MASK64


def dormant_state(
    r: Raft, seed: int | None, into: DormantState | None = None
) -> DormantState | None:
    """``r`` folded into a :class:`DormantState`, or None if it is not in a form
    :func:`revive` rebuilds exactly (see the module).

    ``seed`` is the ``seed`` of the :class:`Config` ``r`` was built on (and
    :func:`revive` will be given). The state is written into ``into`` when
    given (only if ``r`` folds), else into a new record.
    """
    state = r.state
    if (state is not _FOLLOWER and state is not _LEADER) or not _nothing_outstanding(r):
        return None
    progress = r.trk.progress
    own = progress.get(r.id)
    if r.is_learner != (own is not None and own.is_learner):
        return None
    active = 0
    sent_commits: tuple[int, ...] = ()
    if state is _LEADER:
        last = r.raft_log.last_index()
        if not _leader_progress_settled(r, last):
            return None
        progress_last = last
        for i, pr in enumerate(progress.values()):
            if pr.recent_active:
                active |= 1 << i
        sent_commits = _shared(tuple(pr.sent_commit for pr in progress.values()))
    else:
        x = _follower_progress_last(r)
        if x is None:
            return None
        progress_last = x
    learners = 0
    for i, pr in enumerate(progress.values()):
        if pr.is_learner:
            learners |= 1 << i
    s = into if into is not None else DormantState()
    s.term = r.term
    s.vote = r.vote
    s.commit = r.raft_log.committed
    s.applied = r.raft_log.applied
    s.lead = r.lead
    s.state = state
    s.election_elapsed = r.election_elapsed
    s.heartbeat_elapsed = r.heartbeat_elapsed
    s.randomized_election_timeout = r.randomized_election_timeout
    drawn = r.election_rand_state - _rand_origin(seed, r.id)
    s.rand_draws = (drawn * _RAND_STEP_INVERSE) & _MASK64
    s.pending_conf_index = r.pending_conf_index
    s.config = r.trk.config
    s.member_ids = _shared(tuple(progress))
    s.learners = learners
    s.progress_last = progress_last
    s.active = active
    s.sent_commits = sent_commits
    return s


def dormant_progress(s: DormantState, self_id: int, window: Inflights) -> dict[int, Progress]:
    """The progress of every member, as the member ``s`` was captured from (whose
    id is ``self_id``) had it, every one with the inflights ``window``."""
    x = s.progress_last
    leader = s.state is _LEADER
    progress: dict[int, Progress] = {}
    for i, pid in enumerate(s.member_ids):
        bit = 1 << i
        pr = Progress(
            x + 1,
            window,
            match=x if leader or pid == self_id else 0,
            is_learner=bool(s.learners & bit),
        )
        if leader:
            pr.state = _REPLICATE
            pr.recent_active = bool(s.active & bit)
            pr.sent_commit = s.sent_commits[i]
        progress[pid] = pr
    return progress


def revive(config: Config, s: DormantState) -> Raft:
    """The member ``s`` was captured from, rebuilt on ``config`` (the same storage
    and settings it was built with; ``config.applied`` is not used).

    Raises AssertionError if the storage no longer holds the captured hard state.
    """
    r = Raft(config)
    log = r.raft_log
    if (r.term, r.vote, log.committed) != (s.term, s.vote, s.commit):
        raise AssertionError(
            f"{r.id:x} storage changed while dormant: hard state "
            f"{(r.term, r.vote, log.committed)} instead of {(s.term, s.vote, s.commit)}"
        )
    log.applied = s.applied
    trk = r.trk
    window = Inflights.shared_empty(trk.max_inflight, trk.max_inflight_bytes)
    progress = dormant_progress(s, r.id, window)
    # Still a follower here: installing the membership has no side effect.
    r.switch_to_config(s.config, progress)
    r.lead = s.lead
    r.state = s.state
    r.election_elapsed = s.election_elapsed
    r.heartbeat_elapsed = s.heartbeat_elapsed
    r.randomized_election_timeout = s.randomized_election_timeout
    r.election_rand_state = _rand_origin(config.seed, config.id) + s.rand_draws * _RAND_STEP
    r.pending_conf_index = s.pending_conf_index
    return r
