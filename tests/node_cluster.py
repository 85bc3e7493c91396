"""Helpers for coordinator tests: a recording state machine and an in-process cluster."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

import trio

from multiraft import Node, NodeConfig, open_node
from multiraft.frames import Frame, SnapshotOutcome
from multiraft.ports import WriteBatch
from storage import MemoryLogEngine
from transport import MemoryNetwork

__all__ = [
    "BlockingStateMachine",
    "Cluster",
    "HoldingTransport",
    "RecordingEngine",
    "RecordingStateMachine",
    "wait_until",
]


class RecordingStateMachine:
    """Records every applied command; ``apply`` returns ``(index, command)``.

    A command ``b"fail"`` raises ``ValueError`` (to test error propagation).
    """

    def __init__(self) -> None:
        self.applied: list[tuple[int, bytes]] = []
        self.restores = 0

    def apply(self, index: int, command: bytes) -> object:
        if command == b"fail":
            raise ValueError(f"refused at {index}")
        self.applied.append((index, command))
        return (index, command)

    def snapshot(self) -> bytes:
        return json.dumps([[i, c.decode("latin-1")] for i, c in self.applied]).encode()

    def restore(self, data: bytes) -> None:
        self.applied = [(i, c.encode("latin-1")) for i, c in json.loads(data)]
        self.restores += 1


class BlockingStateMachine(RecordingStateMachine):
    """A state machine whose ``apply`` blocks its thread until ``release`` is set."""

    blocking = True

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def apply(self, index: int, command: bytes) -> object:
        self.entered.set()
        self.release.wait(30)
        return super().apply(index, command)


class RecordingEngine(MemoryLogEngine):
    """The memory log engine, recording which groups each write batch held."""

    __slots__ = ("batches",)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    def write(self, batch: WriteBatch) -> None:
        self.batches.append([gw.group_id for gw in batch.groups])
        super().write(batch)


class HoldingTransport:
    """A node's memory transport that can hold back snapshot outcomes and refuse snapshots.

    While ``hold_outcomes`` is set, snapshot outcomes are kept in ``held`` instead
    of reaching the node (a snapshot still "in flight"); ``refuse_snapshots``
    makes that many sends of frames with a snapshot return False.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.hold_outcomes = False
        self.held: list[SnapshotOutcome] = []
        self.refuse_snapshots = 0
        self.refused: list[Frame] = []

    def send(self, to_node: int, frame: Frame) -> bool:
        if self.refuse_snapshots and frame.has_snapshot():
            self.refuse_snapshots -= 1
            self.refused.append(frame)
            return False
        ok: bool = self.inner.send(to_node, frame)
        return ok

    async def receive(self) -> Frame | SnapshotOutcome:
        while True:
            item: Frame | SnapshotOutcome = await self.inner.receive()
            if self.hold_outcomes and isinstance(item, SnapshotOutcome):
                self.held.append(item)
                continue
            return item

    async def aclose(self) -> None:
        await self.inner.aclose()


async def wait_until(cond: Callable[[], bool], timeout: float, what: str = "condition") -> float:
    """Poll ``cond`` every 10 ms of (mock) time; return the time it took, or fail."""
    start = trio.current_time()
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.01)
        return trio.current_time() - start
    raise AssertionError(f"{what} not reached within {timeout}s")


class Cluster:
    """``n`` nodes on one :class:`MemoryNetwork`, each run by its own task.

    Use ``async with Cluster(...) as c``; :meth:`stop` ends one node (as a crash
    would, from the others' point of view) and :meth:`start` starts it again.
    """

    def __init__(self, n: int = 3, *, seed: int = 0, **config: Any) -> None:
        self.ids = list(range(1, n + 1))
        self.net = MemoryNetwork(seed=seed)
        self.config = config
        self.nodes: dict[int, Node] = {}
        self.engines: dict[int, RecordingEngine] = {}
        #: The transport each running node got (a ``HoldingTransport`` around the
        #: memory network's end).
        self.transports: dict[int, HoldingTransport] = {}
        self.sms: dict[tuple[int, int], RecordingStateMachine] = {}
        self._running: dict[int, tuple[trio.CancelScope, trio.Event]] = {}
        self._stack = AsyncExitStack()
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> Cluster:
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        for i in self.ids:
            await self.start(i)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for i in list(self._running):
            await self.stop(i)
        await self._stack.aclose()

    async def _run_node(
        self,
        node_id: int,
        config: NodeConfig,
        engine: RecordingEngine,
        task_status: trio.TaskStatus[Node],
    ) -> None:
        done = trio.Event()
        transport = self.transports[node_id] = HoldingTransport(self.net.transport(node_id))
        try:
            with trio.CancelScope() as scope:
                async with open_node(config, transport=transport, log_engine=engine) as node:
                    self._running[node_id] = (scope, done)
                    task_status.started(node)
                    await trio.sleep_forever()
        finally:
            done.set()

    async def start(self, node_id: int, config: NodeConfig | None = None) -> Node:
        assert self._nursery is not None
        engine = self.engines.setdefault(node_id, RecordingEngine())
        node: Node = await self._nursery.start(
            self._run_node, node_id, config or self.node_config(node_id), engine
        )
        self.nodes[node_id] = node
        return node

    async def stop(self, node_id: int) -> None:
        scope, done = self._running.pop(node_id)
        scope.cancel()
        await done.wait()

    def node_config(self, node_id: int) -> NodeConfig:
        # The memory engine does not block; a worker thread would also let the mock
        # clock jump ahead while the event loop waits for it.
        options = {"write_in_thread": False, "seed": 7, **self.config}
        return NodeConfig(node_id, **options)

    async def create_groups(
        self,
        group_ids: Iterable[int],
        leader: Callable[[int], int] = lambda g: 1,
        members: list[int] | None = None,
    ) -> None:
        """Create each group on its members; its designated leader campaigns."""
        members = members or self.ids
        for g in group_ids:
            for i in members:
                sm = self.sms[(g, i)] = RecordingStateMachine()
                await self.nodes[i].create_group(
                    g, members, state_machine=sm, campaign=(i == leader(g))
                )

    def leaders(self, group_ids: Iterable[int], node_ids: Iterable[int] | None = None) -> dict:
        ids = list(node_ids or self.nodes)
        return {g: {i: self.nodes[i].leader_of(g) for i in ids} for g in group_ids}

    async def wait_leaders(
        self,
        group_ids: Iterable[int],
        node_ids: Iterable[int] | None = None,
        timeout: float = 10.0,
    ) -> float:
        """Wait until every node in ``node_ids`` agrees on one leader per group."""
        gids = list(group_ids)
        ids = list(node_ids or self.nodes)

        def agreed() -> bool:
            for g in gids:
                seen = {self.nodes[i].leader_of(g) for i in ids}
                if len(seen) != 1 or None in seen:
                    return False
            return True

        return await wait_until(agreed, timeout, "leader agreement")

    async def settle(self, group_ids: Iterable[int], timeout: float = 10.0) -> None:
        """Wait until every hosted group is quiesced on every node."""
        gids = list(group_ids)
        await wait_until(
            lambda: all(n.is_quiesced(g) for n in self.nodes.values() for g in gids),
            timeout,
            "quiescence",
        )
