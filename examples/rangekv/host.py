"""One node of the range store: the state machines it hosts and the work around them.

A :class:`RangeHost` wraps a multiraft :class:`~multiraft.Node`. It hosts a
replica of the directory (group 1) and of every range placed on the node, and
does what state machines cannot do themselves because ``apply`` is synchronous:

* **Splits.** When a range it leads grows past the threshold (or on request),
  it reserves a range id from the directory, proposes :class:`Split` through the
  range's own log and, once applied, records both halves in the directory. The
  split takes effect when the range applies it; the range's state keeps what
  the record needs, so a record that did not happen (a crash, a partition, a
  change of leader) is made by whichever replica leads the range next. A host
  without a directory replica reaches the directory through its peers.
* **Hosting new ranges.** Applying a split (on every replica) reports the new
  range to the host, which creates its group in apply order, one creation at a
  time; the replica whose node proposed the split campaigns at once, so the new
  range elects a leader without waiting for an election timeout. A replica
  that applies the split late finds the new group's early messages held by the
  node (``UnknownGroupPolicy.BUFFER``) and replays them, so it follows the
  leader already elected instead of starting an election of its own.
* **Initializing.** A new group's leader proposes its :class:`InitRange` (the
  moved keys) as the group's first command, then tells the parent range to drop
  its copy (:class:`ForgetChild`).
* **Repairs.** Periodically: retry anything above that failed (a split not yet
  recorded, an initialization, a forgotten child).
* **Placement** (:mod:`examples.rangekv.placement`): carry out replica moves of
  the ranges led here and settle any disagreement between a range's
  membership, its descriptor and the directory; host the ranges the directory
  places here (a replica that learned of a split by snapshot, a node a range
  moved to); remove replicas the directory no longer places here.
* **Serving.** :meth:`handle` answers the requests of :mod:`examples.rangekv.protocol`
  (see :mod:`examples.rangekv.service`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from os import PathLike

import attrs
import trio

from examples.rangekv.client import HostLink, RangeKVError
from examples.rangekv.commands import (
    AllocateRangeIds,
    ForgetChild,
    IdBlock,
    InitDirectory,
    InitRange,
    NotReady,
    RecordSplit,
    Refused,
    Split,
    SplitOutcome,
    Value,
)
from examples.rangekv.descriptor import DIRECTORY_ID, FIRST_RANGE_ID, RangeDescriptor
from examples.rangekv.directory import DirectoryStateMachine
from examples.rangekv.placement import ReplicaKeeper
from examples.rangekv.protocol import (
    DumpReply,
    NotHosted,
    NotLeader,
    RangeDump,
)
from examples.rangekv.range_state import RangeStateMachine
from examples.rangekv.service import answer
from examples.rangekv.wire import pack
from multiraft import (
    GroupNotFoundError,
    GroupRemovedError,
    LeaderChanged,
    MultiraftError,
    Node,
    NodeClosedError,
    NodeConfig,
    ProposalDroppedError,
    StateMachine,
    Transport,
    UnknownGroupPolicy,
    open_node,
)
from multiraft.ports import LogEngine

__all__ = [
    "DIRECTORY_ID",
    "FIRST_RANGE_ID",
    "RangeHost",
    "RangeSettings",
    "open_range_host",
]

_log = logging.getLogger("examples.rangekv.host")

#: Errors after which a host's own background request is simply tried again later.
_RETRYABLE = (MultiraftError, ProposalDroppedError, RangeKVError)


def _check_non_negative(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an integer >= 0, got {value!r}")


def _check_positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RangeSettings:
    """How a host splits ranges and how often it repairs.

    * ``split_keys`` / ``split_bytes``: split a range holding more keys / more
      key and value bytes than this (0 disables that trigger; both 0: split only
      on request).
    * ``max_concurrent_splits``: splits this host drives at once.
    * ``id_block``: range ids reserved from the directory per request.
    * ``maintenance_interval``: seconds between repair passes.
    * ``read_timeout``: seconds a read barrier may take before the host answers
      ``Unavailable`` (the client retries): a read accepted by a leader that
      then stepped down is otherwise only failed by the node's proposal timeout.
    * ``directory_read_passes``: a node that does not host the directory reads
      it through its peers once every this many maintenance passes (to join
      the ranges placed on it and collect the ones moved away).
    * ``balance_leaders``: once a new range is initialized, its leader hands
      leadership to replica ``replicas[range_id % len(replicas)]``, spreading
      leaders (and their work) over the nodes instead of leaving every range
      split off a range led by node ``n`` on node ``n``.
    """

    split_keys: int = attrs.field(default=0, validator=_check_non_negative)
    split_bytes: int = attrs.field(default=0, validator=_check_non_negative)
    max_concurrent_splits: int = attrs.field(default=32, validator=_check_positive)
    id_block: int = attrs.field(default=32, validator=_check_positive)
    maintenance_interval: float = 1.0
    read_timeout: float = 1.0
    directory_read_passes: int = attrs.field(default=4, validator=_check_positive)
    balance_leaders: bool = False

    def __attrs_post_init__(self) -> None:
        for name in ("maintenance_interval", "read_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


@attrs.define(slots=True)
class HostCounters:
    """What a host did (monotonic)."""

    splits_proposed: int = 0
    splits_applied_here: int = 0
    splits_refused: int = 0
    splits_recorded: int = 0
    ranges_created: int = 0
    ranges_joined: int = 0
    ranges_initialized: int = 0
    children_forgotten: int = 0
    leaders_handed_over: int = 0
    moves_started: int = 0
    move_steps: int = 0
    replicas_settled: int = 0
    replicas_recorded: int = 0
    replicas_collected: int = 0


class RangeHost:
    """A node's share of the range store; see the module documentation.

    Create it with :func:`open_range_host`, which opens the node and runs the
    host's background tasks for the duration of the block.
    """

    def __init__(self, node_id: int, settings: RangeSettings | None = None) -> None:
        self.node_id = node_id
        self.settings = settings or RangeSettings()
        self.directory = DirectoryStateMachine()
        #: Range state machines of the groups hosted here, by range id.
        self.ranges: dict[int, RangeStateMachine] = {}
        self.counters = HostCounters()
        self._node: Node | None = None
        self._nursery: trio.Nursery | None = None
        #: Group id -> (packed init command, parent range id) for groups not yet initialized.
        self._inits: dict[int, tuple[bytes, int]] = {}
        self._children: deque[tuple[InitRange, bool]] = deque()
        #: Ranges queued in ``_children`` or being created from it.
        self._children_pending: set[int] = set()
        self._children_added = trio.Event()
        self._grown: dict[int, None] = {}
        self._grown_added = trio.Event()
        self._busy: set[int] = set()
        self._initializing: set[int] = set()
        self._forgetting: set[int] = set()
        self._spare_ids: list[int] = []
        self._id_lock = trio.Lock()
        #: Moves, joins and replica GC (see :mod:`examples.rangekv.placement`).
        self.keeper = ReplicaKeeper(self)

    # ------------------------------------------------------------ wiring

    @property
    def node(self) -> Node:
        """The multiraft node this host runs on."""
        if self._node is None:
            raise RuntimeError("the host is not running (use open_range_host)")
        return self._node

    def node_config(self, config: NodeConfig) -> NodeConfig:
        """``config`` with what the store needs: its state machine factory, BUFFER policy."""
        return attrs.evolve(
            config,
            state_machine_factory=self.recover_state_machine,
            unknown_group_policy=UnknownGroupPolicy.BUFFER,
        )

    def recover_state_machine(self, group_id: int) -> StateMachine:
        """The state machine for a group found in the log engine after a restart."""
        if group_id == DIRECTORY_ID:
            return self.directory
        sm = self.ranges[group_id] = RangeStateMachine(group_id, self)
        return sm

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._host_children)
            nursery.start_soon(self._watch_leadership)
            nursery.start_soon(self._run_splits)
            nursery.start_soon(self._maintain)
            task_status.started()

    # ------------------------------------------------- state machine observer

    def range_split(self, parent: RangeStateMachine, child: InitRange, campaigner: int) -> None:
        """Queue the creation of the range a split made (called from ``apply``)."""
        self.counters.splits_applied_here += 1
        self._queue_child(child, campaigner == self.node_id)

    def range_restored(self, sm: RangeStateMachine) -> None:
        """Queue the creation of children a snapshot says are still being initialized."""
        for child in sm.children.values():
            self._queue_child(child, False)

    def _queue_child(self, child: InitRange, campaign: bool) -> None:
        self._children.append((child, campaign))
        self._children_pending.add(child.descriptor.range_id)
        self._children_added.set()

    def range_written(self, sm: RangeStateMachine) -> None:
        """Note a range that may need splitting (only acted on where it is led)."""
        if self._over_threshold(sm):
            self._consider_split(sm.range_id)

    def _over_threshold(self, sm: RangeStateMachine) -> bool:
        s = self.settings
        return (s.split_keys > 0 and len(sm.data) > s.split_keys) or (
            s.split_bytes > 0 and sm.data_bytes > s.split_bytes
        )

    def leads(self, group_id: int) -> bool:
        """Whether this node leads group ``group_id`` now."""
        node = self._node
        if node is None:
            return False
        try:
            return node.leader_of(group_id) == self.node_id
        except (GroupNotFoundError, GroupRemovedError, NodeClosedError):
            return False

    def _consider_split(self, range_id: int) -> None:
        if range_id in self._busy or range_id in self._grown or not self.leads(range_id):
            return
        self._grown[range_id] = None
        self._grown_added.set()

    # ------------------------------------------------------ hosting ranges

    async def _host_children(self) -> None:
        while True:
            await self._children_added.wait()
            self._children_added = trio.Event()
            while self._children:
                child, campaign = self._children.popleft()
                try:
                    await self.create_split_replica(child, campaign)
                finally:
                    self._children_pending.discard(child.descriptor.range_id)

    async def create_split_replica(self, child: InitRange, campaign: bool) -> None:
        """Host this node's replica of a range a split created (in apply order).

        ``campaign``: this node proposed the split, so it starts the election now.
        """
        desc = child.descriptor
        rid = desc.range_id
        if self.node_id not in desc.replicas:
            return
        sm = self.ranges.get(rid)
        if sm is not None and sm.ready:
            return
        self._inits.setdefault(rid, (pack(child), child.parent_id))
        if sm is None:
            sm = self.ranges[rid] = RangeStateMachine(rid, self)
            try:
                await self.node.create_group(
                    rid, desc.replicas, state_machine=sm, campaign=campaign
                )
            except GroupRemovedError:
                self.forget_range(rid)
                return
            self.counters.ranges_created += 1
        self._maybe_initialize(rid)

    async def join_range(self, rid: int) -> bool:
        """Host a replica of range ``rid``; whether this node hosts it now.

        A founding replica of the range (see
        :meth:`~examples.rangekv.placement.ReplicaKeeper.founders`) is created
        with the range's bootstrap membership, like the split that made it; any
        other node's replica starts empty and learns everything from its group.
        (An empty replica of a founder would replay the bootstrap one member at a
        time and could elect itself alone.) False if the node removed its replica
        of the range before (its tombstone).
        """
        if rid in self.ranges:
            return True
        founders = self.keeper.founders(rid)
        sm = self.ranges[rid] = RangeStateMachine(rid, self)
        try:
            await self.node.create_group(rid, founders, state_machine=sm, join=not founders)
        except GroupRemovedError:
            self.forget_range(rid)
            return False
        self.counters.ranges_joined += 1
        return True

    def pending_children(self) -> set[int]:
        """Ranges a split made that this node is about to host (queued or being created)."""
        return self._children_pending

    async def start_move(self, range_id: int, source: int, target: int) -> object:
        """Move the range's replica from ``source`` to ``target`` (this node leads the range).

        Returns :class:`~examples.rangekv.protocol.Ok` once the move is recorded in
        the range and in the directory; the move then completes in the background.
        """
        assert self._nursery is not None
        return await self.keeper.start_move(range_id, source, target, self._nursery.start_soon)

    async def collect_replica(self, range_id: int) -> object:
        """Remove this node's replica of the range if the directory no longer lists the node."""
        return await self.keeper.collect(range_id)

    def forget_range(self, range_id: int) -> None:
        """Stop tracking range ``range_id`` (its group is no longer hosted here)."""
        self.ranges.pop(range_id, None)
        self._inits.pop(range_id, None)

    def _ready(self, group_id: int) -> bool:
        if group_id == DIRECTORY_ID:
            return self.directory.ready
        sm = self.ranges.get(group_id)
        return sm is not None and sm.ready

    def _maybe_initialize(self, group_id: int) -> None:
        if (
            group_id in self._inits
            and group_id not in self._initializing
            and self.leads(group_id)
            and self._nursery is not None
        ):
            if self._ready(group_id):
                self._inits.pop(group_id, None)
                return
            self._initializing.add(group_id)
            self._nursery.start_soon(self._initialize, group_id)

    async def _initialize(self, group_id: int) -> None:
        init = self._inits.get(group_id)
        if init is None:
            self._initializing.discard(group_id)
            return
        command, parent_id = init
        try:
            await self.node.propose(group_id, command)
        except _RETRYABLE as exc:
            _log.debug("group %d: initialization not done yet: %s", group_id, exc)
            return
        finally:
            self._initializing.discard(group_id)
        if not self._ready(group_id):
            return
        self._inits.pop(group_id, None)
        self.counters.ranges_initialized += 1
        if parent_id:
            await self._forget_child(parent_id, group_id)
        sm = self.ranges.get(group_id)
        if sm is not None and not await self._hand_over_leadership(sm):
            self.range_written(sm)  # it may already need a split

    async def _hand_over_leadership(self, sm: RangeStateMachine) -> bool:
        """With ``balance_leaders``, move a new range's leadership to its designated node."""
        desc = sm.descriptor
        if not self.settings.balance_leaders or desc is None or not desc.replicas:
            return False
        target = desc.replicas[sm.range_id % len(desc.replicas)]
        if target == self.node_id:
            return False
        try:
            await self.node.transfer_leadership(sm.range_id, target)
        except (*_RETRYABLE, ValueError) as exc:
            _log.debug("range %d: leadership stays here: %s", sm.range_id, exc)
            return False
        self.counters.leaders_handed_over += 1
        return True

    async def _forget_child(self, parent_id: int, child_id: int) -> None:
        if parent_id not in self.ranges or child_id in self._forgetting:
            return
        self._forgetting.add(child_id)
        try:
            await self.node.propose(parent_id, pack(ForgetChild(child_id)))
            self.counters.children_forgotten += 1
        except _RETRYABLE as exc:
            _log.debug("range %d: forgetting child %d failed: %s", parent_id, child_id, exc)
        finally:
            self._forgetting.discard(child_id)

    async def _watch_leadership(self) -> None:
        async with self.node.events() as events:
            async for event in events:
                if isinstance(event, LeaderChanged) and event.leader == self.node_id:
                    gid = event.group_id
                    self._maybe_initialize(gid)
                    if self._nursery is not None:
                        self.keeper.reconcile_soon(gid, self._nursery.start_soon)
                    sm = self.ranges.get(gid)
                    if sm is not None and self._over_threshold(sm):
                        self._consider_split(gid)

    # ---------------------------------------------------------------- splits

    async def _run_splits(self) -> None:
        limiter = trio.CapacityLimiter(self.settings.max_concurrent_splits)
        while True:
            await self._grown_added.wait()
            self._grown_added = trio.Event()
            grown = self._grown
            self._grown = {}
            for rid in grown:
                if rid not in self._busy and self._nursery is not None:
                    self._busy.add(rid)
                    self._nursery.start_soon(self._split_when_free, rid, limiter)

    async def _split_when_free(self, range_id: int, limiter: trio.CapacityLimiter) -> None:
        try:
            async with limiter:
                outcome = await self._split(range_id, None)
        finally:
            self._busy.discard(range_id)
        if isinstance(outcome, SplitOutcome):
            sm = self.ranges.get(range_id)
            if sm is not None and self._over_threshold(sm):
                self._consider_split(range_id)

    async def split_range(self, range_id: int, key: bytes | None = None) -> object:
        """Split a range this node leads at ``key`` (None: its middle key).

        Returns :class:`SplitOutcome`, :class:`Refused` with the reason, or the
        redirections ``NotHosted``/``NotLeader``/``NotReady``.
        """
        if range_id in self._busy:
            return Refused(f"range {range_id} is already splitting")
        self._busy.add(range_id)
        try:
            return await self._split(range_id, key)
        finally:
            self._busy.discard(range_id)

    async def _split(self, range_id: int, key: bytes | None) -> object:
        sm = self.ranges.get(range_id)
        if sm is None:
            return NotHosted(range_id)
        if not self.leads(range_id):
            return NotLeader(range_id, self.node.leader_of(range_id) or 0)
        desc = sm.descriptor
        if desc is None:
            return NotReady(range_id)
        recorded = await self.keeper.recorded_range(range_id)
        if recorded is None or recorded.generation != desc.generation:
            # The directory must show this range's previous split first, so that
            # splits are recorded in order; record it now if it went missing.
            await self._record_previous_split(sm, recorded)
            return Refused(f"the directory does not show {desc.describe()} yet")
        split_key = sm.middle_key() if key is None else key
        if split_key is None or not (desc.start < split_key and desc.contains(split_key)):
            return Refused(f"no split key inside {desc.describe()}")
        try:
            right_id = await self._allocate_range_id()
            self.counters.splits_proposed += 1
            outcome = await self.node.propose(
                range_id, pack(Split(split_key, right_id, desc.generation, self.node_id))
            )
        except _RETRYABLE as exc:
            return Refused(f"split of range {range_id} failed: {exc}")
        if isinstance(outcome, SplitOutcome):
            await self._record(outcome.left, outcome.right)
        else:
            self.counters.splits_refused += 1
        return outcome

    async def _allocate_range_id(self) -> int:
        async with self._id_lock:
            if not self._spare_ids:
                block = await self.keeper.propose_to_directory(
                    AllocateRangeIds(self.settings.id_block)
                )
                if not isinstance(block, IdBlock):
                    raise ProposalDroppedError(f"the directory refused ids: {block!r}")
                self._spare_ids = list(range(block.first + block.count - 1, block.first - 1, -1))
            return self._spare_ids.pop()

    async def _record_previous_split(
        self, sm: RangeStateMachine, recorded: RangeDescriptor | None
    ) -> None:
        """Record the range's last split if the directory (``recorded``) is one split behind.

        The range's log holds the split (its descriptor and ``last_right``), so
        whichever replica leads the range finishes it, directory replica or not;
        the directory accepts the record once, and only in generation order.
        """
        desc = sm.descriptor
        if (
            desc is not None
            and sm.last_right is not None
            and recorded is not None
            and recorded.generation == desc.generation - 1
        ):
            await self._record(desc, sm.last_right)

    async def _repair_record(self, sm: RangeStateMachine) -> None:
        rid = sm.range_id
        if rid in self._busy:
            return
        self._busy.add(rid)
        try:
            await self._record_previous_split(sm, await self.keeper.recorded_range(rid))
        finally:
            self._busy.discard(rid)

    async def _record(self, left: RangeDescriptor, right: RangeDescriptor) -> None:
        try:
            outcome = await self.keeper.propose_to_directory(RecordSplit(left, right))
        except _RETRYABLE as exc:
            _log.debug("recording the split of %s failed: %s", left.describe(), exc)
            return
        if isinstance(outcome, Value):
            self.counters.splits_recorded += 1
        else:
            _log.warning("directory refused the split of %s: %r", left.describe(), outcome)

    # ------------------------------------------------------------ maintenance

    async def _maintain(self) -> None:
        while True:
            await trio.sleep(self.settings.maintenance_interval)
            self.maintenance_pass()

    def maintenance_pass(self) -> None:
        """Retry what failed and keep replicas where the directory places them (periodic)."""
        assert self._nursery is not None
        spawn = self._nursery.start_soon
        self._maybe_initialize(DIRECTORY_ID)
        # This node's directory replica, else the directory as last read through
        # its peers: a range led here needs its splits recorded either way.
        view = self.keeper.view()
        for rid, sm in list(self.ranges.items()):
            if not self.leads(rid):
                continue
            if not sm.ready:
                self._maybe_initialize(rid)
                continue
            if self._over_threshold(sm):
                self._consider_split(rid)
            for child_id in list(sm.children):
                if self._ready(child_id):
                    spawn(self._forget_child, rid, child_id)
            recorded = None if view is None else view.ranges.get(rid)
            desc = sm.descriptor
            if recorded is not None and desc is not None and recorded.generation < desc.generation:
                spawn(self._repair_record, sm)
        self.keeper.maintain(spawn)

    # ------------------------------------------------------------- bootstrap

    async def bootstrap(self, replicas: tuple[int, ...]) -> None:
        """Create the directory and the first range on ``replicas`` (call on each of them).

        The lowest node id campaigns; whichever node leads then proposes the
        initial state. Idempotent: groups already hosted (after a restart) are kept.
        """
        replicas = tuple(sorted(replicas))
        campaign = replicas[0] == self.node_id
        node = self.node
        hosted = set(node.group_ids())
        first = RangeDescriptor(FIRST_RANGE_ID, b"", None, 0, replicas)
        # Proposed by whichever node leads, until applied (also after a restart).
        if not self._ready(DIRECTORY_ID):
            self._inits[DIRECTORY_ID] = (pack(InitDirectory(first, FIRST_RANGE_ID + 1)), 0)
        if not self._ready(FIRST_RANGE_ID):
            self._inits[FIRST_RANGE_ID] = (pack(InitRange(first)), 0)
        if DIRECTORY_ID not in hosted:
            await node.create_group(
                DIRECTORY_ID, replicas, state_machine=self.directory, campaign=campaign
            )
        if FIRST_RANGE_ID not in hosted:
            sm = self.ranges[FIRST_RANGE_ID] = RangeStateMachine(FIRST_RANGE_ID, self)
            await node.create_group(FIRST_RANGE_ID, replicas, state_machine=sm, campaign=campaign)
        self._maybe_initialize(DIRECTORY_ID)
        self._maybe_initialize(FIRST_RANGE_ID)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until this replica applied the directory's and the first range's init."""
        with trio.fail_after(timeout):
            while not (self._ready(DIRECTORY_ID) and self._ready(FIRST_RANGE_ID)):
                await trio.sleep(0.01)

    # --------------------------------------------------------------- serving

    async def handle(self, request: object) -> object:
        """Answer one request of :mod:`examples.rangekv.protocol` (see :mod:`.service`)."""
        return await answer(self, request)

    # ------------------------------------------------------------ inspection

    def stats(self) -> dict[str, int]:
        """The node's counters plus the host's, and what it hosts and leads now."""
        node = self.node
        out = node.stats()
        out.update(attrs.asdict(self.counters))
        gids = node.group_ids()
        out["leaders"] = sum(1 for g in gids if node.leader_of(g) == self.node_id)
        out["ranges_hosted"] = len(self.ranges)
        out["ranges_ready"] = sum(1 for sm in self.ranges.values() if sm.ready)
        out["directory_ranges"] = len(self.directory)
        out["keys"] = sum(len(sm.data) for sm in self.ranges.values())
        return out

    def dump(self) -> DumpReply:
        """Every range replica hosted here, as applied locally."""
        node = self.node
        return DumpReply(
            self.node_id,
            tuple(
                RangeDump(rid, sm.descriptor, node.applied_index(rid), tuple(sm.data.items()))
                for rid, sm in sorted(self.ranges.items())
            ),
        )


@asynccontextmanager
async def open_range_host(
    config: NodeConfig,
    *,
    transport: Transport,
    data_dir: str | PathLike[str] | None = None,
    log_engine: LogEngine | None = None,
    settings: RangeSettings | None = None,
    host_factory: Callable[[int, RangeSettings | None], RangeHost] = RangeHost,
    peers: HostLink | None = None,
) -> AsyncIterator[RangeHost]:
    """Open a node configured for the range store and run its host until the block ends.

    ``config`` is adjusted by :meth:`RangeHost.node_config`. Groups found in the
    log engine are recovered; on a fresh cluster call :meth:`RangeHost.bootstrap`
    on every initial node. ``host_factory(node_id, settings)`` makes the host
    (a subclass may, for example, change how split-created ranges are hosted).
    ``peers`` reaches the other hosts: a node that does not host the directory
    reads and updates it through them (see :mod:`examples.rangekv.placement`).
    """
    host = host_factory(config.node_id, settings)
    host.keeper.peers = peers
    async with open_node(
        host.node_config(config), transport=transport, data_dir=data_dir, log_engine=log_engine
    ) as node:
        host._node = node
        async with trio.open_nursery() as nursery:
            await nursery.start(host._run)
            try:
                yield host
            finally:
                nursery.cancel_scope.cancel()
