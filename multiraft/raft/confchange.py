"""Validated membership changes: simple (one voter at a time) and joint consensus.

A :class:`Changer` computes the configuration and progress map that result
from a set of changes, on copies: the inputs are never mutated, so a change
that turns out invalid leaves the group's active configuration untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from multiraft.raft.errors import RaftError
from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.quorum import JointConfig, MajorityConfig
from multiraft.raft.tracker import TrackerConfig
from multiraft.raft.types import ConfChangeSingle, ConfChangeType, ConfState

__all__ = ["Changer", "ConfChangeError", "restore"]


class ConfChangeError(RaftError, ValueError):
    """A membership change is invalid for the current configuration."""


class _Draft:
    """Mutable working copy of a configuration while changes are applied."""

    __slots__ = ("auto_leave", "incoming", "learners", "learners_next", "outgoing", "progress")

    def __init__(self, config: TrackerConfig, progress: dict[int, Progress]) -> None:
        self.incoming = set(config.voters.incoming.ids())
        self.outgoing = set(config.voters.outgoing.ids())
        self.learners = set(config.learners)
        self.learners_next = set(config.learners_next)
        self.auto_leave = config.auto_leave
        self.progress = {node_id: pr.clone() for node_id, pr in progress.items()}

    def freeze(self) -> tuple[TrackerConfig, dict[int, Progress]]:
        config = TrackerConfig(
            JointConfig(MajorityConfig(self.incoming), MajorityConfig(self.outgoing)),
            self.auto_leave,
            self.learners,
            self.learners_next,
        )
        _check_invariants(config, self.progress)
        return config, self.progress


def _check_invariants(config: TrackerConfig, progress: dict[int, Progress]) -> None:
    voters = config.voters
    for group in (voters.incoming, voters.outgoing, config.learners, config.learners_next):
        for node_id in group:
            if node_id not in progress:
                raise ConfChangeError(f"no progress for member {node_id}")
    for node_id in config.learners_next:
        # Staged only because the node is still an outgoing voter.
        if node_id not in voters.outgoing:
            raise ConfChangeError(f"{node_id} is in learners_next but not an outgoing voter")
        if progress[node_id].is_learner:
            raise ConfChangeError(f"{node_id} is in learners_next but already marked learner")
    for node_id in config.learners:
        if node_id in voters.outgoing:
            raise ConfChangeError(f"{node_id} is both a learner and an outgoing voter")
        if node_id in voters.incoming:
            raise ConfChangeError(f"{node_id} is both a learner and an incoming voter")
        if not progress[node_id].is_learner:
            raise ConfChangeError(f"{node_id} is a learner but its progress is not marked so")
    if not voters.is_joint():
        if config.learners_next:
            raise ConfChangeError("learners_next must be empty outside a joint config")
        if config.auto_leave:
            raise ConfChangeError("auto_leave must be false outside a joint config")


class Changer:
    """Computes new configurations from ``config`` and ``progress``, leaving both untouched.

    ``last_index`` is the leader's last log index; a newly added member starts
    probing from there. ``max_inflight`` and ``max_inflight_bytes`` size the
    window of a newly added member.
    """

    __slots__ = ("config", "last_index", "max_inflight", "max_inflight_bytes", "progress")

    def __init__(
        self,
        config: TrackerConfig,
        progress: dict[int, Progress],
        last_index: int,
        max_inflight: int,
        max_inflight_bytes: int = 0,
    ) -> None:
        self.config = config
        self.progress = progress
        self.last_index = last_index
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def _draft(self) -> _Draft:
        _check_invariants(self.config, self.progress)
        return _Draft(self.config, self.progress)

    def enter_joint(
        self, auto_leave: bool, changes: Sequence[ConfChangeSingle]
    ) -> tuple[TrackerConfig, dict[int, Progress]]:
        """Enter a joint config: the current voters become the outgoing half and
        ``changes`` are applied to the incoming half."""
        draft = self._draft()
        if draft.outgoing:
            raise ConfChangeError("config is already joint")
        if not draft.incoming:
            # An empty config may grow by simple changes (bootstrap), never jointly.
            raise ConfChangeError("cannot make a config without voters joint")
        draft.outgoing = set(draft.incoming)
        self._apply(draft, changes)
        draft.auto_leave = auto_leave
        return draft.freeze()

    def leave_joint(self) -> tuple[TrackerConfig, dict[int, Progress]]:
        """Leave the joint config: drop the outgoing half, turn staged learners into
        learners, and forget members that belong to nothing any more."""
        draft = self._draft()
        if not draft.outgoing:
            raise ConfChangeError("cannot leave a config that is not joint")
        for node_id in draft.learners_next:
            draft.learners.add(node_id)
            draft.progress[node_id].is_learner = True
        draft.learners_next = set()
        for node_id in draft.outgoing:
            if node_id not in draft.incoming and node_id not in draft.learners:
                del draft.progress[node_id]
        draft.outgoing = set()
        draft.auto_leave = False
        return draft.freeze()

    def simple(
        self, changes: Sequence[ConfChangeSingle]
    ) -> tuple[TrackerConfig, dict[int, Progress]]:
        """Apply ``changes`` directly; together they may change at most one voter."""
        draft = self._draft()
        if draft.outgoing:
            raise ConfChangeError("cannot apply a simple config change in a joint config")
        self._apply(draft, changes)
        before = self.config.voters.incoming.ids()
        if len(before ^ draft.incoming) > 1:
            raise ConfChangeError("more than one voter changed without entering a joint config")
        return draft.freeze()

    def _apply(self, draft: _Draft, changes: Iterable[ConfChangeSingle]) -> None:
        for cc in changes:
            node_id = cc.node_id
            if node_id == 0:
                # Applications zero the id of a change they decided not to apply.
                continue
            if cc.type == ConfChangeType.ADD_NODE:
                self._make_voter(draft, node_id)
            elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
                self._make_learner(draft, node_id)
            elif cc.type == ConfChangeType.REMOVE_NODE:
                _remove(draft, node_id)
            elif cc.type != ConfChangeType.UPDATE_NODE:
                raise ConfChangeError(f"unexpected conf change type {cc.type!r}")
        if not draft.incoming:
            raise ConfChangeError("removed all voters")

    def _new_progress(self, is_learner: bool) -> Progress:
        return Progress(
            max(self.last_index, 1),
            Inflights.shared_empty(self.max_inflight, self.max_inflight_bytes),
            is_learner=is_learner,
            # A new member counts as active so check-quorum does not depose the
            # leader before the member had a chance to answer.
            recent_active=True,
        )

    def _make_voter(self, draft: _Draft, node_id: int) -> None:
        pr = draft.progress.get(node_id)
        if pr is None:
            draft.progress[node_id] = self._new_progress(is_learner=False)
        else:
            pr.is_learner = False
            draft.learners.discard(node_id)
            draft.learners_next.discard(node_id)
        draft.incoming.add(node_id)

    def _make_learner(self, draft: _Draft, node_id: int) -> None:
        pr = draft.progress.get(node_id)
        if pr is None:
            draft.progress[node_id] = self._new_progress(is_learner=True)
            draft.learners.add(node_id)
            return
        if pr.is_learner:
            return
        _remove(draft, node_id)
        # Demotion keeps the replication progress.
        draft.progress[node_id] = pr
        if node_id in draft.outgoing:
            # Still an outgoing voter: it becomes a learner when the joint config is left.
            draft.learners_next.add(node_id)
        else:
            pr.is_learner = True
            draft.learners.add(node_id)


def _remove(draft: _Draft, node_id: int) -> None:
    if node_id not in draft.progress:
        return
    draft.incoming.discard(node_id)
    draft.learners.discard(node_id)
    draft.learners_next.discard(node_id)
    if node_id not in draft.outgoing:
        del draft.progress[node_id]


def restore(conf_state: ConfState, changer: Changer) -> tuple[TrackerConfig, dict[int, Progress]]:
    """Build the configuration described by ``conf_state``, starting from ``changer``
    (which must hold an empty configuration).

    A joint state is rebuilt by first adding the outgoing voters one at a time,
    then entering the joint config with the incoming voters and learners.
    """
    if not isinstance(conf_state, ConfState) or not isinstance(changer, Changer):
        raise TypeError("restore takes (conf_state: ConfState, changer: Changer)")
    config = changer.config
    progress = changer.progress
    if conf_state.is_empty():
        # A new group (its membership comes with its first entries or a snapshot):
        # nothing to replay. Hosts create thousands of these in one go.
        return config, progress

    def step(changes: Sequence[ConfChangeSingle], joint: bool) -> None:
        nonlocal config, progress
        chg = Changer(
            config, progress, changer.last_index, changer.max_inflight, changer.max_inflight_bytes
        )
        if joint:
            config, progress = chg.enter_joint(conf_state.auto_leave, changes)
        else:
            config, progress = chg.simple(changes)

    add, add_learner, remove = (
        ConfChangeType.ADD_NODE,
        ConfChangeType.ADD_LEARNER_NODE,
        ConfChangeType.REMOVE_NODE,
    )
    incoming = [ConfChangeSingle(remove, i) for i in conf_state.voters_outgoing]
    incoming += [ConfChangeSingle(add, i) for i in conf_state.voters]
    incoming += [ConfChangeSingle(add_learner, i) for i in conf_state.learners]
    incoming += [ConfChangeSingle(add_learner, i) for i in conf_state.learners_next]
    if not conf_state.voters_outgoing:
        for cc in incoming:
            step((cc,), joint=False)
    else:
        for node_id in conf_state.voters_outgoing:
            step((ConfChangeSingle(add, node_id),), joint=False)
        step(incoming, joint=True)
    return config, progress
