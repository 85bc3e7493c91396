"""Real ``multiraft node`` processes on 127.0.0.1 for tests and benchmarks.

Every process started here is killed when its :class:`ProcessCluster` block
exits, whatever happened inside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from multiraft.admin import AdminError
from multiraft.node_launcher import NodeProcess, free_ports

__all__ = ["ProcessCluster", "process_cluster", "retry_call"]


class ProcessCluster:
    """``n`` node processes that list each other as peers (see :func:`process_cluster`)."""

    def __init__(
        self,
        root: Path,
        nursery: trio.Nursery,
        n: int = 3,
        extra_args: Sequence[str] = (),
        node_args: Mapping[int, Sequence[str]] | None = None,
    ) -> None:
        self.root = root
        self.nursery = nursery
        self.ports = free_ports(n)
        self.cluster_id = "proc-test"
        self.extra_args = list(extra_args)
        self.nodes: dict[int, NodeProcess] = {}
        self.others: list[NodeProcess] = []
        for node_id in range(1, n + 1):
            args = self.node_args(node_id) + list((node_args or {}).get(node_id, ()))
            self.nodes[node_id] = NodeProcess(args, root / f"node{node_id}.log", nursery)

    def address(self, node_id: int) -> str:
        """The raft listen address of ``node_id``."""
        return f"127.0.0.1:{self.ports[node_id - 1]}"

    def node_args(self, node_id: int, **overrides: str) -> list[str]:
        """The command line of ``node_id`` (``overrides`` replace ``--name value`` options)."""
        options = {
            "--id": str(node_id),
            "--listen": self.address(node_id) if node_id <= len(self.ports) else "127.0.0.1:0",
            "--data-dir": str(self.root / f"data{node_id}"),
            "--cluster-id": self.cluster_id,
            "--admin": "127.0.0.1:0",
            "--tick-interval": "0.05",
            "--proposal-timeout": "3",
        }
        options.update(overrides)
        args = [item for pair in options.items() for item in pair]
        for peer in range(1, len(self.ports) + 1):
            if peer != node_id:
                args += ["--peer", f"{peer}={self.address(peer)}"]
        return args + self.extra_args

    def extra_process(self, args: list[str], name: str) -> NodeProcess:
        """Another node process (not started), killed with the cluster."""
        proc = NodeProcess(args, self.root / f"{name}.log", self.nursery)
        self.others.append(proc)
        return proc

    def __getitem__(self, node_id: int) -> NodeProcess:
        return self.nodes[node_id]

    async def start_all(self) -> None:
        """Start every node (concurrently) and wait until each is ready."""
        async with trio.open_nursery() as nursery:
            for node in self.nodes.values():
                nursery.start_soon(node.start)

    async def kill_all(self) -> None:
        """kill -9 every process still running."""
        for node in [*self.nodes.values(), *self.others]:
            await node.kill()


@asynccontextmanager
async def process_cluster(
    root: Path,
    n: int = 3,
    extra_args: Sequence[str] = (),
    node_args: Mapping[int, Sequence[str]] | None = None,
) -> AsyncIterator[ProcessCluster]:
    """A started cluster; every process is killed when the block exits."""
    async with trio.open_nursery() as nursery:
        cluster = ProcessCluster(root, nursery, n, extra_args, node_args)
        try:
            await cluster.start_all()
            yield cluster
        finally:
            with trio.CancelScope(shield=True):
                await cluster.kill_all()
            nursery.cancel_scope.cancel()


async def retry_call(node: NodeProcess, op: str, timeout: float = 20.0, **fields: Any) -> Any:
    """Call ``op`` until it succeeds (leaders move during failures), up to ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            try:
                return await node.call(op, **fields)
            except AdminError as exc:
                if exc.error not in (
                    "NotLeaderError",
                    "ProposalTimeoutError",
                    "ProposalDroppedError",
                ):
                    raise
                await trio.sleep(0.05)
