"""Message builders and small drivers shared by the raft behaviour tests.

Local messages (HUP, BEAT, PROP, READ_INDEX, TRANSFER_LEADER addressed to the
member itself) carry term 0, as the application would produce them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from multiraft.raft import Entry, EntryType, Message, MessageType
from multiraft.raft.raft import Raft
from raft_harness import new_storage, new_test_raft

__all__ = [
    "beat",
    "elect",
    "entries_with_terms",
    "hup",
    "member_with_log",
    "prop",
    "read_index",
    "terms_of",
    "tick_for",
    "transfer",
]


def hup(node_id: int) -> Message:
    """The local message that makes ``node_id`` campaign."""
    return Message(type=MessageType.HUP, from_=node_id, to=node_id)


def beat(node_id: int) -> Message:
    """The local message that makes leader ``node_id`` heartbeat now."""
    return Message(type=MessageType.BEAT, from_=node_id, to=node_id)


def prop(node_id: int, data: bytes = b"", etype: EntryType = EntryType.NORMAL) -> Message:
    """A proposal of one entry made at ``node_id``."""
    return Message(
        type=MessageType.PROP, from_=node_id, to=node_id, entries=(Entry(0, 0, etype, data),)
    )


def read_index(node_id: int, ctx: bytes) -> Message:
    """A linearizable read request made at ``node_id``."""
    return Message(
        type=MessageType.READ_INDEX, from_=node_id, to=node_id, entries=(Entry(0, 0, data=ctx),)
    )


def transfer(transferee: int, to: int) -> Message:
    """A request, delivered to ``to``, to hand leadership to ``transferee``."""
    return Message(type=MessageType.TRANSFER_LEADER, from_=transferee, to=to)


def elect(r: Raft) -> None:
    """Make ``r`` leader of the next term without any votes (a test shortcut)."""
    r.become_candidate()
    r.become_leader()


def tick_for(r: Raft, ticks: int) -> None:
    """Tick ``r`` ``ticks`` times."""
    for _ in range(ticks):
        r.tick()


def entries_with_terms(terms: Iterable[int], first: int = 1) -> list[Entry]:
    """Entries at consecutive indexes from ``first`` with the given terms."""
    return [Entry(term=t, index=first + i) for i, t in enumerate(terms)]


def terms_of(r: Raft) -> list[int]:
    """The terms of every entry in ``r``'s log, index 1 first."""
    return [e.term for e in r.raft_log.all_entries()]


def member_with_log(
    node_id: int, terms: Iterable[int], peers: Iterable[int] = (1, 2, 3), **kw: Any
) -> Raft:
    """A follower whose log holds entries of ``terms`` and whose term is the last of them.

    It has not voted in that term, like a member that learnt the term from the log.
    """
    term_list = list(terms)
    st = new_storage(peers, entries=entries_with_terms(term_list))
    r = new_test_raft(node_id, storage=st, **kw)
    r.become_follower(term_list[-1] if term_list else 0, 0)
    return r
