"""What :meth:`Node.create_groups` needs to know about each group it creates."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from multiraft.state_machine import StateMachine

__all__ = ["GroupSpec"]


def _node_ids(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


@attrs.frozen(slots=True)
class GroupSpec:
    """One group to host: its id, its initial members and this replica's state machine.

    ``campaign`` starts an election on this node as soon as the group's initial
    membership is applied (in the node's next ready cycle). ``join`` creates an
    empty replica that learns log and membership from the leader (for a node
    added by ``change_membership``; ``replicas`` is then not used).
    """

    group_id: int
    replicas: tuple[int, ...] = attrs.field(converter=_node_ids)
    state_machine: StateMachine
    campaign: bool = False
    join: bool = False
