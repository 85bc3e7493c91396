"""Errors of the durable log engine."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CorruptionError",
    "EngineClosedError",
    "EngineFailedError",
    "EngineLockedError",
    "FormatVersionError",
    "LogEngineError",
]


class LogEngineError(Exception):
    """Base class of the errors raised by the durable log engine."""


class CorruptionError(LogEngineError):
    """Bytes that were once durable no longer read back as written.

    ``segment`` and ``offset`` say where; ``groups`` lists the groups whose
    state may be incomplete (``all_groups`` is true when the damaged bytes
    cannot tell which groups they belonged to, so every group is affected).
    """

    def __init__(
        self,
        segment: str,
        offset: int,
        groups: Iterable[int],
        reason: str,
        *,
        all_groups: bool = False,
    ) -> None:
        self.segment = segment
        self.offset = offset
        self.groups = tuple(sorted(set(groups)))
        self.all_groups = all_groups
        self.reason = reason
        which = "all groups" if all_groups else f"groups {list(self.groups)}"
        super().__init__(f"corrupt log in segment {segment} at offset {offset} ({which}): {reason}")


class EngineFailedError(LogEngineError):
    """A write or sync failed earlier; the engine refuses every call from then on.

    A failed ``fsync`` may have dropped dirty pages, so retrying it could report
    success for data that is gone: the only safe reaction is to stop.
    """


class EngineClosedError(LogEngineError, RuntimeError):
    """The engine was closed."""


class EngineLockedError(LogEngineError):
    """Another process (or engine) has the data directory open."""


class FormatVersionError(LogEngineError):
    """The data directory was written by a newer format than this code understands."""
