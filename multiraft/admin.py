"""The client/admin port of a ``multiraft node`` process, and a client for it.

Protocol: each message is a 4-byte big-endian length and a msgpack map (through
:mod:`multiraft.codec`). A request holds ``id`` (echoed back) and ``op`` plus
the op's fields; the answer is ``{"id", "ok": True, "result"}`` or
``{"id", "ok": False, "error": <exception class name>, "message", "leader"}``.
Requests on one connection run concurrently and may be answered out of order,
so a client can keep many proposals outstanding on one connection.

Operations (fields):

* ``ping`` -> ``{"node": id}``
* ``create_groups`` (``groups``, ``replicas``, ``campaign=False``) ->
  ``{"created": n, "existed": n}``; groups already hosted count as existed.
* ``campaign`` (``group``)
* ``put`` (``group``, ``key``, ``value``) / ``delete`` (``group``, ``key``) ->
  the key's previous value (None if absent), once applied on this node.
* ``get`` (``group``, ``key``) -> the value after a linearizable read barrier.
* ``dump`` (``group``) -> ``{"applied": index, "data": [[key, value], ...]}``
  (local, no barrier).
* ``leaders`` (``groups``) -> ``[[group, leader or 0], ...]``
* ``stats`` -> ``{"node": {...}, "transport": {...}, "cpu_seconds", "rss_bytes",
  "interpreter": {"switch_interval", "gc_thresholds", "gc_frozen_objects",
  "scheduling_policy"},
  "write_durations": {"waited": {...}, "in_engine": {...}}}`` (histograms in the
  form of :meth:`~multiraft.duration_histogram.DurationHistogram.to_dict`), and
  ``"task_cpu"`` when the node runs with a :class:`~multiraft.task_cpu.TaskCpuMeter`
  (``multiraft node --task-cpu``)
* ``block`` / ``unblock`` (``nodes``): cut this node off from those peers, or heal.
* ``load`` (``groups``, ``seconds``, ``outstanding``, ``value_size=100``, ``samples=0``): benchmark
  load, ``outstanding`` puts in flight per group (see :mod:`multiraft.bench.load`); with
  ``rate`` (puts per second over all ``groups``) instead of ``outstanding``, an open-loop load
  on a fixed schedule (see :mod:`multiraft.bench.open_loop`).
"""

from __future__ import annotations

import resource
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from multiraft.codec import CodecError, decode, encode
from multiraft.errors import GroupExistsError, NotLeaderError
from multiraft.interpreter_settings import current_settings
from multiraft.kv import KVCommand, KVStateMachine

if TYPE_CHECKING:
    from multiraft.node import Node
    from multiraft.task_cpu import TaskCpuMeter
    from transport.tcp import TcpTransport

__all__ = ["AdminClient", "AdminError", "AdminServer", "open_admin_client"]

_LENGTH = struct.Struct(">I")
#: Largest admin message either side accepts.
MAX_MESSAGE = 64 << 20
#: Requests one connection may have running at once before its reader waits.
_MAX_IN_FLIGHT = 20_000

Request = dict[str, Any]


class AdminError(Exception):
    """A request the node answered with an error.

    ``error`` is the exception class name on the node, ``leader`` the leader
    hint of a ``NotLeaderError`` (None otherwise).
    """

    def __init__(self, error: str, message: str, leader: int | None) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message
        self.leader = leader


async def _read_message(stream: trio.abc.ReceiveStream, buf: bytearray) -> Request | None:
    """The next message, or None at a clean end of stream (``buf`` carries leftovers)."""
    while len(buf) < _LENGTH.size:
        data = await stream.receive_some(1 << 16)
        if not data:
            if buf:
                raise CodecError("admin connection closed inside a message")
            return None
        buf += data
    (size,) = _LENGTH.unpack_from(buf)
    if size > MAX_MESSAGE:
        raise CodecError(f"admin message of {size} bytes exceeds {MAX_MESSAGE}")
    while len(buf) < _LENGTH.size + size:
        data = await stream.receive_some(max(1 << 16, _LENGTH.size + size - len(buf)))
        if not data:
            raise CodecError("admin connection closed inside a message")
        buf += data
    payload = bytes(buf[_LENGTH.size : _LENGTH.size + size])
    del buf[: _LENGTH.size + size]
    message = decode(payload, dict[str, Any])
    return message


