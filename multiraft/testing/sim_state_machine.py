"""The state machine every simulated replica runs: a small KV store with a hash chain.

Commands are bytes whose first byte names the kind:

* ``R`` + payload: a raw proposal; changes nothing but the chain.
* ``P`` + msgpack ``[client, seq, key, value]``: set ``key`` to ``value``. A
  client's commands carry increasing ``seq``; one whose ``seq`` is not above the
  last applied for that client is a duplicate (a proposal the network delivered
  twice, or a retry) and is skipped, as a session table would.

Whatever the command, ``apply`` folds ``(index, command)`` into a running
BLAKE2b chain and reports the chain to an :class:`ApplyObserver`: two replicas
with equal chains at an index applied exactly the same commands up to it. The
chain, the data and the session table are all in the snapshot.

A replica on a slow node charges ``NodeSlowness.apply_seconds`` per command to
the simulated thread that runs it (``blocking`` replicas only: the coordinator
runs those through ``trio.to_thread``).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import msgpack

from multiraft.testing.sim_runtime import CostMeter

__all__ = [
    "ApplyObserver",
    "NodeSlowness",
    "SimStateMachine",
    "decode_put",
    "encode_put",
    "encode_raw",
]

RAW = b"R"
PUT = b"P"
_EMPTY_CHAIN = bytes(16)


def encode_raw(payload: bytes) -> bytes:
    """A raw proposal command."""
    return RAW + payload


def encode_put(client: int, seq: int, key: bytes, value: bytes) -> bytes:
    """A put command of ``client``'s operation number ``seq``."""
    packed: bytes = msgpack.packb([client, seq, key, value], use_bin_type=True)
    return PUT + packed


def decode_put(command: bytes) -> tuple[int, int, bytes, bytes]:
    """``(client, seq, key, value)`` of a put command."""
    client, seq, key, value = msgpack.unpackb(command[1:], raw=False)
    return int(client), int(seq), bytes(key), bytes(value)


class ApplyObserver(Protocol):
    """Told about every command a replica applies."""

    def on_apply(
        self, node_id: int, group_id: int, index: int, command: bytes, chain: bytes
    ) -> None:
        """``node_id``'s replica of ``group_id`` applied ``command`` at ``index``.

        ``chain`` is the replica's running hash after it.
        """
        ...

    def on_apply_out_of_order(self, node_id: int, group_id: int, index: int, last: int) -> None:
        """A replica was asked to apply ``index`` after it had applied ``last`` >= ``index``."""
        ...


class NodeSlowness:
    """How slow one node's state machines are right now (changed by the fault schedule)."""

    __slots__ = ("apply_seconds",)

    def __init__(self) -> None:
        self.apply_seconds = 0.0


class SimStateMachine:
    """One replica's KV store and applied-command chain."""

    __slots__ = (
        "applied_index",
        "blocking",
        "chain",
        "data",
        "group_id",
        "meter",
        "node_id",
        "observer",
        "sessions",
        "slowness",
    )

    def __init__(
        self,
        group_id: int,
        node_id: int,
        observer: ApplyObserver,
        *,
        meter: CostMeter,
        slowness: NodeSlowness,
        blocking: bool,
    ) -> None:
        self.group_id = group_id
        self.node_id = node_id
        self.observer = observer
        self.meter = meter
        self.slowness = slowness
        #: The coordinator applies through a (simulated) worker thread when True.
        self.blocking = blocking
        self.data: dict[bytes, bytes] = {}
        self.sessions: dict[int, int] = {}
        self.chain = _EMPTY_CHAIN
        self.applied_index = 0

    def apply(self, index: int, command: bytes) -> object:
        """Apply one command; the result is ``index``."""
        if index <= self.applied_index:
            self.observer.on_apply_out_of_order(
                self.node_id, self.group_id, index, self.applied_index
            )
        h = hashlib.blake2b(self.chain, digest_size=16)
        h.update(index.to_bytes(8, "big"))
        h.update(command)
        self.chain = h.digest()
        self.applied_index = index
        if command[:1] == PUT:
            client, seq, key, value = decode_put(command)
            if seq > self.sessions.get(client, 0):
                self.sessions[client] = seq
                self.data[key] = value
        if self.blocking:
            self.meter.add(self.slowness.apply_seconds)
        self.observer.on_apply(self.node_id, self.group_id, index, command, self.chain)
        return index

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` as applied here."""
        return self.data.get(key)

    def snapshot(self) -> bytes:
        """Everything: applied index, chain, data and sessions."""
        packed: bytes = msgpack.packb(
            [
                self.applied_index,
                self.chain,
                sorted(self.data.items()),
                sorted(self.sessions.items()),
            ],
            use_bin_type=True,
        )
        return packed

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""
        applied, chain, pairs, sessions = msgpack.unpackb(data, raw=False)
        self.applied_index = int(applied)
        self.chain = bytes(chain)
        self.data = {bytes(k): bytes(v) for k, v in pairs}
        self.sessions = {int(c): int(s) for c, s in sessions}
