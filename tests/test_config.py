"""Config validation: every invalid value is refused with a ValueError naming its field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from multiraft.raft import Config, ReadOnlyOption, StateType
from multiraft.raft.raft import Raft
from storage import MemoryStorage


def make(**overrides: Any) -> Config:
    fields: dict[str, Any] = {"id": 1, "storage": MemoryStorage()}
    fields.update(overrides)
    return Config(**fields)


def test_defaults_are_valid_and_match_the_documented_values() -> None:
    c = make()
    assert (c.election_tick, c.heartbeat_tick, c.applied) == (10, 1, 0)
    assert (c.max_inflight_msgs, c.max_inflight_bytes, c.max_uncommitted_entries_size) == (
        256,
        0,
        0,
    )
    assert (c.check_quorum, c.pre_vote, c.disable_proposal_forwarding) == (False, False, False)
    assert (c.step_down_on_removal, c.read_only_option) == (False, ReadOnlyOption.SAFE)


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("id", {"id": 0}),
        ("id", {"id": -3}),
        ("id", {"id": True}),
        ("id", {"id": "1"}),
        ("storage", {"storage": None}),
        ("heartbeat_tick", {"heartbeat_tick": 0}),
        ("heartbeat_tick", {"heartbeat_tick": -1}),
        ("election_tick", {"election_tick": 0}),
        ("election_tick", {"election_tick": 5, "heartbeat_tick": 5}),
        ("election_tick", {"election_tick": 3, "heartbeat_tick": 4}),
        ("applied", {"applied": -1}),
        ("max_size_per_msg", {"max_size_per_msg": -1}),
        ("max_committed_size_per_ready", {"max_committed_size_per_ready": -1}),
        ("max_uncommitted_entries_size", {"max_uncommitted_entries_size": -1}),
        ("max_inflight_msgs", {"max_inflight_msgs": 0}),
        ("max_inflight_msgs", {"max_inflight_msgs": -1}),
        ("max_inflight_bytes", {"max_inflight_bytes": -1}),
        ("max_inflight_bytes", {"max_inflight_bytes": 100, "max_size_per_msg": 101}),
        ("check_quorum", {"check_quorum": 1}),
        ("pre_vote", {"pre_vote": "yes"}),
        ("disable_proposal_forwarding", {"disable_proposal_forwarding": None}),
        ("step_down_on_removal", {"step_down_on_removal": 0}),
        ("read_only_option", {"read_only_option": 1}),
        ("read_only_option", {"read_only_option": ReadOnlyOption.LEASE_BASED}),
        ("seed", {"seed": 1.5}),
    ],
)
def test_invalid_value_raises_value_error_naming_the_field(
    field: str, overrides: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=rf"\b{re.escape(field)}\b"):
        make(**overrides)


def test_lease_based_reads_are_valid_with_check_quorum() -> None:
    c = make(read_only_option=ReadOnlyOption.LEASE_BASED, check_quorum=True)
    assert c.read_only_option == ReadOnlyOption.LEASE_BASED


@pytest.mark.parametrize(
    ("inflight_bytes", "size_per_msg"), [(0, 1 << 20), (1 << 20, 1 << 20), (1 << 21, 1 << 20)]
)
def test_inflight_bytes_unlimited_or_at_least_one_message_is_valid(
    inflight_bytes: int, size_per_msg: int
) -> None:
    c = make(max_inflight_bytes=inflight_bytes, max_size_per_msg=size_per_msg)
    assert (c.max_inflight_bytes, c.max_size_per_msg) == (inflight_bytes, size_per_msg)


def test_validate_catches_a_value_changed_after_construction() -> None:
    c = make()
    c.election_tick = 1
    with pytest.raises(ValueError, match=r"\belection_tick\b"):
        c.validate()


def test_raft_refuses_a_config_made_invalid_after_construction() -> None:
    c = make()
    c.max_inflight_msgs = 0
    with pytest.raises(ValueError, match=r"\bmax_inflight_msgs\b"):
        Raft(c)


def test_raft_starts_as_a_follower_from_a_valid_config() -> None:
    r = Raft(make(election_tick=4, heartbeat_tick=2))
    assert (r.state, r.election_timeout, r.heartbeat_timeout) == (StateType.FOLLOWER, 4, 2)
    assert 4 <= r.randomized_election_timeout < 8
