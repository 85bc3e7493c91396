"""Real ``multiraft node`` processes on 127.0.0.1 for tests and benchmarks.

Every process started here is killed when its :class:`ProcessCluster` block
exits, whatever happened inside it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from multiraft.admin import AdminClient, AdminError, open_admin_client

__all__ = ["NodeProcess", "ProcessCluster", "free_ports", "process_cluster", "retry_call"]

ROOT = Path(__file__).resolve().parent.parent


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free a moment ago on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class NodeProcess:
    """One node process: its command line, its ready line, and its admin client."""

    def __init__(self, args: list[str], log_path: Path, nursery: trio.Nursery) -> None:
        self.args = args
        self.log_path = log_path
        self.process: trio.Process | None = None
        self.ready: dict[str, Any] = {}
        self.admin: AdminClient | None = None
        self._nursery = nursery
        self._admin_scope: trio.CancelScope | None = None

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 20.0) -> None:
        """Spawn the process and wait for its ready line; connect the admin client."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.log_path, "ab") as log_file:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "multiraft.cli", "node", *self.args],
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
                cwd=str(ROOT),
            )
        assert self.process.stdout is not None
        line = b""
        with trio.fail_after(timeout):
            while not line.endswith(b"\n"):
                chunk = await self.process.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"node exited before it was ready:\n{self.log_text()}")
                line += chunk
        self.ready = json.loads(line.decode())
        host, port = self.ready["admin"]
        await self._nursery.start(self._admin_session, host, port)

    async def _admin_session(
        self, host: str, port: int, *, task_status: trio.TaskStatus[None]
    ) -> None:
        with trio.CancelScope() as scope:
            self._admin_scope = scope
            async with open_admin_client(host, port) as client:
                self.admin = client
                task_status.started()
                await trio.sleep_forever()

    async def _drop_admin(self) -> None:
        self.admin = None
        if self._admin_scope is not None:
            self._admin_scope.cancel()
            self._admin_scope = None
        await trio.lowlevel.checkpoint()

    async def kill(self) -> None:
        """kill -9, and wait for it."""
        await self._drop_admin()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await self.process.wait()

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit code (killed if it overstays ``timeout``)."""
        await self._drop_admin()
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            return await self.process.wait()
        await self.kill()
        raise AssertionError(f"node ignored SIGTERM for {timeout}s:\n{self.log_text()}")

    async def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit on its own."""
        assert self.process is not None
        with trio.fail_after(timeout):
            return await self.process.wait()

    def log_text(self) -> str:
        """What the process wrote on stderr so far."""
        return self.log_path.read_text(errors="replace")

    def call(self, op: str, **fields: Any) -> Any:
        """Shortcut for ``self.admin.call`` (an awaitable)."""
        assert self.admin is not None, "node not running"
        return self.admin.call(op, **fields)


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
