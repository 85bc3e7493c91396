"""Node-level liveness of peers, judged from the stream of frames they send.

Every node sends each peer at least one frame per tick (an empty one when it
has nothing else to say), so a peer silent for ``timeout_ticks`` ticks is
judged dead. This replaces per-group election timers for quiesced groups.
"""

from __future__ import annotations

__all__ = ["PeerLiveness"]


class PeerLiveness:
    """Which peer nodes this node shares groups with, and which of them look dead."""

    __slots__ = ("_groups_per_peer", "_last_heard", "_sent", "dead", "timeout_ticks")

    def __init__(self, timeout_ticks: int) -> None:
        self.timeout_ticks = timeout_ticks
        self._groups_per_peer: dict[int, int] = {}
        self._last_heard: dict[int, int] = {}
        self._sent: set[int] = set()
        #: Peers currently judged dead.
        self.dead: set[int] = set()

    @property
    def peers(self) -> list[int]:
        """The peer nodes that share at least one group with this node."""
        return list(self._groups_per_peer)

    def add(self, peer: int, tick: int) -> None:
        """One more group shares ``peer``; a new peer counts as just heard from."""
        n = self._groups_per_peer.get(peer, 0)
        self._groups_per_peer[peer] = n + 1
        if n == 0:
            self._last_heard.setdefault(peer, tick)

    def remove(self, peer: int) -> None:
        """One group fewer shares ``peer``; forget it when none does."""
        n = self._groups_per_peer.get(peer, 0) - 1
        if n > 0:
            self._groups_per_peer[peer] = n
            return
        self._groups_per_peer.pop(peer, None)
        self._last_heard.pop(peer, None)
        self.dead.discard(peer)
        self._sent.discard(peer)

    def heard(self, peer: int, tick: int) -> None:
        """A frame from ``peer`` arrived during ``tick``."""
        self._last_heard[peer] = tick
        self.dead.discard(peer)

    def sent(self, peer: int) -> None:
        """A frame went to ``peer`` since the last tick."""
        self._sent.add(peer)

    def newly_dead(self, tick: int) -> list[int]:
        """Peers silent for longer than the timeout that were not dead before."""
        out = []
        limit = tick - self.timeout_ticks
        for peer in self._groups_per_peer:
            if peer not in self.dead and self._last_heard.get(peer, tick) < limit:
                self.dead.add(peer)
                out.append(peer)
        return out

    def take_idle_links(self) -> list[int]:
        """Peers sent nothing since the previous call (they need a keepalive frame)."""
        sent = self._sent
        idle = [p for p in self._groups_per_peer if p not in sent]
        self._sent = set()
        return idle
