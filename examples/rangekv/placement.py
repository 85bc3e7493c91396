"""Where a range's replicas live: carrying out moves, recording them, collecting strays.

Three sources describe a range's replicas and each lags the one before it: the
range group's applied raft membership, the range's own descriptor (changed by
commands in the range's log) and the directory's copy. A :class:`ReplicaKeeper`
on every node brings them back in line whatever step a change stopped at:

* **Moves and reconciliation**, on the range's leader. A move is recorded in
  the range first (:class:`~examples.rangekv.commands.StartMove`): the
  descriptor then lists the arriving node next to the leaving one. The leader
  has the directory record that list, adds the arriving node, hands leadership
  away if it is the leaving node, removes the leaving node once the arriving
  one has caught up, and records the membership it ended with
  (:class:`~examples.rangekv.commands.SettleReplicas`), in the range and then in
  the directory. Every step reads the current state first, so a move stopped
  anywhere (a crash, a partition, a leader change, a failed directory write) is
  finished by whichever node leads the range next, and a descriptor that
  disagrees with the membership without a move is corrected the same way. A
  leader that applied its own removal (it won an election before the removal
  applied) hands leadership to a member: it cannot propose any more, and as in
  etcd it would otherwise go on leading.
* **Joining**: a node hosts the ranges the directory lists it for. A founding
  replica (one of the nodes the range's group was created with) is recreated
  with the same bootstrap membership, any other node joins empty.
* **Replica GC**: a node that hosts a range the directory no longer lists it
  for removes its replica (``Node.remove_group``, which leaves a tombstone).

Why the last is safe: the directory lists every node that is or may become a
member of a range. A node is listed before it is added (the move is recorded
in the directory before the leader adds it) and unlisted only once it was
removed (the settled membership is recorded after the removal applied), and
directory updates carry the range's replica-set version so a late, older one
changes nothing. A stray is removed only after it was seen unlisted in two
passes in a row and a linearizable read of the directory confirms it.

A node that does not host the directory reads and updates it through
``peers`` (a :class:`~examples.rangekv.client.HostLink` to the other hosts, like
CockroachDB's nodes reading and writing meta ranges through their KV client):
the moves and splits of the ranges it leads are recorded that way. Without
peers it relies on its own directory replica, if any.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from examples.rangekv.client import HostLink, RangeClient, RangeKVError
from examples.rangekv.commands import (
    AllocateRangeIds,
    RecordSplit,
    Refused,
    SettleReplicas,
    StartMove,
    UpdateReplicas,
    Value,
)
from examples.rangekv.descriptor import DIRECTORY_ID, RangeDescriptor
from examples.rangekv.directory import Placement
from examples.rangekv.protocol import NotHosted, Ok, Unavailable
from examples.rangekv.range_state import RangeStateMachine
from examples.rangekv.wire import pack
from multiraft import MultiraftError, ProposalDroppedError
from multiraft.raft import ConfChange, ConfChangeType, ConfState, ProgressState

if TYPE_CHECKING:
    from examples.rangekv.host import RangeHost

__all__ = ["DirectoryView", "ReplicaKeeper", "members"]

_log = logging.getLogger("examples.rangekv.placement")

#: Errors after which a step is simply tried again on a later pass.
_RETRYABLE = (MultiraftError, ProposalDroppedError, RangeKVError)

Spawn = Callable[..., Any]


def members(cs: ConfState) -> set[int]:
    """Every node of a raft membership: voters, learners, outgoing and staged ones."""
    return {*cs.voters, *cs.learners, *cs.voters_outgoing, *cs.learners_next}


@attrs.frozen(slots=True)
class DirectoryView:
    """The directory's ranges and placements by range id, as read at one moment."""

    ranges: dict[int, RangeDescriptor]
    placements: dict[int, Placement]

    @classmethod
    def of(cls, descriptors: Any, placements: Any) -> DirectoryView:
        """A view of these descriptors and placements."""
        return cls({d.range_id: d for d in descriptors}, {p.range_id: p for p in placements})

    def unlists(self, range_id: int, node_id: int) -> bool:
        """Whether the directory has the range and does not list ``node_id``."""
        desc = self.ranges.get(range_id)
        return desc is not None and node_id not in desc.replicas


