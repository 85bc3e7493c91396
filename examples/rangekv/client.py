"""The store's client: routes each key to its range's leader through a cached directory.

The client keeps a :class:`RangeCache` (a ``SortedDict`` from range start to
descriptor) and the last leader it saw per range. It sends a request to the
cached leader (or a replica) of the cached range, and repairs its cache from
the answer: ``NotLeader`` names the leader to try, ``WrongRange`` carries the
range's current bounds (and the range it last split off), ``NotHosted`` drops
the entry. Whatever it cannot repair that way it asks the directory, through a
linearizable read on any node.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Protocol

import trio
from sortedcontainers import SortedDict

from examples.rangekv.commands import (
    CasOutcome,
    CompareAndSet,
    Delete,
    NotReady,
    Put,
    Refused,
    ScanResult,
    SplitOutcome,
    Value,
    WrongRange,
)
from examples.rangekv.descriptor import RangeDescriptor, range_at
from examples.rangekv.protocol import (
    DescriptorReply,
    DirectoryCommandRequest,
    DropReplicaRequest,
    GetRequest,
    LookupRequest,
    MoveReplicaRequest,
    NotHosted,
    NotLeader,
    Ok,
    PrepareReplicaRequest,
    RangesReply,
    RangesRequest,
    ScanRequest,
    SplitRequest,
    Unavailable,
    WriteRequest,
)
from examples.rangekv.wire import pack

__all__ = [
    "AmbiguousWriteError",
    "HostLink",
    "LinkError",
    "RangeCache",
    "RangeClient",
    "RangeKVError",
    "RangeUnavailableError",
]


#: Redirects (NotLeader with a hint, WrongRange) followed without pausing in a row.
_FREE_REDIRECTS = 3


class LinkError(Exception):
    """A node could not be reached (stopped, or its connection broke).

    ``ambiguous`` when the request may have reached the node before the link
    failed (a write may then still apply).
    """

    def __init__(self, node_id: int, reason: str = "unreachable", ambiguous: bool = False) -> None:
        super().__init__(f"node {node_id}: {reason}")
        self.node_id = node_id
        self.ambiguous = ambiguous


class HostLink(Protocol):
    """How a client reaches the hosts: in one process or over RPC."""

    @property
    def node_ids(self) -> Sequence[int]:
        """Every node the client may ask."""
        ...

    async def call(self, node_id: int, request: object) -> object:
        """Send ``request`` to ``node_id``'s host; its reply, or :class:`LinkError`."""
        ...


class RangeKVError(Exception):
    """Base class of the client's errors."""


class RangeUnavailableError(RangeKVError):
    """The request did not succeed before the client's deadline."""


class AmbiguousWriteError(RangeKVError):
    """A compare-and-set timed out: it may or may not have been applied."""


class RangeCache:
    """Descriptors known to the client, by start key; stale ones are replaced on contact."""

    __slots__ = ("_by_start", "leaders")

    def __init__(self) -> None:
        self._by_start: SortedDict = SortedDict()
        #: The last leader seen per range id.
        self.leaders: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._by_start)

    def find(self, key: bytes) -> RangeDescriptor | None:
        """The cached range holding ``key``, or None."""
        desc = range_at(self._by_start, key)
        return desc if desc is not None and desc.contains(key) else None

    def _overlapping(self, desc: RangeDescriptor) -> list[RangeDescriptor]:
        by_start = self._by_start
        i = max(by_start.bisect_right(desc.start) - 1, 0)
        out = []
        for start in by_start.islice(i):
            if desc.end is not None and start >= desc.end:
                break
            other: RangeDescriptor = by_start[start]
            if other.overlaps(desc.start, desc.end):
                out.append(other)
        return out

    def update(self, desc: RangeDescriptor) -> None:
        """Cache ``desc``, replacing what overlaps it, unless we know a newer form of it."""
        overlapping = self._overlapping(desc)
        for other in overlapping:
            if other.range_id == desc.range_id and other.generation > desc.generation:
                return
        for other in overlapping:
            del self._by_start[other.start]
        self._by_start[desc.start] = desc

    def evict(self, range_id: int) -> None:
        """Forget range ``range_id``."""
        for start, desc in list(self._by_start.items()):
            if desc.range_id == range_id:
                del self._by_start[start]
        self.leaders.pop(range_id, None)


