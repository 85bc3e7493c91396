"""The node's tick: advance the groups that are awake, quiesce the idle, react to dead peers.

One timer serves every group. A tick visits only the groups that are not
quiesced: it ticks their raft (elections, heartbeats) and, for leaders whose
group went idle, asks the followers to quiesce with it. Node-level liveness is
judged here too: when a peer node falls silent, the groups that followed a
leader on it forget that leader and one survivor per group campaigns.
"""

from __future__ import annotations

import logging

from multiraft.groups import GroupTable
from multiraft.heartbeats import Outbox
from multiraft.quiescence import leader_may_quiesce
from multiraft.raft.types import NONE, StateType
from multiraft.replica import Replica

__all__ = ["CAMPAIGN_DELAY_TICKS", "Ticker"]

_log = logging.getLogger("multiraft.node")

_LEADER = StateType.LEADER
_FOLLOWER = StateType.FOLLOWER

#: Ticks a designated survivor waits after judging a leader's node dead before it
#: campaigns, so that the other survivors have judged it dead too and grant votes.
CAMPAIGN_DELAY_TICKS = 2


class Ticker:
    """Runs the node's ticks over its awake groups."""

    __slots__ = ("_campaigns", "_outbox", "_table")

    def __init__(self, table: GroupTable, outbox: Outbox) -> None:
        self._table = table
        self._outbox = outbox
        #: ``(tick due, replica)`` of campaigns after a leader's node died.
        self._campaigns: list[tuple[int, Replica]] = []

    def tick(self) -> None:
        """One tick of the node's timer."""
        table = self._table
        c = table.counters
        c.ticks += 1
        table.tick = tick = c.ticks
        if tick % table.config.heartbeat_ticks == 0:
            self._outbox.new_heartbeat_interval()
        for peer in table.liveness.newly_dead(tick):
            self._on_peer_dead(peer)
        if self._campaigns:
            self._run_due_campaigns(tick)
        quiesce = table.config.quiesce
        dead = table.liveness.dead
        dirty = table.dirty
        to_quiesce: list[Replica] = []
        n = 0
        idle_before = tick - 1
        for r in table.active:
            if r.corrupt:
                # A damaged log must not start elections: it waits for a snapshot.
                continue
            rn = r.rawnode
            raft = rn.raft
            state = raft.state
            if (
                quiesce
                and state is _LEADER
                and r.last_active_tick < idle_before
                and leader_may_quiesce(r, dead)
            ):
                to_quiesce.append(r)
                continue
            rn.tick()
            n += 1
            # A tick creates work only by sending (heartbeats, votes) or by changing
            # role (an election, a leader stepping down): cheaper than has_ready().
            if raft.msgs or raft.state is not state:
                dirty[r] = None
        c.groups_ticked += n
        for r in to_quiesce:
            self._quiesce_as_leader(r)

    def quiesce_if_idle(self, r: Replica) -> None:
        """Quiesce leader ``r`` right away if it settled and is idle.

        The tick quiesces settled leaders too, but a group that just elected its
        leader (and was not busy in this tick or the previous one) need not keep
        heartbeating until then. A busy group waits until it was idle for a whole
        tick, so it does not quiesce and wake between two proposals.
        """
        table = self._table
        if (
            table.config.quiesce
            and not r.quiesced
            and r.last_active_tick < table.tick - 1
            and r.rawnode.raft.state is _LEADER
            and leader_may_quiesce(r, table.liveness.dead)
        ):
            self._quiesce_as_leader(r)

    def _quiesce_as_leader(self, r: Replica) -> None:
        raft = r.rawnode.raft
        commit = raft.raft_log.committed
        node_id = self._table.node_id
        for pid in raft.trk.progress:
            if pid != node_id:
                self._outbox.add_quiesce(r.group_id, node_id, pid, raft.term, commit)
        self._table.quiesce(r)

    def _on_peer_dead(self, peer: int) -> None:
        """Groups following a leader on ``peer`` forget it; one survivor campaigns soon."""
        table = self._table
        table.counters.peers_judged_dead += 1
        _log.info("node %d: peer %d judged dead", table.node_id, peer)
        dead = table.liveness.dead
        for r in table.replicas.values():
            if r.failed is not None:
                continue
            if not r.follows(peer):
                continue
            table.wake(r)
            r.rawnode.forget_leader()
            table.dirty[r] = None
            live = [v for v in r.conf_state.voters if v not in dead]
            if live and min(live) == table.node_id:
                self._campaigns.append((table.tick + CAMPAIGN_DELAY_TICKS, r))

    def _run_due_campaigns(self, tick: int) -> None:
        due = [r for t, r in self._campaigns if t <= tick]
        self._campaigns = [(t, r) for t, r in self._campaigns if t > tick]
        for r in due:
            raft = r.rawnode.raft
            if r.removed or r.failed is not None or r.corrupt:
                continue
            if raft.state is _FOLLOWER and raft.lead == NONE:
                r.rawnode.campaign()
                self._table.dirty[r] = None
