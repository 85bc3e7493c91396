"""The store on several local processes over TCP, driven from this process.

:func:`open_process_cluster` starts one ``python -m examples.rangekv.server``
per node on 127.0.0.1 (ports chosen by the system), introduces them to each
other, connects an RPC client to each and yields a :class:`ProcessCluster`.
Leaving the block sends SIGTERM to every node and waits for a clean exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import trio

from examples.rangekv.client import RangeClient
from examples.rangekv.protocol import BootstrapRequest, Ok, SetPeersRequest
from examples.rangekv.rpc import RpcLink, open_rpc_client

__all__ = ["NodeProcessError", "ProcessCluster", "open_process_cluster"]

#: Seconds a node may take to start listening, and to exit after SIGTERM.
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0


class NodeProcessError(RuntimeError):
    """A node process failed to start, answered wrongly or exited uncleanly."""


@attrs.define
class _NodeProcess:
    node_id: int
    process: trio.Process
    log_path: str
    listen: tuple[str, int] = ("", 0)
    rpc: tuple[str, int] = ("", 0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


class ProcessCluster:
    """Node processes by id and an RPC link to them."""

    def __init__(self) -> None:
        self.nodes: dict[int, _NodeProcess] = {}
        self.link = RpcLink({})

    async def bootstrap(self, replicas: Sequence[int] | None = None) -> None:
        """Create the directory and first range on ``replicas`` (default: every node)."""
        members = tuple(sorted(replicas or self.nodes))
        async with trio.open_nursery() as nursery:
            for node_id in members:
                nursery.start_soon(self._expect_ok, node_id, BootstrapRequest(members))

    async def _expect_ok(self, node_id: int, request: object) -> None:
        reply = await self.link.call(node_id, request)
        if not isinstance(reply, Ok):
            raise NodeProcessError(f"node {node_id} answered {type(request).__name__}: {reply!r}")

    def client(self, **options: float) -> RangeClient:
        """A new client of this cluster (``timeout``, ``retry_delay``)."""
        return RangeClient(self.link, **options)

    def exit_codes(self) -> dict[int, int | None]:
        """Each node process's exit code (None: still running)."""
        return {i: n.process.returncode for i, n in self.nodes.items()}


def _child_env() -> dict[str, str]:
    """This environment, with the directory holding ``examples`` first on the path."""
    import examples

    root = os.path.dirname(os.path.dirname(os.path.abspath(examples.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


async def _start_node(node_id: int, data_root: str, options: list[str]) -> _NodeProcess:
    data_dir = os.path.join(data_root, f"node{node_id}")
    os.makedirs(data_dir, exist_ok=True)
    log_path = os.path.join(data_root, f"node{node_id}.log")
    argv = [
        sys.executable,
        "-m",
        "examples.rangekv.server",
        f"--id={node_id}",
        f"--data-dir={data_dir}",
        "--stop-on-stdin-eof",
        *options,
    ]
    with open(log_path, "ab") as log_file:
        # The node stops when its stdin closes: when this process exits, however.
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=_child_env()
        )
    return _NodeProcess(node_id, process, log_path)


async def _read_ready_line(node: _NodeProcess) -> None:
    stdout = node.process.stdout
    assert stdout is not None
    buf = b""
    with trio.move_on_after(_START_TIMEOUT):
        while b"\n" not in buf:
            chunk = await stdout.receive_some(4096)
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\n", 1)[0]
    try:
        ready = json.loads(line)
        node.listen = (ready["listen"][0], int(ready["listen"][1]))
        node.rpc = (ready["rpc"][0], int(ready["rpc"][1]))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise NodeProcessError(
            f"node {node.node_id} did not start (exit code {node.process.returncode}):\n"
            + node.log_tail()
        ) from exc


async def _stop(node: _NodeProcess) -> None:
    proc = node.process
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(_STOP_TIMEOUT):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def open_process_cluster(
    node_ids: Iterable[int],
    data_root: str,
    *,
    split_keys: int = 0,
    split_bytes: int = 0,
    balance_leaders: bool = False,
    tick_interval: float = 0.1,
) -> AsyncIterator[ProcessCluster]:
    """Start a node process per id, with its data in ``data_root/node<i>``.

    Raises :class:`NodeProcessError` if a node fails to start or does not exit
    cleanly (exit code 0) after SIGTERM at the end.
    """
    node_options = [
        f"--split-keys={split_keys}",
        f"--split-bytes={split_bytes}",
        f"--tick-interval={tick_interval}",
        *(["--balance-leaders"] if balance_leaders else []),
    ]
    cluster = ProcessCluster()
    try:
        async with AsyncExitStack() as stack:
            for node_id in node_ids:
                node = await _start_node(node_id, data_root, node_options)
                cluster.nodes[node_id] = node
                await _read_ready_line(node)
            for node in cluster.nodes.values():
                client = await stack.enter_async_context(open_rpc_client(node.node_id, *node.rpc))
                cluster.link.clients[node.node_id] = client
            peers = tuple((n.node_id, *n.listen) for n in cluster.nodes.values())
            rpc_peers = tuple((n.node_id, *n.rpc) for n in cluster.nodes.values())
            for node_id in cluster.nodes:
                await cluster._expect_ok(node_id, SetPeersRequest(peers, rpc_peers))
            yield cluster
    finally:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for node in cluster.nodes.values():
                    nursery.start_soon(_stop, node)
    bad = {i: code for i, code in cluster.exit_codes().items() if code != 0}
    if bad:
        tails = "\n".join(f"node {i}:\n{cluster.nodes[i].log_tail()}" for i in bad)
        raise NodeProcessError(f"node processes exited uncleanly {bad}\n{tails}")
