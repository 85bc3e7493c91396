"""The range-splitting KV store of ``examples/rangekv`` under the simulator.

Each simulated node runs a :class:`~examples.rangekv.host.RangeHost` on its
simulated disk and transport, so every fault of the schedule applies and the
safety checker watches every group (the directory and every range). On top:

* **tiling**: every replica of the directory is checked after each command it
  applies (and each snapshot it restores): its ranges must tile the key space,
  no gap, no overlap;
* **clients** put, delete and linearizably get keys of a fixed pool through
  :class:`~examples.rangekv.client.RangeClient`, recording a history; ranges
  split as keys accumulate (a low ``split_keys``), so splits race the faults:
  a split applied late on a partitioned replica, a new range's leader
  campaigning before its followers know the range, a split while partitioned;
* **replica moves** (with more than three nodes): a range's replica moves to
  another node (recorded, added, removal, settled, collected) while faults go
  on; a move the client gives up on is finished by the range's leader;
* after every fault healed: the directory answers and every range accepts a
  write within the liveness bound; then every replica of every range holds the
  directory's bounds and the same keys at the same applied index, has applied
  exactly the membership the directory lists, and no other node hosts the
  range; the history is linearizable.

The example package is imported only when this workload runs.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import trio

from multiraft.config import NodeConfig
from multiraft.errors import GroupNotFoundError, GroupRemovedError
from multiraft.node import Node
from multiraft.ports import Transport
from multiraft.testing.linearizability import OpKind
from multiraft.testing.safety import SafetyChecker
from multiraft.testing.sim_cluster import SimCluster, SimNode, members
from multiraft.testing.simulator import REPLICAS, SimConfig, SimRun

if TYPE_CHECKING:
    from examples.rangekv.client import RangeClient
    from examples.rangekv.descriptor import RangeDescriptor
    from examples.rangekv.host import RangeHost, RangeSettings

__all__ = ["RangeKVRun", "SimHostLink", "range_host_opener"]

#: Average pause between two operations of one client (seconds).
CLIENT_PAUSE = 0.05
#: Average pause between two replica moves (seconds).
MOVE_PAUSE = 3.0


def checked_host_factory(
    checker: SafetyChecker,
) -> Callable[[int, RangeSettings | None], RangeHost]:
    """Makes range hosts whose directory replica checks its tiling after every change."""
    from examples.rangekv.descriptor import TilingError, check_tiling
    from examples.rangekv.directory import DirectoryStateMachine
    from examples.rangekv.host import DIRECTORY_ID, RangeHost

    class CheckedDirectory(DirectoryStateMachine):
        """A directory replica that reports any state that does not tile the key space."""

        __slots__ = ("node_id",)

        def __init__(self, node_id: int) -> None:
            super().__init__()
            self.node_id = node_id

        def apply(self, index: int, command: bytes) -> object:
            """Apply, then check the tiling."""
            outcome = super().apply(index, command)
            self._check(f"after applying index {index}")
            return outcome

        def restore(self, data: bytes) -> None:
            """Restore, then check the tiling."""
            super().restore(data)
            self._check("after restoring a snapshot")

        def _check(self, when: str) -> None:
            if not self.ready:
                return
            try:
                check_tiling(self.descriptors())
            except TilingError as exc:
                checker.violation(
                    "range tiling",
                    f"node {self.node_id}'s directory {when}: {exc}",
                    DIRECTORY_ID,
                )

    def make(node_id: int, settings: RangeSettings | None) -> RangeHost:
        host = RangeHost(node_id, settings)
        host.directory = CheckedDirectory(node_id)
        return host

    return make


def range_host_opener(
    checker: SafetyChecker, settings: RangeSettings, peers: SimHostLink | None = None
) -> Callable[[SimNode, NodeConfig, Transport], AbstractAsyncContextManager[Node]]:
    """Opens a node's incarnation as a range store host (kept in ``SimNode.host``).

    ``peers`` lets a host reach the others (to read the directory it does not host).
    """
    from examples.rangekv.host import open_range_host

    factory = checked_host_factory(checker)

    @asynccontextmanager
    async def opener(sn: SimNode, config: NodeConfig, transport: Transport) -> AsyncIterator[Node]:
        async with open_range_host(
            config,
            transport=transport,
            log_engine=sn.engine,
            settings=settings,
            host_factory=factory,
            peers=peers,
        ) as host:
            sn.host = host
            try:
                yield host.node
            finally:
                sn.host = None

    return opener


def _host(cluster: SimCluster, node_id: int) -> RangeHost | None:
    from examples.rangekv.host import RangeHost

    host = cluster.nodes[node_id].host
    return host if isinstance(host, RangeHost) else None


class SimHostLink:
    """Clients reach the hosts of the simulated nodes that are up (``HostLink``)."""

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster

    @property
    def node_ids(self) -> list[int]:
        """The nodes whose host is running."""
        return [i for i in self.cluster.node_ids if _host(self.cluster, i) is not None]

    async def call(self, node_id: int, request: object) -> object:
        """``request`` answered by ``node_id``'s host; ``LinkError`` when it is down."""
        from examples.rangekv.client import LinkError

        host = _host(self.cluster, node_id)
        if host is None:
            raise LinkError(node_id, "down")
        await trio.lowlevel.checkpoint()
        return await host.handle(request)


