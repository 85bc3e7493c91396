"""Monotonic counters of the TCP transport, reported by ``TcpTransport.stats``."""

from __future__ import annotations

__all__ = ["TransportCounters"]


class TransportCounters:
    """Events counted since the transport started (never reset)."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "connections_accepted",
        "connections_closed_on_error",
        "connections_opened",
        "dial_failures",
        "frames_discarded",
        "frames_dropped",
        "frames_received",
        "frames_sent",
        "handshakes_refused",
        "snapshots_failed",
        "snapshots_received",
        "snapshots_sent",
    )

    def __init__(self) -> None:
        #: Bytes read from peer connections (all records, headers included).
        self.bytes_received = 0
        #: Bytes written to peer connections (frames, pings and snapshot chunks).
        self.bytes_sent = 0
        #: Inbound connections that passed the handshake.
        self.connections_accepted = 0
        #: Inbound or outbound connections closed because of bad input or a timeout.
        self.connections_closed_on_error = 0
        #: Outbound connections that passed the handshake.
        self.connections_opened = 0
        #: Outbound dials or handshakes that failed.
        self.dial_failures = 0
        #: Frames accepted by ``send`` but lost when their connection broke.
        self.frames_discarded = 0
        #: Frames refused by ``send`` (queue budget, peer down or unknown, too large).
        self.frames_dropped = 0
        #: Frames decoded from peers and handed to the node.
        self.frames_received = 0
        #: Frames written to peers.
        self.frames_sent = 0
        #: Inbound HELLOs this node refused.
        self.handshakes_refused = 0
        #: Snapshot sends that ended in FAILURE.
        self.snapshots_failed = 0
        #: Snapshots received whole and handed to the node.
        self.snapshots_received = 0
        #: Snapshot sends acknowledged by the receiver (FINISH).
        self.snapshots_sent = 0

    def as_dict(self) -> dict[str, int]:
        """Every counter by name."""
        return {name: getattr(self, name) for name in self.__slots__}
