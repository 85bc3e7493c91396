"""Start ``multiraft node`` processes on this machine and talk to their admin ports.

Used by the real-process tests and by ``multiraft bench cluster``. A
:class:`NodeProcess` runs one node; its admin client lives in a task of the
nursery given at construction, so the owner of that nursery decides how long
the connections may outlive a call. Nothing here kills a process it did not
start.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from multiraft.admin import AdminClient, open_admin_client

__all__ = ["NodeProcess", "free_ports"]

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


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
    """One ``multiraft node`` process: its command line, ready line and admin client."""

    def __init__(self, args: list[str], log_path: Path, nursery: trio.Nursery) -> None:
        self.args = args
        self.log_path = log_path
        self.process: trio.Process | None = None
        #: The JSON ready line the node printed (``listen``, ``admin``, ``groups``).
        self.ready: dict[str, Any] = {}
        self.admin: AdminClient | None = None
        self._nursery = nursery
        self._admin_scope: trio.CancelScope | None = None

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int:
        """The process id (of the latest start)."""
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 20.0) -> None:
        """Spawn the process and wait for its ready line; connect the admin client.

        If that fails or is cancelled once the process exists, the process is
        killed: a node is never left running without its admin client.
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with open(self.log_path, "ab") as log_file:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "multiraft.cli", "node", *self.args],
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
            )
        try:
            stdout = self.process.stdout
            assert stdout is not None
            line = b""
            with trio.fail_after(timeout):
                while not line.endswith(b"\n"):
                    chunk = await stdout.receive_some(4096)
                    if not chunk:
                        raise AssertionError(f"node exited before it was ready:\n{self.log_text()}")
                    line += chunk
            self.ready = json.loads(line.decode())
            host, port = self.ready["admin"]
            await self._nursery.start(self._admin_session, host, port)
        except BaseException:
            await self.kill()
            raise

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
        """kill -9 the process (if running) and reap it, even when cancelled meanwhile."""
        # Shielded as a whole: a cancellation between dropping the admin client
        # and the signal would leave the node running with no way to reach it.
        with trio.CancelScope(shield=True):
            await self._drop_admin()
            if self.process is not None and self.process.returncode is None:
                self.process.send_signal(signal.SIGKILL)
                await self.process.wait()

    async def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit code; killed (and AssertionError) past ``timeout``."""
        with trio.CancelScope(shield=True):
            await self._drop_admin()
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            return await self.process.wait()
        await self.kill()
        raise AssertionError(f"node ignored SIGTERM for {timeout}s:\n{self.log_text()}")

    async def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit on its own; its exit code."""
        assert self.process is not None
        with trio.fail_after(timeout):
            return await self.process.wait()

    def log_text(self) -> str:
        """What the process wrote on stderr so far."""
        return self.log_path.read_text(errors="replace")

    async def call(self, op: str, **fields: Any) -> Any:
        """Run an admin operation on the node (see :mod:`multiraft.admin`)."""
        if self.admin is None:
            raise trio.ClosedResourceError("node not running")
        return await self.admin.call(op, **fields)
