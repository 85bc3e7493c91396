"""Configuration of one raft group member, validated on construction."""

from __future__ import annotations

import logging
from typing import Any

import attrs

from multiraft.raft.storage import Storage
from multiraft.raft.types import ReadOnlyOption

__all__ = ["Config", "NO_LIMIT"]

NO_LIMIT = (1 << 63) - 1

_default_logger = logging.getLogger("multiraft.raft")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _non_negative_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


@attrs.define(kw_only=True, slots=True)
class Config:
    """Parameters of one raft member (etcd's ``raft.Config``).

    ``election_tick`` must exceed ``heartbeat_tick``; the randomized election
    timeout lies in ``[election_tick, 2 * election_tick)``. ``max_size_per_msg``
    caps the entry bytes of one append (0 sends one entry per append).
    ``max_uncommitted_entries_size`` and ``max_inflight_bytes`` use 0 for "no
    limit". Every invalid value raises ``ValueError`` naming the field.
    """

    id: int
    storage: Storage
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 0
    max_committed_size_per_ready: int = 0
    max_uncommitted_entries_size: int = 0
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 0
    check_quorum: bool = False
    pre_vote: bool = False
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False
    step_down_on_removal: bool = False
    logger: logging.Logger = _default_logger
    #: Seed of the randomized election timeout; ``None`` derives it from ``id``.
    #: Hosts of many groups should give each (group, node) its own seed.
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        _positive_int("id", self.id)
        if self.storage is None:
            raise ValueError("storage must be given")
        _positive_int("heartbeat_tick", self.heartbeat_tick)
        _positive_int("election_tick", self.election_tick)
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError(
                f"election_tick ({self.election_tick}) must be greater than "
                f"heartbeat_tick ({self.heartbeat_tick})"
            )
        _non_negative_int("applied", self.applied)
        _non_negative_int("max_size_per_msg", self.max_size_per_msg)
        _non_negative_int("max_committed_size_per_ready", self.max_committed_size_per_ready)
        _non_negative_int("max_uncommitted_entries_size", self.max_uncommitted_entries_size)
        _positive_int("max_inflight_msgs", self.max_inflight_msgs)
        _non_negative_int("max_inflight_bytes", self.max_inflight_bytes)
        if self.max_inflight_bytes and self.max_inflight_bytes < self.max_size_per_msg:
            raise ValueError("max_inflight_bytes must be >= max_size_per_msg")
        for flag in (
            "check_quorum",
            "pre_vote",
            "disable_proposal_forwarding",
            "step_down_on_removal",
        ):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        if not isinstance(self.read_only_option, ReadOnlyOption):
            raise ValueError(
                f"read_only_option must be a ReadOnlyOption, got {self.read_only_option!r}"
            )
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ValueError("read_only_option LEASE_BASED requires check_quorum=True")

    def effective_max_committed_size_per_ready(self) -> int:
        """The cap on committed entry bytes per Ready; 0 means no limit."""
        return self.max_committed_size_per_ready or NO_LIMIT

    def effective_max_uncommitted_size(self) -> int:
        """The uncommitted-entries budget, ``NO_LIMIT`` when unset."""
        return self.max_uncommitted_entries_size or NO_LIMIT