def _pack(message: Request) -> bytes:
    payload = encode(message)
    return _LENGTH.pack(len(payload)) + payload


class AdminServer:
    """Answers admin requests for one node hosting :class:`KVStateMachine` groups."""

    def __init__(
        self,
        node: Node,
        transport: TcpTransport,
        state_machines: dict[int, KVStateMachine],
        task_cpu: TaskCpuMeter | None = None,
    ) -> None:
        """``task_cpu``: a meter installed in the node's trio run, for ``stats``."""
        self.node = node
        self.task_cpu = task_cpu
        self.transport = transport
        self.state_machines = state_machines
        self._ops: dict[str, Callable[[Request], Awaitable[Any]]] = {
            "ping": self._ping,
            "create_groups": self._create_groups,
            "campaign": self._campaign,
            "put": self._put,
            "delete": self._delete,
            "get": self._get,
            "dump": self._dump,
            "leaders": self._leaders,
            "stats": self._stats,
            "block": self._block,
            "unblock": self._unblock,
            "load": self._load,
        }

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        """Accept admin connections forever."""
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        send_lock = trio.Lock()
        buf = bytearray()
        slots = trio.Semaphore(_MAX_IN_FLIGHT)
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    request = await _read_message(stream, buf)
                    if request is None:
                        break
                    await slots.acquire()
                    nursery.start_soon(self._answer, stream, send_lock, slots, request)
        except (trio.BrokenResourceError, trio.ClosedResourceError, CodecError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _answer(
        self,
        stream: trio.SocketStream,
        send_lock: trio.Lock,
        slots: trio.Semaphore,
        request: Request,
    ) -> None:
        reply: Request = {"id": request.get("id")}
        try:
            op = self._ops.get(str(request.get("op")))
            if op is None:
                raise ValueError(f"unknown op {request.get('op')!r}")
            reply["result"] = await op(request)
            reply["ok"] = True
        except Exception as exc:  # every failure goes back to the client, typed by name
            reply["ok"] = False
            reply["error"] = type(exc).__name__
            reply["message"] = str(exc)
            reply["leader"] = exc.leader_hint if isinstance(exc, NotLeaderError) else None
        finally:
            slots.release()
        try:
            async with send_lock:
                await stream.send_all(_pack(reply))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _ping(self, request: Request) -> Any:
        return {"node": self.node.node_id}

    async def _create_groups(self, request: Request) -> Any:
        created = existed = 0
        replicas = [int(r) for r in request["replicas"]]
        campaign = bool(request.get("campaign", False))
        for group_id in request["groups"]:
            sm = KVStateMachine()
            try:
                await self.node.create_group(
                    int(group_id), replicas, state_machine=sm, campaign=campaign
                )
            except GroupExistsError:
                existed += 1
                continue
            self.state_machines[int(group_id)] = sm
            created += 1
        return {"created": created, "existed": existed}

    async def _campaign(self, request: Request) -> Any:
        await self.node.campaign(int(request["group"]))
        return None

    async def _put(self, request: Request) -> Any:
        cmd = KVCommand("put", bytes(request["key"]), bytes(request["value"]))
        return await self.node.propose(int(request["group"]), cmd.to_bytes())

    async def _delete(self, request: Request) -> Any:
        cmd = KVCommand("delete", bytes(request["key"]))
        return await self.node.propose(int(request["group"]), cmd.to_bytes())

    async def _get(self, request: Request) -> Any:
        group_id = int(request["group"])
        await self.node.read(group_id)
        return self.state_machines[group_id].get(bytes(request["key"]))

    async def _dump(self, request: Request) -> Any:
        group_id = int(request["group"])
        sm = self.state_machines[group_id]
        return {"applied": self.node.applied_index(group_id), "data": sorted(sm.data.items())}

    async def _leaders(self, request: Request) -> Any:
        groups = request.get("groups") or self.node.group_ids()
        return [[int(g), self.node.leader_of(int(g)) or 0] for g in groups]

    async def _stats(self, request: Request) -> Any:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        durations = self.node.write_durations()
        out = {
            "node": self.node.stats(),
            "transport": self.transport.stats(),
            "cpu_seconds": time.process_time(),
            "rss_bytes": usage.ru_maxrss * 1024,
            "interpreter": attrs.asdict(current_settings()),
            "write_durations": {
                "waited": durations.waited.to_dict(),
                "in_engine": durations.in_engine.to_dict(),
            },
        }
        if self.task_cpu is not None:
            out["task_cpu"] = self.task_cpu.snapshot()
        return out

    async def _block(self, request: Request) -> Any:
        for node_id in request["nodes"]:
            self.transport.block(int(node_id))
        return None

    async def _unblock(self, request: Request) -> Any:
        for node_id in request["nodes"]:
            self.transport.unblock(int(node_id))
        return None

    async def _load(self, request: Request) -> Any:
        from multiraft.bench.load import run_load
        from multiraft.bench.open_loop import run_open_loop

        if request.get("rate") is not None:
            return await run_open_loop(
                self.node.propose_nowait,
                [int(g) for g in request["groups"]],
                float(request["rate"]),
                float(request["seconds"]),
                value_size=int(request.get("value_size", 100)),
                samples=int(request.get("samples", 0)),
            )
        return await run_load(
            self.node,
            [int(g) for g in request["groups"]],
            float(request["seconds"]),
            int(request["outstanding"]),
            int(request.get("value_size", 100)),
            int(request.get("samples", 0)),
        )


class AdminClient:
    """Sends requests to a node's admin port; many may be outstanding at once."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._send_lock = trio.Lock()
        self._next_id = 0
        self._waiting: dict[int, tuple[trio.Event, list[Request]]] = {}
        self._broken: BaseException | None = None

    async def call(self, op: str, **fields: Any) -> Any:
        """Run ``op`` on the node; its result, or :class:`AdminError` with the node's error."""
        if self._broken is not None:
            raise trio.BrokenResourceError("admin connection lost") from self._broken
        self._next_id += 1
        request_id = self._next_id
        done = trio.Event()
        slot: list[Request] = []
        self._waiting[request_id] = (done, slot)
        try:
            async with self._send_lock:
                await self._stream.send_all(_pack({"id": request_id, "op": op, **fields}))
            await done.wait()
        finally:
            self._waiting.pop(request_id, None)
        if not slot:
            raise trio.BrokenResourceError("admin connection lost") from self._broken
        reply = slot[0]
        if not reply.get("ok"):
            raise AdminError(
                str(reply.get("error")), str(reply.get("message")), reply.get("leader")
            )
        return reply.get("result")

    async def _read_replies(self) -> None:
        buf = bytearray()
        try:
            while (reply := await _read_message(self._stream, buf)) is not None:
                waiter = self._waiting.get(reply.get("id", -1))
                if waiter is not None:
                    waiter[1].append(reply)
                    waiter[0].set()
            raise trio.BrokenResourceError("the node closed the admin connection")
        except (trio.BrokenResourceError, trio.ClosedResourceError, CodecError) as exc:
            self._broken = exc
        finally:
            # Also when the client is closed (this task cancelled): no call may wait
            # for an answer that can no longer arrive.
            if self._broken is None:
                self._broken = trio.ClosedResourceError("the admin client was closed")
            for done, _ in self._waiting.values():
                done.set()


@asynccontextmanager
async def open_admin_client(host: str, port: int) -> AsyncIterator[AdminClient]:
    """Connect to a node's admin port for the duration of the block."""
    stream = await trio.open_tcp_stream(host, port)
    client = AdminClient(stream)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._read_replies)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
