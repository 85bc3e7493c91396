"""Storage adapters for multiraft: the in-memory log and the durable log engine."""

from storage.memory import MemoryStorage
from storage.memory_engine import MemoryLogEngine

__all__ = ["MemoryLogEngine", "MemoryStorage"]
