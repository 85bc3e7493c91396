"""Vote requests from an older term: the answer raft does not give, and its use.

etcd raft drops a ``VOTE`` whose term is below its own (it answers only an
older ``PRE_VOTE``). It relies on the candidate hearing the newer term from the
voter's own messages soon. A voter whose membership is stale never writes to a
candidate it does not list, and one that believes it is a learner writes to
nobody. Without pre-vote such a voter keeps its term ahead of the candidate's
for good, each election timeout a new term. When it also misses the entries
the candidate holds, the group has no leader ever after: the voter needs the
candidate's log, the candidate needs the voter's vote.

So the coordinator answers where raft's assumption fails, as the Raft paper
has every request answered: a voter without a leader that will not write to
the candidate itself (the candidate is not in its membership, or the voter
cannot campaign) rejects an older vote request at its own term. Where a leader
is known, its messages tell the candidate; where the voter lists the candidate
and may campaign, its own vote requests do (answering those too would let two
candidates whose requests cross leapfrog each other's terms without end). The
candidate's raft adopts the newer term, as for any message from a newer term;
it then campaigns again at once, not an election timeout later, or the voter
would move to a newer term again before it asks.
"""

from __future__ import annotations

from multiraft.raft.raft import Raft
from multiraft.raft.types import NONE, Message, MessageType, StateType

__all__ = ["campaigns_again_at_once", "rejection_of_older_vote"]

_VOTE = MessageType.VOTE
_VOTE_RESP = MessageType.VOTE_RESP
_CANDIDATE = StateType.CANDIDATE


def rejection_of_older_vote(m: Message, raft: Raft) -> Message | None:
    """The rejection ``raft`` (just stepped with ``m``) owes a vote request it
    dropped for its older term; None when ``m`` is not one, a leader is known or
    ``raft``'s own vote requests will reach the candidate."""
    if m.type is not _VOTE or not 0 < m.term < raft.term or raft.lead != NONE:
        return None
    if m.from_ in raft.trk.progress and raft.promotable():
        return None
    return Message(type=_VOTE_RESP, to=m.from_, from_=raft.id, term=raft.term, reject=True)


def campaigns_again_at_once(m: Message, raft: Raft) -> bool:
    """Whether candidate ``raft`` (not yet stepped with ``m``) loses its election
    to ``m``, the rejection of its vote request at a newer term.

    Raft itself answers a vote request at the request's term, so a rejection at
    a term above the candidate's is :func:`rejection_of_older_vote`'s.
    """
    return m.type is _VOTE_RESP and m.reject and m.term > raft.term and raft.state is _CANDIDATE