class RangeKVRun(SimRun):
    """One seed of the range store: clients, splits and moves under the fault schedule."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        from examples.rangekv.host import RangeSettings

        super().__init__(seed, config)
        settings = RangeSettings(
            split_keys=self.rng.choice((3, 4, 6)),
            maintenance_interval=0.5,
            read_timeout=1.0,
        )
        self.link = SimHostLink(self.cluster)
        self.cluster.opener = range_host_opener(self.checker, settings, self.link)
        # The host drops the replicas it moves away itself.
        self.cluster.collect_removed_replicas = False
        self.keys = [b"k%03d" % i for i in range(config.keys)]
        self.replicas = tuple(self.node_ids[:REPLICAS])
        self.moves = 0
        self.move_failures = 0
        self.splits = 0

    def counts(self) -> tuple[int, int, int]:
        """``(acknowledged proposals, membership changes, splits)`` of the run."""
        return 0, self.moves, self.splits

    def client(self, timeout: float) -> RangeClient:
        """A new client of the store with its own directory cache."""
        from examples.rangekv.client import RangeClient

        return RangeClient(self.link, timeout=timeout, retry_delay=0.01)

    async def run_workload(self) -> None:
        """Bootstrap the store, run clients and moves under faults, check liveness and the end."""
        cfg = self.config
        if not await self._bootstrap():
            return
        clients: list[Callable[[trio.Event], Awaitable[None]]] = [
            functools.partial(self._client, c + 1) for c in range(cfg.kv_clients)
        ]
        if cfg.membership if cfg.membership is not None else cfg.nodes > REPLICAS:
            clients.append(self._mover)
        await self.run_clients(clients)
        if not await self._check_liveness():
            return
        if not await self._check_convergence():
            return
        self.check_linearizability()

    async def _bootstrap(self) -> bool:
        for node_id in self.replicas:
            host = _host(self.cluster, node_id)
            assert host is not None
            await host.bootstrap(self.replicas)
        with trio.move_on_after(self.config.liveness_seconds):
            for node_id in self.replicas:
                host = _host(self.cluster, node_id)
                assert host is not None
                await host.wait_ready(self.config.liveness_seconds)
            return True
        self.checker.violation("liveness", "the store did not become ready after bootstrap")
        return False

    # ------------------------------------------------------------- clients

    async def _client(self, client_id: int, stop: trio.Event) -> None:
        from examples.rangekv.client import RangeKVError

        rng = random.Random(f"{self.seed}-rangekv-{client_id}")
        client = self.client(self.options.proposal_timeout * 2)
        history = self.history
        seq = 0
        while not stop.is_set():
            await trio.sleep(rng.expovariate(1.0 / CLIENT_PAUSE))
            key = rng.choice(self.keys)
            draw = rng.random()
            if draw < 0.55:
                kind = OpKind.GET
                op = history.invoke(client_id, 0, key, kind)
                try:
                    value = await client.get(key)
                except RangeKVError as exc:
                    history.failed(op, type(exc).__name__)
                    continue
                history.ok(op, value)
                continue
            if draw < 0.9:
                seq += 1
                kind, value = OpKind.PUT, b"%d.%d" % (client_id, seq)
            else:
                kind, value = OpKind.DELETE, None
            op = history.invoke(client_id, 0, key, kind, value)
            try:
                if value is None:
                    await client.delete(key)
                else:
                    await client.put(key, value)
            except RangeKVError as exc:
                history.unknown(op, type(exc).__name__)
                continue
            history.ok(op)

    async def _mover(self, stop: trio.Event) -> None:
        """Move a replica of a random range to another node now and then."""
        from examples.rangekv.client import RangeKVError

        rng = random.Random(f"{self.seed}-moves")
        client = self.client(self.options.proposal_timeout * 3)
        #: range -> nodes it was moved away from: never moved back (their tombstones).
        left: dict[int, set[int]] = {}
        while not stop.is_set():
            await trio.sleep(rng.expovariate(1.0 / MOVE_PAUSE))
            try:
                ranges = await client.ranges()
            except RangeKVError:
                continue
            desc = rng.choice(ranges)
            gone = left.setdefault(desc.range_id, set())
            spare = [n for n in self.node_ids if n not in desc.replicas and n not in gone]
            if not spare or not desc.replicas:
                continue
            source, target = rng.choice(desc.replicas), rng.choice(spare)
            gone.add(source)
            self.trace.record("move", f"range {desc.range_id} from {source} to {target}")
            try:
                await client.move_replica(desc.range_id, source, target)
            except RangeKVError as exc:
                self.move_failures += 1
                self.trace.record("move", f"range {desc.range_id} failed: {exc}")
                continue
            self.moves += 1

    # ------------------------------------------------------------ the end

    async def _check_liveness(self) -> bool:
        """The directory answers and every range accepts a write within the bound."""
        from examples.rangekv.client import AmbiguousWriteError, RangeKVError

        bound = self.config.liveness_seconds
        client = self.client(bound)
        what = "listing the ranges"
        with trio.move_on_after(bound):
            try:
                for desc in await client.ranges():
                    what = f"writing to {desc.describe()}"
                    while True:
                        try:
                            await client.put(desc.start + b"\x00live", b"x")
                            break
                        except AmbiguousWriteError:
                            # Only this check writes the key: resending is safe.
                            continue
            except RangeKVError as exc:
                what = f"{what}: {exc}"
            else:
                return True
        self.checker.violation(
            "liveness", f"the store did not serve within {bound:.0f} s after healing ({what})"
        )
        return False

    def _directory(self) -> list[RangeDescriptor] | None:
        views = []
        for node_id in self.replicas:
            host = _host(self.cluster, node_id)
            if host is not None and host.directory.ready:
                views.append(host.directory.descriptors())
        if not views or any(v != views[0] for v in views):
            return None
        return views[0]

    def _convergence_gap(self) -> str | None:
        """Why the replicas do not all hold the directory's ranges yet (None: they do)."""
        ranges = self._directory()
        if ranges is None:
            return "the directory replicas differ"
        for desc in ranges:
            held = []
            for node_id in desc.replicas:
                host = _host(self.cluster, node_id)
                sm = None if host is None else host.ranges.get(desc.range_id)
                if host is None or sm is None or sm.descriptor is None:
                    return f"node {node_id} does not hold {desc.describe()}"
                d = sm.descriptor
                if (d.start, d.end, d.generation) != (desc.start, desc.end, desc.generation):
                    return f"node {node_id} holds {d.describe()}, the directory {desc.describe()}"
                try:
                    applied = host.node.applied_index(desc.range_id)
                    membership = members(host.node.membership(desc.range_id))
                except (GroupNotFoundError, GroupRemovedError):
                    return f"node {node_id} does not host {desc.describe()}"
                if membership != set(desc.replicas):
                    return (
                        f"node {node_id} applied membership {sorted(membership)} of "
                        f"{desc.describe()}, the directory lists {list(desc.replicas)}"
                    )
                held.append((applied, list(sm.data.items())))
            if any(h != held[0] for h in held):
                return f"the replicas of {desc.describe()} differ (applied {[h[0] for h in held]})"
            stray = self._stray_replica(desc)
            if stray is not None:
                return stray
        return None

    def _stray_replica(self, desc: RangeDescriptor) -> str | None:
        """A node the directory does not list for ``desc`` that still hosts it (None: none)."""
        for node_id in self.node_ids:
            host = _host(self.cluster, node_id)
            if host is None or node_id in desc.replicas:
                continue
            if desc.range_id in host.ranges or desc.range_id in host.node.group_ids():
                return f"node {node_id} still hosts {desc.describe()} (not listed)"
        return None

    async def _check_convergence(self) -> bool:
        """Every replica of every range ends with the directory's bounds and the same keys."""
        bound = self.config.liveness_seconds
        gap = self._convergence_gap()
        with trio.move_on_after(bound):
            while gap is not None:
                await trio.sleep(0.2)
                gap = self._convergence_gap()
        if gap is not None:
            self.checker.violation(
                "liveness", f"range replicas did not converge within {bound:.0f} s: {gap}"
            )
            return False
        ranges = self._directory()
        assert ranges is not None
        self.splits = len(ranges) - 1
        return True