class ReplicaKeeper:
    """One node's share of replica placement; see the module documentation."""

    def __init__(self, host: RangeHost) -> None:
        self.host = host
        #: Other hosts, for a node that does not host the directory itself.
        self.peers: HostLink | None = None
        #: The directory as last read from a peer (nodes without a directory replica).
        self._remote: DirectoryView | None = None
        self._refreshing = False
        #: Maintenance passes left before the next read of the directory through peers.
        self._passes_to_read = 0
        #: Range id -> the replica-set version the directory is known to hold.
        self._recorded: dict[int, int] = {}
        #: Range id -> (replica-set version, index the arriving node must reach).
        self._catch_up: dict[int, tuple[int, int]] = {}
        self._reconciling: set[int] = set()
        self._collecting: set[int] = set()
        self._missing: set[int] = set()
        self._strays: set[int] = set()

    # ------------------------------------------------------------ directory

    def _hosts(self, group_id: int) -> bool:
        try:
            self.host.node.applied_index(group_id)
        except MultiraftError:
            return False
        return True

    def _hosts_directory(self) -> bool:
        return self._hosts(DIRECTORY_ID)

    def view(self) -> DirectoryView | None:
        """The directory as this node last saw it (no read barrier), or None."""
        directory = self.host.directory
        if directory.ready:
            return DirectoryView(directory.by_id, directory.placements)
        return self._remote

    def _client(self) -> RangeClient | None:
        if self.peers is None:
            return None
        timeout = 3 * self.host.settings.read_timeout
        return RangeClient(self.peers, timeout=timeout, retry_delay=0.01)

    async def read_directory(self, *, consistent: bool = True) -> DirectoryView | None:
        """The directory, linearizable unless ``consistent`` is False (None: unreadable now)."""
        host = self.host
        try:
            if self._hosts_directory():
                if not consistent:
                    return self.view() if host.directory.ready else None
                with trio.move_on_after(host.settings.read_timeout):
                    await host.node.read(DIRECTORY_ID)
                    return self.view() if host.directory.ready else None
                return None
            client = self._client()
            if client is None:
                return None
            reply = await client.directory(consistent=consistent)
        except _RETRYABLE as exc:
            _log.debug("node %d: directory unreadable: %s", host.node_id, exc)
            return None
        self._remote = DirectoryView.of(reply.descriptors, reply.placements)
        return self._remote

    async def _refresh(self) -> None:
        self._refreshing = True
        try:
            # Joins and stray candidates act on what two views in a row show, and a
            # stray is removed only after a linearizable read: a stale view will do.
            await self.read_directory(consistent=False)
        finally:
            self._refreshing = False

    async def recorded_range(self, range_id: int) -> RangeDescriptor | None:
        """The directory's entry for the range, without a read barrier (None: none or unreadable).

        From this node's directory replica, else read through its peers. It may
        lag the directory but never runs ahead of it.
        """
        directory = self.host.directory
        if directory.ready:
            return directory.by_id.get(range_id)
        view = await self.read_directory(consistent=False)
        return None if view is None else view.ranges.get(range_id)

    async def propose_to_directory(
        self, command: AllocateRangeIds | RecordSplit | UpdateReplicas
    ) -> object:
        """The directory's outcome of ``command``, proposed here or (no replica here) by a peer.

        Raises one of the retryable errors when neither works now. After a
        change made through a peer the next maintenance pass reads the directory
        again, so that this node sees what it just changed.
        """
        packed = pack(command)
        if self._hosts_directory():
            return await self.host.node.propose(DIRECTORY_ID, packed)
        client = self._client()
        if client is None:
            raise ProposalDroppedError("no directory replica here and no peers to reach one")
        outcome = await client.directory_command(packed)
        self._passes_to_read = 0
        return outcome

    async def record(self, range_id: int, replicas: tuple[int, ...], version: int) -> bool:
        """Have the directory list ``replicas`` for the range at ``version``; whether it does."""
        if self._recorded.get(range_id, -1) >= version:
            return True
        host = self.host
        try:
            outcome = await self.propose_to_directory(UpdateReplicas(range_id, replicas, version))
        except _RETRYABLE as exc:
            _log.debug("range %d: recording replicas %s failed: %s", range_id, replicas, exc)
            return False
        if not isinstance(outcome, Value):
            _log.debug(
                "range %d: the directory refused replicas %s: %r", range_id, replicas, outcome
            )
            return False
        self._recorded[range_id] = max(version, self._recorded.get(range_id, -1))
        host.counters.replicas_recorded += 1
        return True

    def _is_recorded(self, range_id: int, desc: RangeDescriptor, version: int) -> bool:
        if self._recorded.get(range_id, -1) >= version:
            return True
        view = self.view()
        if view is None:
            return False
        placement = view.placements.get(range_id)
        recorded = view.ranges.get(range_id)
        if placement is None or recorded is None:
            return False
        if placement.version > version or (
            placement.version == version and recorded.replicas == desc.replicas
        ):
            self._recorded[range_id] = version
            return True
        return False

    # ----------------------------------------------------------- the leader

    def needs_reconciling(self, range_id: int, sm: RangeStateMachine) -> bool:
        """Whether range ``range_id`` (led here) has a move or a disagreement to settle."""
        desc = sm.descriptor
        if desc is None:
            return False
        view = self.view()
        if view is not None and range_id not in view.ranges:
            return False  # a split not recorded yet: recording it comes first
        if sm.move is not None or not self._is_recorded(range_id, desc, sm.replicas_version):
            return True
        try:
            current = members(self.host.node.membership(range_id))
        except MultiraftError:
            return False
        return bool(current) and current != set(desc.replicas)

    def reconcile_soon(self, range_id: int, spawn: Spawn) -> None:
        """Start settling the range here if it is led here and needs it (at most once at a time)."""
        host = self.host
        sm = host.ranges.get(range_id)
        if (
            sm is None
            or range_id in self._reconciling
            or not host.leads(range_id)
            or not self.needs_reconciling(range_id, sm)
        ):
            return
        self._reconciling.add(range_id)
        spawn(self._reconcile, range_id)

    async def _reconcile(self, range_id: int) -> None:
        host = self.host
        try:
            while host.leads(range_id):
                sm = host.ranges.get(range_id)
                if sm is None or sm.descriptor is None:
                    return
                pause = await self._step(range_id, sm, sm.descriptor)
                if pause is None:
                    return
                await trio.sleep(pause)
        except (*_RETRYABLE, ValueError) as exc:
            _log.debug("range %d: reconciling stopped: %s", range_id, exc)
        finally:
            self._reconciling.discard(range_id)

    async def _step(
        self, range_id: int, sm: RangeStateMachine, desc: RangeDescriptor
    ) -> float | None:
        """Take the next step towards a settled, recorded replica set.

        Returns the pause before the next step, or None when there is nothing
        more to do here now (settled, or waiting on a later pass).
        """
        host = self.host
        node = host.node
        version = sm.replicas_version
        if not self._is_recorded(range_id, desc, version):
            # The directory lists every replica before any of them is added.
            return 0 if await self.record(range_id, desc.replicas, version) else None
        current = members(node.membership(range_id))
        if current and host.node_id not in current:
            # This leader applied its own removal (it won an election before the
            # removal applied). It stays leader, as in etcd, but cannot propose:
            # only a member can settle the range.
            await self._hand_over(range_id, current)
            return None
        move = sm.move
        if move is None:
            if not current or current == set(desc.replicas):
                return None
        elif move.target not in current:
            await node.change_membership(range_id, ConfChange(ConfChangeType.ADD_NODE, move.target))
            host.counters.move_steps += 1
            return 0
        elif move.source in current:
            if move.source == host.node_id:
                await self._hand_over(range_id, current - {move.source})
                return None
            if not self._caught_up(range_id, version, move.target):
                return host.settings.maintenance_interval / 5
            change = ConfChange(ConfChangeType.REMOVE_NODE, move.source)
            await node.change_membership(range_id, change)
            host.counters.move_steps += 1
            return 0
        replicas = tuple(sorted(current))
        outcome = await node.propose(range_id, pack(SettleReplicas(replicas, version)))
        if isinstance(outcome, Value):
            self._catch_up.pop(range_id, None)
            host.counters.replicas_settled += 1
            return 0
        _log.debug("range %d: settling %s refused: %r", range_id, replicas, outcome)
        return None

    def _caught_up(self, range_id: int, version: int, target: int) -> bool:
        """Whether ``target`` holds the log up to where it was when it joined (seen here)."""
        node = self.host.node
        mark = self._catch_up.get(range_id)
        if mark is None or mark[0] != version:
            mark = self._catch_up[range_id] = (version, node.applied_index(range_id))
        progress = node.status(range_id).progress.get(target)
        return (
            progress is not None
            and progress.state == ProgressState.REPLICATE
            and progress.match >= mark[1]
        )

    async def _hand_over(self, range_id: int, others: set[int]) -> None:
        """Give leadership to the most caught-up of ``others`` (this node is leaving)."""
        if not others:
            return
        progress = self.host.node.status(range_id).progress
        target = max(sorted(others), key=lambda n: progress[n].match if n in progress else -1)
        await self.host.node.transfer_leadership(range_id, target)
        self.host.counters.leaders_handed_over += 1

    async def start_move(self, range_id: int, source: int, target: int, spawn: Spawn) -> object:
        """Record a move in the range and in the directory, then carry it out in the background."""
        host = self.host
        outcome = await host.node.propose(range_id, pack(StartMove(source, target)))
        if not isinstance(outcome, Value):
            return outcome
        sm = host.ranges.get(range_id)
        if sm is None or sm.descriptor is None:
            return NotHosted(range_id)
        host.counters.moves_started += 1
        # Only once the directory lists the arriving node may it host the range:
        # until then replica GC would remove its replica.
        if not await self.record(range_id, sm.descriptor.replicas, sm.replicas_version):
            return Unavailable("the directory did not record the move yet")
        self.reconcile_soon(range_id, spawn)
        return Ok()

    # ---------------------------------------------------------- every node

    def founders(self, range_id: int) -> tuple[int, ...]:
        """The range's founding replicas if this node is one of them, else ``()``."""
        view = self.view()
        placement = None if view is None else view.placements.get(range_id)
        if placement is None or self.host.node_id not in placement.founders:
            return ()
        return placement.founders

    def maintain(self, spawn: Spawn) -> None:
        """One pass: settle ranges led here, join ranges listed here, collect strays."""
        host = self.host
        for range_id in list(host.ranges):
            self.reconcile_soon(range_id, spawn)
        self._passes_to_read -= 1
        if (
            self._passes_to_read <= 0
            and self.peers is not None
            and not self._refreshing
            and not self._hosts_directory()
        ):
            self._passes_to_read = host.settings.directory_read_passes
            self._refreshing = True
            spawn(self._refresh)
        view = self.view()
        if view is None:
            return
        node_id = host.node_id
        pending = host.pending_children()
        missing = {
            rid
            for rid, desc in view.ranges.items()
            if node_id in desc.replicas and rid not in host.ranges and rid not in pending
        }
        # Act only on what two passes in a row saw: a split being applied right
        # now creates its range through the normal path, and a view can be stale.
        for rid in sorted(missing & self._missing):
            spawn(host.join_range, rid)
        self._missing = missing - self._missing
        strays = {rid for rid in host.ranges if rid not in pending and view.unlists(rid, node_id)}
        for rid in sorted(strays & self._strays):
            if rid not in self._collecting:
                spawn(self.collect, rid)
        self._strays = strays - self._strays

    async def collect(self, range_id: int) -> object:
        """Remove this node's replica of the range if the directory confirms it is not listed.

        Returns :class:`Ok` once the replica is gone (or was never hosted),
        :class:`Refused` while the directory lists this node (or does not know
        the range), :class:`Unavailable` when the directory cannot be read.
        """
        host = self.host
        node = host.node
        if range_id == DIRECTORY_ID:
            return Refused("the directory's replicas are not collected")
        if not self._hosts(range_id):
            host.forget_range(range_id)
            return Ok()
        self._collecting.add(range_id)
        try:
            view = await self.read_directory()
            if view is None:
                return Unavailable("the directory cannot be read now")
            if not view.unlists(range_id, host.node_id):
                return Refused(f"the directory lists node {host.node_id} for range {range_id}")
            try:
                await node.remove_group(range_id)
            except MultiraftError as exc:
                _log.debug("range %d: removal failed: %s", range_id, exc)
            host.forget_range(range_id)
            self._recorded.pop(range_id, None)
            host.counters.replicas_collected += 1
            return Ok()
        finally:
            self._collecting.discard(range_id)
