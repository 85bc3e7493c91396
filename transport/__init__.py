"""Transport adapters for multiraft: the in-memory network and TCP on trio."""

from transport.memory import MemoryNetwork, MemoryTransport

__all__ = ["MemoryNetwork", "MemoryTransport"]
