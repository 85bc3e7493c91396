"""Messages for groups a node does not host: tombstones and a bounded holding buffer."""

from __future__ import annotations

from collections import OrderedDict

from multiraft.raft.types import Message

__all__ = ["UnknownGroups"]


class UnknownGroups:
    """Tombstones of removed groups and messages held for groups not created yet.

    The buffer keeps at most ``max_groups`` groups and ``max_messages`` messages
    per group; when a new group does not fit, the group buffered longest ago is
    evicted. Memory therefore stays bounded however many unknown group ids arrive.
    """

    __slots__ = ("_buffer", "dropped", "max_groups", "max_messages", "tombstones")

    def __init__(self, max_groups: int, max_messages: int) -> None:
        self.max_groups = max_groups
        self.max_messages = max_messages
        self._buffer: OrderedDict[int, list[Message]] = OrderedDict()
        #: Groups removed from this node; their messages are dropped forever.
        self.tombstones: set[int] = set()
        #: Messages dropped because they did not fit the buffer.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def buffered_messages(self) -> int:
        """Messages currently held."""
        return sum(len(ms) for ms in self._buffer.values())

    def hold(self, group_id: int, m: Message) -> None:
        """Keep ``m`` until ``group_id`` is created, if there is room."""
        msgs = self._buffer.get(group_id)
        if msgs is None:
            if self.max_groups == 0 or self.max_messages == 0:
                self.dropped += 1
                return
            if len(self._buffer) >= self.max_groups:
                _, evicted = self._buffer.popitem(last=False)
                self.dropped += len(evicted)
            msgs = self._buffer[group_id] = []
        if len(msgs) >= self.max_messages:
            self.dropped += 1
            return
        msgs.append(m)

    def take(self, group_id: int) -> list[Message]:
        """The messages held for ``group_id`` (now removed from the buffer)."""
        buffer = self._buffer
        msgs = buffer.pop(group_id, None)
        if msgs is None:
            return []
        if not buffer:
            # A dict keeps the table of its largest size once emptied: after a
            # burst of many groups created at once, start over with a small one.
            self._buffer = OrderedDict()
        return msgs
