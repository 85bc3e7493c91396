"""Commands replicated through the raft logs, and what applying them returns.

Range groups apply :class:`Put`, :class:`Delete`, :class:`CompareAndSet` (from
clients) and :class:`InitRange`, :class:`Split`, :class:`ForgetChild`,
:class:`StartMove`, :class:`SettleReplicas` (from hosts). The directory group applies
:class:`InitDirectory`, :class:`AllocateRangeIds`, :class:`RecordSplit` and
:class:`UpdateReplicas`. All are packed with :func:`examples.rangekv.wire.pack`.
"""

from __future__ import annotations

import attrs

from examples.rangekv.descriptor import RangeDescriptor
from examples.rangekv.wire import message

__all__ = [
    "CLIENT_WRITE_OPCODES",
    "HOST_DIRECTORY_OPCODES",
    "AllocateRangeIds",
    "CasOutcome",
    "CompareAndSet",
    "Delete",
    "ForgetChild",
    "IdBlock",
    "InitDirectory",
    "InitRange",
    "NotReady",
    "Put",
    "RecordSplit",
    "Refused",
    "ScanResult",
    "SettleReplicas",
    "Split",
    "SplitOutcome",
    "StartMove",
    "UpdateReplicas",
    "Value",
    "WrongRange",
]

# ---------------------------------------------------------------- range commands


@message(1)
@attrs.frozen(slots=True)
class Put:
    """Set ``key`` to ``value``."""

    key: bytes
    value: bytes


@message(2)
@attrs.frozen(slots=True)
class Delete:
    """Remove ``key`` (no error when absent)."""

    key: bytes


@message(3)
@attrs.frozen(slots=True)
class CompareAndSet:
    """Set ``key`` to ``new`` only if it holds ``expected`` (None: absent; ``new`` None deletes)."""

    key: bytes
    expected: bytes | None
    new: bytes | None


#: Opcodes a client may propose to a range; everything else is for hosts only.
CLIENT_WRITE_OPCODES = frozenset({1, 2, 3})


@message(4)
@attrs.frozen(slots=True)
class InitRange:
    """Give an empty range its descriptor and first keys; the first command of every range.

    A range answers nothing until it has applied this, so that replaying its log
    from the start (after a restart, or on a replica added later) rebuilds the
    keys a split moved into it.
    """

    descriptor: RangeDescriptor
    items: tuple[tuple[bytes, bytes], ...] = ()
    #: The range that split to make this one (0: none).
    parent_id: int = 0


@message(5)
@attrs.frozen(slots=True)
class Split:
    """Move the keys from ``split_key`` up into the new range ``right_range_id``.

    Applies only while the range's generation is still ``generation``.
    ``campaigner`` (the leader that proposed it) starts the new group's election.
    """

    split_key: bytes
    right_range_id: int
    generation: int
    campaigner: int


@message(6)
@attrs.frozen(slots=True)
class ForgetChild:
    """The split-off range ``range_id`` has applied its :class:`InitRange`: drop our copy."""

    range_id: int


# Opcode 7 was SetReplicas (replica set and a "changing" flag, written by the
# client step by step); it is retired so that an old log entry never decodes as
# another command.
@message(8)
@attrs.frozen(slots=True)
class StartMove:
    """Begin moving the range's replica from node ``source`` to node ``target``.

    Applied, it lists ``target`` among the range's replicas next to ``source``
    (every node that is or may become a member) and refuses splits until
    :class:`SettleReplicas` ends the move. The range's leader carries it out.
    """

    source: int
    target: int


@message(9)
@attrs.frozen(slots=True)
class SettleReplicas:
    """Record ``replicas`` (the group's applied membership) and end any move.

    Applies only while the range's replica set is still at ``version``, so a
    decision taken on an older state never overwrites a newer one.
    """

    replicas: tuple[int, ...]
    version: int


# ------------------------------------------------------------ directory commands


@message(10)
@attrs.frozen(slots=True)
class InitDirectory:
    """Start the directory with one range covering every key."""

    first: RangeDescriptor
    next_range_id: int


@message(11)
@attrs.frozen(slots=True)
class AllocateRangeIds:
    """Reserve ``count`` fresh range ids (answered by an :class:`IdBlock`)."""

    count: int


@message(12)
@attrs.frozen(slots=True)
class RecordSplit:
    """Replace a range's entry by its two halves (``left`` keeps the range id)."""

    left: RangeDescriptor
    right: RangeDescriptor


@message(13)
@attrs.frozen(slots=True)
class UpdateReplicas:
    """Record that range ``range_id`` is replicated on ``replicas`` as of ``version``.

    ``version`` counts the changes of the range's replica set (see
    :attr:`~examples.rangekv.range_state.RangeStateMachine.replicas_version`);
    an update older than the one recorded is ignored.
    """

    range_id: int
    replicas: tuple[int, ...]
    version: int = 0


#: Directory commands a host may have another node propose for it (it hosts no directory replica).
HOST_DIRECTORY_OPCODES = frozenset({11, 12, 13})


# ------------------------------------------------------------------- outcomes


@message(20)
@attrs.frozen(slots=True)
class Value:
    """A key's value (None: absent); for writes, the value before the write."""

    value: bytes | None


@message(21)
@attrs.frozen(slots=True)
class CasOutcome:
    """Whether a compare-and-set took effect, and the key's value after it."""

    succeeded: bool
    current: bytes | None


@message(22)
@attrs.frozen(slots=True)
class WrongRange:
    """The key is not in this range: here is the range as it is now.

    ``right`` is the range most recently split off (where the key may have gone
    before the directory knows of it), or None.
    """

    descriptor: RangeDescriptor
    right: RangeDescriptor | None = None


@message(23)
@attrs.frozen(slots=True)
class NotReady:
    """The range has not applied its :class:`InitRange` yet; retry shortly."""

    range_id: int


@message(24)
@attrs.frozen(slots=True)
class SplitOutcome:
    """A split took effect: the range shrank to ``left``, ``right`` is new."""

    left: RangeDescriptor
    right: RangeDescriptor


@message(25)
@attrs.frozen(slots=True)
class Refused:
    """The command did not apply, for ``reason``."""

    reason: str


@message(26)
@attrs.frozen(slots=True)
class IdBlock:
    """Range ids ``first`` .. ``first + count - 1``, reserved for the proposer."""

    first: int
    count: int


@message(27)
@attrs.frozen(slots=True)
class ScanResult:
    """Keys of one range in a scanned span; ``range_end`` is where that range stops."""

    items: tuple[tuple[bytes, bytes], ...]
    range_end: bytes | None
