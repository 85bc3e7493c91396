"""Handing a node's frames to the transport, with the counters and liveness they feed."""

from __future__ import annotations

from multiraft.counters import NodeCounters
from multiraft.frames import Frame
from multiraft.heartbeats import Outbox
from multiraft.liveness import PeerLiveness
from multiraft.ports import Transport

__all__ = ["FrameSender"]


class FrameSender:
    """Sends the frames of the :class:`Outbox` and keepalives; keeps refused frames.

    A frame the transport refuses (``send`` returned False) that carried raft
    messages is kept in ``failed`` so the driver can report the destination
    unreachable (and failed snapshots) to the groups in it.
    """

    __slots__ = ("_counters", "_liveness", "_node_id", "_transport", "failed", "outbox")

    def __init__(
        self,
        node_id: int,
        transport: Transport,
        outbox: Outbox,
        liveness: PeerLiveness,
        counters: NodeCounters,
    ) -> None:
        self._node_id = node_id
        self._transport = transport
        self.outbox = outbox
        self._liveness = liveness
        self._counters = counters
        #: ``(destination, frame)`` of refused frames not yet handled by the driver.
        self.failed: list[tuple[int, Frame]] = []

    def flush(self) -> None:
        """Send every frame assembled in the outbox, in destination order."""
        outbox = self.outbox
        c = self._counters
        c.heartbeats_coalesced += outbox.heartbeats_coalesced
        c.heartbeats_skipped += outbox.heartbeats_skipped
        c.snapshots_sent += outbox.snapshots
        outbox.heartbeats_coalesced = 0
        outbox.heartbeats_skipped = 0
        outbox.snapshots = 0
        frames = outbox.take()
        for to in sorted(frames):
            self.send(to, frames[to])

    def send(self, to: int, frame: Frame, keepalive: bool = False) -> None:
        """Hand ``frame`` to the transport (a ``keepalive`` only proves we are alive)."""
        c = self._counters
        c.frames_sent += 1
        c.messages_sent += frame.message_count()
        if frame.heartbeats or frame.heartbeat_responses:
            c.heartbeat_frames_sent += 1
        if not keepalive:
            # A keepalive covers the interval before it, not the one after.
            self._liveness.sent(to)
        if not self._transport.send(to, frame):
            c.send_failures += 1
            if frame.messages:
                self.failed.append((to, frame))

    def send_keepalives(self) -> None:
        """An empty frame to every peer that was sent nothing since the last tick."""
        for peer in self._liveness.take_idle_links():
            self.send(peer, Frame(self._node_id, peer), keepalive=True)

    def take_failed(self) -> list[tuple[int, Frame]]:
        """The refused frames kept so far (the list starts empty again)."""
        failed = self.failed
        self.failed = []
        return failed
