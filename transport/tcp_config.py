"""Settings of the TCP transport, validated on construction."""

from __future__ import annotations

import math
from typing import Any

import attrs

from transport.tls import TlsConfig

__all__ = ["PeerAddress", "TcpTransportConfig"]

#: (host, port) of a peer node's listener.
PeerAddress = tuple[str, int]


def _int_at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _seconds(name: str, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number of seconds, got {value!r}")


def _peers(value: Any) -> dict[int, PeerAddress]:
    return {int(k): (str(v[0]), int(v[1])) for k, v in dict(value).items()}


@attrs.define(kw_only=True)
class TcpTransportConfig:
    """How one node listens, whom it dials, and the limits it enforces.

    * ``node_id`` / ``cluster_id``: checked in every handshake; a peer that
      disagrees is refused.
    * ``listen_host`` / ``listen_port``: port 0 picks a free port (see
      ``TcpTransport.listen_port``).
    * ``peers``: node id -> (host, port); only these nodes may connect, and
      only these are dialed. Change at run time with ``set_peer``.
    * ``tls``: mutual TLS 1.3 with the cluster CA, or None for plain TCP.
    * ``send_queue_bytes``: per-peer budget of encoded frames accepted but not
      yet written; frames beyond it are refused (``send`` returns False).
    * ``max_frame_bytes``: largest record accepted from a peer (larger outgoing
      frames are split by message); ``max_handshake_bytes``: the limit before the
      handshake is done.
    * ``handshake_timeout``: connect + TLS + HELLO/WELCOME must finish within it.
    * ``keepalive_interval`` / ``idle_timeout``: a dialer pings at least every
      interval; a connection with no record for ``idle_timeout`` is closed.
    * ``write_timeout``: a write to a peer stuck this long closes the connection.
    * ``reconnect_initial`` / ``reconnect_max``: exponential backoff between
      dials (each delay scaled by a random factor in [0.5, 1)).
    * ``max_snapshot_sends`` / ``max_snapshot_receives``: snapshot streams in
      flight at once per node; ``max_pending_snapshots``: snapshots waiting for a
      send slot before new ones fail at once; ``snapshot_chunk_bytes``: chunk size
      (at most ``max_frame_bytes``);
      ``max_snapshot_bytes``: largest snapshot accepted; ``snapshot_ack_timeout``:
      how long a sender waits for the receiver's verdict after the last chunk;
      ``snapshot_spool_dir``: where received chunks wait until complete (None:
      the system temporary directory).
    * ``inbox_frames``: frames received but not yet taken by ``receive`` before
      readers stop reading (backpressure to the senders).
    * ``max_inbound_connections``: connections accepted at once.
    * ``seed``: seeds the backoff jitter (None: from the OS).
    """

    node_id: int
    cluster_id: str = "multiraft"
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    peers: dict[int, PeerAddress] = attrs.field(factory=dict, converter=_peers)
    tls: TlsConfig | None = None
    send_queue_bytes: int = 16 << 20
    max_frame_bytes: int = 64 << 20
    max_handshake_bytes: int = 4096
    handshake_timeout: float = 5.0
    keepalive_interval: float = 1.0
    idle_timeout: float = 5.0
    write_timeout: float = 10.0
    reconnect_initial: float = 0.05
    reconnect_max: float = 2.0
    max_snapshot_sends: int = 2
    max_snapshot_receives: int = 4
    max_pending_snapshots: int = 1024
    snapshot_chunk_bytes: int = 1 << 20
    max_snapshot_bytes: int = 1 << 34
    snapshot_ack_timeout: float = 60.0
    snapshot_spool_dir: str | None = None
    inbox_frames: int = 1024
    max_inbound_connections: int = 256
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        _int_at_least("node_id", self.node_id, 1)
        if not isinstance(self.cluster_id, str) or not self.cluster_id:
            raise ValueError(f"cluster_id must be a non-empty string, got {self.cluster_id!r}")
        _int_at_least("listen_port", self.listen_port, 0)
        for peer_id, (_host, port) in self.peers.items():
            _int_at_least("peers node id", peer_id, 1)
            if peer_id == self.node_id:
                raise ValueError(f"peers must not include this node ({peer_id})")
            _int_at_least("peers port", port, 1)
        if self.tls is not None and not isinstance(self.tls, TlsConfig):
            raise ValueError("tls must be a TlsConfig or None")
        _int_at_least("send_queue_bytes", self.send_queue_bytes, 1)
        _int_at_least("max_frame_bytes", self.max_frame_bytes, 1024)
        _int_at_least("max_handshake_bytes", self.max_handshake_bytes, 256)
        for name in (
            "handshake_timeout",
            "keepalive_interval",
            "idle_timeout",
            "write_timeout",
            "reconnect_initial",
            "reconnect_max",
            "snapshot_ack_timeout",
        ):
            _seconds(name, getattr(self, name))
        if self.idle_timeout <= self.keepalive_interval:
            raise ValueError("idle_timeout must be greater than keepalive_interval")
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        _int_at_least("max_snapshot_sends", self.max_snapshot_sends, 1)
        _int_at_least("max_snapshot_receives", self.max_snapshot_receives, 1)
        _int_at_least("max_pending_snapshots", self.max_pending_snapshots, 1)
        _int_at_least("snapshot_chunk_bytes", self.snapshot_chunk_bytes, 1)
        _int_at_least("max_snapshot_bytes", self.max_snapshot_bytes, 0)
        _int_at_least("inbox_frames", self.inbox_frames, 1)
        _int_at_least("max_inbound_connections", self.max_inbound_connections, 1)
        if self.seed is not None:
            _int_at_least("seed", self.seed, 0)
