"""multiraft: thousands of Raft consensus groups per node, on trio."""

__all__: list[str] = []
