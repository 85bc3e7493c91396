"""Configuration of one node of the coordinator, validated on construction."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from multiraft.raft.types import ReadOnlyOption

if TYPE_CHECKING:
    from multiraft.state_machine import StateMachine

__all__ = ["NodeConfig", "UnknownGroupPolicy"]


class UnknownGroupPolicy(enum.Enum):
    """What a node does with a message for a group it does not host (and never removed)."""

    #: Create the replica at once, empty, with ``NodeConfig.state_machine_factory``.
    CREATE = "create"
    #: Hold the message in a bounded buffer until ``create_group`` is called for the group.
    BUFFER = "buffer"
    #: Drop the message.
    DROP = "drop"


def _int_at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _positive_seconds(name: str, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")


@attrs.define(kw_only=True, slots=True)
class NodeConfig:
    """Parameters of one node hosting many raft groups.

    Time is counted in ticks of ``tick_interval`` seconds. Raft parameters
    (``election_ticks`` ... ``read_only_option``) apply to every group the node
    hosts. Every invalid value raises ``ValueError`` naming the field.

    * ``quiesce``: idle groups stop ticking and heartbeating (False keeps every
      group ticking, for comparison and tests).
    * ``dormant_after_ticks``: a quiesced group's raft state folds into a compact
      dormant record once it stayed quiesced this many ticks (0: at once); a
      group touched again sooner is not rebuilt (see :mod:`multiraft.fold_schedule`).
    * ``skip_redundant_heartbeats``: leave out a group's heartbeat to a follower
      it sent an append in the previous heartbeat interval (see
      :mod:`multiraft.heartbeats`; only where ``election_ticks`` exceeds three
      heartbeat intervals, so a follower never waits an election timeout).
    * ``peer_timeout_ticks``: a peer node not heard from for this many ticks is
      judged dead; groups quiesced under a leader on it wake and elect.
    * ``proposal_timeout``: how long ``propose``/``read``/``change_membership``/
      ``transfer_leadership`` wait (for a leader, then for the outcome).
    * ``snapshot_entries`` / ``snapshot_bytes``: take a state machine snapshot and
      compact the log once this many entries / command bytes were applied since
      the last one (0 disables that trigger); ``snapshot_keep_entries`` entries
      stay in the log behind the snapshot for followers that lag a little.
    * ``max_concurrent_snapshot_sends``: snapshots this node may have in flight
      at once, over all its groups (a group never has more than one).
    * ``unknown_group_policy``: see :class:`UnknownGroupPolicy`;
      ``unknown_group_buffer_groups`` and ``unknown_group_buffer_messages`` bound the
      buffer (groups, messages per group); ``unknown_group_create_limit`` bounds the
      replicas created by ``CREATE`` that have not yet learned their membership.
    * ``write_in_thread``: run log engine writes in a worker thread (``None``: yes
      for durable engines, no for the in-memory default).
    * ``event_buffer``: events kept per ``events()`` subscriber before the oldest
      are dropped.
    * ``seed``: mixed into every group's election timeout randomization.
    * ``first_proposal_id``: the sequence number this node's first command,
      read or membership change carries in its header (``None``: a random
      number below 2**62, drawn when the node opens). A restarted node may
      still apply entries its earlier runs proposed, and finds a request's
      waiter by that number: ids of one run must not repeat those of an earlier
      one, so each run starts somewhere else (see :mod:`multiraft.proposals`).
    """

    node_id: int = attrs.field(kw_only=False)
    tick_interval: float = 0.1
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    quiesce: bool = True
    dormant_after_ticks: int = 10
    skip_redundant_heartbeats: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 0
    max_uncommitted_entries_size: int = 0
    max_committed_size_per_ready: int = 0
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    step_down_on_removal: bool = False
    peer_timeout_ticks: int = 0
    proposal_timeout: float = 10.0
    snapshot_entries: int = 10_000
    snapshot_bytes: int = 0
    snapshot_keep_entries: int = 100
    max_concurrent_snapshot_sends: int = 8
    unknown_group_policy: UnknownGroupPolicy = UnknownGroupPolicy.BUFFER
    unknown_group_buffer_groups: int = 1024
    unknown_group_buffer_messages: int = 16
    unknown_group_create_limit: int = 1024
    state_machine_factory: Callable[[int], StateMachine] | None = None
    write_in_thread: bool | None = None
    event_buffer: int = 10_000
    seed: int = 0
    first_proposal_id: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.peer_timeout_ticks == 0 and isinstance(self.election_ticks, int):
            self.peer_timeout_ticks = self.election_ticks
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        _int_at_least("node_id", self.node_id, 1)
        _positive_seconds("tick_interval", self.tick_interval)
        _int_at_least("heartbeat_ticks", self.heartbeat_ticks, 1)
        _int_at_least("election_ticks", self.election_ticks, 1)
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError(
                f"election_ticks ({self.election_ticks}) must be greater than "
                f"heartbeat_ticks ({self.heartbeat_ticks})"
            )
        for flag in (
            "pre_vote",
            "check_quorum",
            "quiesce",
            "step_down_on_removal",
            "skip_redundant_heartbeats",
        ):
            _bool(flag, getattr(self, flag))
        _int_at_least("max_size_per_msg", self.max_size_per_msg, 0)
        _int_at_least("max_inflight_msgs", self.max_inflight_msgs, 1)
        _int_at_least("max_inflight_bytes", self.max_inflight_bytes, 0)
        if self.max_inflight_bytes and self.max_inflight_bytes < self.max_size_per_msg:
            raise ValueError("max_inflight_bytes must be 0 or >= max_size_per_msg")
        _int_at_least("max_uncommitted_entries_size", self.max_uncommitted_entries_size, 0)
        _int_at_least("max_committed_size_per_ready", self.max_committed_size_per_ready, 0)
        if not isinstance(self.read_only_option, ReadOnlyOption):
            raise ValueError(
                f"read_only_option must be a ReadOnlyOption, got {self.read_only_option!r}"
            )
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ValueError("read_only_option LEASE_BASED requires check_quorum=True")
        _int_at_least("peer_timeout_ticks", self.peer_timeout_ticks, self.heartbeat_ticks + 1)
        _int_at_least("dormant_after_ticks", self.dormant_after_ticks, 0)
        _positive_seconds("proposal_timeout", self.proposal_timeout)
        _int_at_least("snapshot_entries", self.snapshot_entries, 0)
        _int_at_least("snapshot_bytes", self.snapshot_bytes, 0)
        _int_at_least("snapshot_keep_entries", self.snapshot_keep_entries, 0)
        _int_at_least("max_concurrent_snapshot_sends", self.max_concurrent_snapshot_sends, 1)
        if not isinstance(self.unknown_group_policy, UnknownGroupPolicy):
            raise ValueError(
                "unknown_group_policy must be an UnknownGroupPolicy, "
                f"got {self.unknown_group_policy!r}"
            )
        _int_at_least("unknown_group_buffer_groups", self.unknown_group_buffer_groups, 0)
        _int_at_least("unknown_group_buffer_messages", self.unknown_group_buffer_messages, 0)
        _int_at_least("unknown_group_create_limit", self.unknown_group_create_limit, 0)
        if self.state_machine_factory is not None and not callable(self.state_machine_factory):
            raise ValueError("state_machine_factory must be callable or None")
        if (
            self.unknown_group_policy == UnknownGroupPolicy.CREATE
            and self.state_machine_factory is None
        ):
            raise ValueError(
                "state_machine_factory is required when unknown_group_policy is CREATE"
            )
        if self.write_in_thread is not None:
            _bool("write_in_thread", self.write_in_thread)
        _int_at_least("event_buffer", self.event_buffer, 1)
        _int_at_least("seed", self.seed, 0)
        if self.first_proposal_id is not None:
            _int_at_least("first_proposal_id", self.first_proposal_id, 0)
            if self.first_proposal_id >= 1 << 63:
                raise ValueError(
                    f"first_proposal_id must be below 2**63, got {self.first_proposal_id!r}"
                )
