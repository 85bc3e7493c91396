"""Storage adapters for multiraft: the in-memory log and the durable log engine."""

from storage.memory import MemoryStorage

__all__ = ["MemoryStorage"]