class RangeClient:
    """Put, get, delete, compare-and-set and scan over every range of the store.

    Gets and scans are linearizable per range (a read barrier on the range's
    leader). A scan over several ranges reads them one after the other, so it is
    not one atomic snapshot. Requests are retried until ``timeout`` seconds.
    """

    def __init__(
        self, link: HostLink, *, timeout: float = 30.0, retry_delay: float = 0.005
    ) -> None:
        self.link = link
        self.timeout = timeout
        self.retry_delay = retry_delay
        self.cache = RangeCache()
        #: Requests answered with a redirect or a retry (cache misses, leader changes).
        self.redirects = 0
        self._rotation = 0

    # --------------------------------------------------------------- the API

    async def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``.

        Raises :class:`AmbiguousWriteError` if the outcome could not be learned:
        the put may still apply. It is not resent blindly, as that could apply
        it a second time after another client's later write to ``key`` (the
        key would go back to this value, which no linearizable store allows);
        a caller that alone writes ``key`` may resend it.
        """
        await self._write(key, pack(Put(key, value)), idempotent=False)

    async def delete(self, key: bytes) -> None:
        """Remove ``key`` (nothing happens when it is absent).

        Raises :class:`AmbiguousWriteError` if the outcome could not be learned
        (see :meth:`put`).
        """
        await self._write(key, pack(Delete(key)), idempotent=False)

    async def compare_and_set(
        self, key: bytes, expected: bytes | None, new: bytes | None
    ) -> CasOutcome:
        """Set ``key`` to ``new`` if it holds ``expected`` (None: absent; ``new`` None deletes).

        Raises :class:`AmbiguousWriteError` if the outcome could not be learned.
        """
        outcome = await self._write(key, pack(CompareAndSet(key, expected, new)), idempotent=False)
        assert isinstance(outcome, CasOutcome)
        return outcome

    async def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` (None: absent), linearizable."""
        reply = await self._on_range(key, lambda d: GetRequest(d.range_id, key), True)
        assert isinstance(reply, Value)
        return reply.value

    async def scan(
        self, start: bytes = b"", end: bytes | None = None, limit: int = 1_000_000
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` items with ``start <= key < end`` (``end`` None: no bound), in order."""
        out: list[tuple[bytes, bytes]] = []
        cursor = start
        while len(out) < limit and (end is None or cursor < end):
            make = functools.partial(_scan_request, start=cursor, end=end, limit=limit - len(out))
            page = await self._on_range(cursor, make, True)
            assert isinstance(page, ScanResult)
            out.extend(page.items)
            if page.range_end is None:
                break
            cursor = page.range_end
        return out

    async def split(self, key: bytes, at: bytes | None = None) -> object:
        """Ask the range holding ``key`` to split at ``at`` (None: its middle key).

        Returns :class:`SplitOutcome` or :class:`~examples.rangekv.commands.Refused`.
        """
        reply = await self._on_range(key, lambda d: SplitRequest(d.range_id, at), False)
        if isinstance(reply, SplitOutcome):
            self.cache.update(reply.left)
            self.cache.update(reply.right)
        return reply

    async def ranges(self) -> list[RangeDescriptor]:
        """Every range in the directory, in key order (and refresh the cache with them)."""
        return list((await self.directory()).descriptors)

    async def directory(self, *, consistent: bool = True) -> RangesReply:
        """The whole directory: every range and its placement (cached too).

        Linearizable, unless ``consistent`` is False: then any node's directory
        replica answers as it applied it so far, without a read barrier.
        """
        reply = await self._any_node(RangesRequest(consistent))
        assert isinstance(reply, RangesReply)
        for desc in reply.descriptors:
            self.cache.update(desc)
        return reply

    async def directory_command(self, command: bytes) -> object:
        """The directory's outcome of a packed host command (see ``DirectoryCommandRequest``).

        For a host without a directory replica. Retried on other nodes until one
        answers: ``RecordSplit`` and ``UpdateReplicas`` are idempotent, and an
        ``AllocateRangeIds`` applied twice only leaves the first block unused.
        """
        return await self._any_node(DirectoryCommandRequest(command))

    async def move_replica(self, range_id: int, from_node: int, to_node: int) -> RangeDescriptor:
        """Move range ``range_id``'s replica from ``from_node`` to ``to_node``.

        The range's leader records the move (splits of the range are refused
        meanwhile) and carries it out: ``to_node`` joins empty and catches up
        (by snapshot once the log is compacted), leadership leaves ``from_node``,
        ``from_node`` leaves the group and drops its replica, and the membership
        the move ended with is recorded in the range and in the directory. A move
        interrupted anywhere (a crash, a partition, this client giving up) is
        finished by whichever node leads the range next. Returns the range's
        descriptor once the directory records the move as done; raises
        :class:`RangeUnavailableError` if that takes longer than the timeout
        (the move still completes later).
        """
        desc = next((d for d in await self.ranges() if d.range_id == range_id), None)
        if desc is None:
            raise RangeKVError(f"range {range_id} is not in the directory")
        if from_node not in desc.replicas or to_node in desc.replicas:
            raise RangeKVError(f"cannot move {desc.describe()} from {from_node} to {to_node}")
        done = tuple(sorted({*desc.replicas, to_node} - {from_node}))
        deadline = trio.current_time() + self.timeout
        await self._on_leader(desc, MoveReplicaRequest(range_id, from_node, to_node))
        # The directory lists to_node now, so it would join by itself; asking it
        # saves a maintenance pass (and is all a node without a directory view has).
        await self._send(to_node, PrepareReplicaRequest(range_id))
        delay = self.retry_delay
        while True:
            after = next((d for d in await self.ranges() if d.range_id == range_id), None)
            if after is not None and after.replicas == done:
                break
            delay = await self._pause(delay)
            self._deadline_passed(deadline, f"moving {desc.describe()} to {to_node}")
        await self._send(from_node, DropReplicaRequest(range_id))
        self.cache.evict(range_id)
        return after

    # ----------------------------------------------------------------- routing

    async def _write(self, key: bytes, command: bytes, *, idempotent: bool) -> object:
        return await self._on_range(key, lambda d: WriteRequest(d.range_id, command), idempotent)

    def _deadline_passed(self, deadline: float, what: str) -> None:
        if trio.current_time() > deadline:
            raise RangeUnavailableError(f"{what} did not succeed within {self.timeout}s")

    async def _pause(self, delay: float) -> float:
        await trio.sleep(delay)
        return min(delay * 2, 0.1)

    def _target(self, desc: RangeDescriptor) -> int:
        leader = self.cache.leaders.get(desc.range_id)
        if leader is not None and leader in desc.replicas:
            return leader
        replicas = desc.replicas or tuple(self.link.node_ids)
        self._rotation += 1
        return replicas[self._rotation % len(replicas)]

    async def _send(self, node_id: int, request: object) -> object:
        try:
            return await self.link.call(node_id, request)
        except LinkError as exc:
            return Unavailable(str(exc), ambiguous=exc.ambiguous)

    async def _on_range(
        self, key: bytes, make: Callable[[RangeDescriptor], object], idempotent: bool
    ) -> object:
        """Send ``make(range)`` to the leader of the range holding ``key`` until it answers."""
        deadline = trio.current_time() + self.timeout
        delay = self.retry_delay
        cache = self.cache
        # Redirects are followed at once, but a run of them (views that disagree
        # while a leader changes or the directory catches up) backs off too.
        in_a_row = 0
        while True:
            desc = cache.find(key) or await self._lookup(key, deadline)
            node_id = self._target(desc)
            reply = await self._send(node_id, make(desc))
            match reply:
                case NotLeader(leader=leader):
                    if leader and leader != node_id and leader in desc.replicas:
                        cache.leaders[desc.range_id] = leader
                        in_a_row += 1
                    else:
                        cache.leaders.pop(desc.range_id, None)
                        delay = await self._pause(delay)
                case WrongRange(descriptor=current, right=right):
                    cache.update(current)
                    if right is not None:
                        cache.update(right)
                    if cache.find(key) == desc:
                        cache.evict(desc.range_id)
                    in_a_row += 1
                case NotHosted():
                    cache.evict(desc.range_id)
                    delay = await self._pause(delay)
                case NotReady():
                    delay = await self._pause(delay)
                case Unavailable(ambiguous=ambiguous, reason=reason):
                    if ambiguous and not idempotent:
                        raise AmbiguousWriteError(reason)
                    cache.leaders.pop(desc.range_id, None)
                    delay = await self._pause(delay)
                case _:
                    cache.leaders[desc.range_id] = node_id
                    return reply
            self.redirects += 1
            if in_a_row > _FREE_REDIRECTS:
                delay = await self._pause(delay)
            self._deadline_passed(deadline, f"request for key {key!r}")

    async def _lookup(self, key: bytes, deadline: float) -> RangeDescriptor:
        """The directory's range for ``key`` (cached as well)."""
        delay = self.retry_delay
        while True:
            reply = await self._any_node(LookupRequest(key))
            if isinstance(reply, DescriptorReply) and reply.descriptor is not None:
                self.cache.update(reply.descriptor)
                return reply.descriptor
            delay = await self._pause(delay)
            self._deadline_passed(deadline, f"directory lookup of {key!r}")

    async def _any_node(self, request: object) -> object:
        """Send a directory request to the nodes in turn until one answers it."""
        deadline = trio.current_time() + self.timeout
        delay = self.retry_delay
        nodes = self.link.node_ids
        while True:
            for _ in range(len(nodes)):
                self._rotation += 1
                reply = await self._send(nodes[self._rotation % len(nodes)], request)
                if not isinstance(reply, Unavailable | NotHosted | NotLeader):
                    return reply
            delay = await self._pause(delay)
            self._deadline_passed(deadline, type(request).__name__)

    async def _on_leader(self, desc: RangeDescriptor, request: object) -> int:
        """Send an admin request to the range's leader; the node that carried it out.

        Raises :class:`RangeKVError` when the leader refuses it.
        """
        deadline = trio.current_time() + self.timeout
        delay = self.retry_delay
        in_a_row = 0
        while True:
            node_id = self._target(desc)
            reply = await self._send(node_id, request)
            in_a_row += 1
            if (
                isinstance(reply, NotLeader)
                and reply.leader != node_id
                and reply.leader in desc.replicas
                and in_a_row <= _FREE_REDIRECTS
            ):
                self.cache.leaders[desc.range_id] = reply.leader
                continue
            in_a_row = 0
            if isinstance(reply, Ok | Value):
                return node_id
            if isinstance(reply, Refused):
                raise RangeKVError(f"{type(request).__name__} refused: {reply.reason}")
            self.cache.leaders.pop(desc.range_id, None)
            delay = await self._pause(delay)
            self._deadline_passed(deadline, f"{type(request).__name__} ({reply!r})")


def _scan_request(desc: RangeDescriptor, *, start: bytes, end: bytes | None, limit: int) -> object:
    return ScanRequest(desc.range_id, start, end, limit)
