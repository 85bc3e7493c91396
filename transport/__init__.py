"""Transport adapters for multiraft: the in-memory network and TCP on trio."""

__all__: list[str] = []
