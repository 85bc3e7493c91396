"""The event trace of a simulation run: a running hash, and readable lines on request.

Every observable step of a run (frames sent, writes made durable, entries
applied, faults, client operations) is recorded as a tuple of plain values. All
of them feed one BLAKE2b hash, so two runs with equal hashes took the same
steps in the same order at the same simulated times. Lines are kept only when
the trace is wanted (``keep_lines``), and only for the kinds worth reading.
"""

from __future__ import annotations

import hashlib

__all__ = ["EventTrace"]

#: Kinds recorded in the hash but not worth a readable line each.
_QUIET = frozenset({"frame", "write", "apply"})


class EventTrace:
    """Records events into a hash (always) and a list of lines (when asked)."""

    __slots__ = ("_hash", "clock", "events", "keep_lines", "lines", "verbose")

    def __init__(self, *, keep_lines: bool = False, verbose: bool = False) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self.keep_lines = keep_lines
        #: With ``keep_lines``, also keep the frequent kinds (frames, writes, applies).
        self.verbose = verbose
        self.lines: list[str] = []
        self.events = 0
        #: Returns the current simulated time; replaced by the simulator.
        self.clock = _no_clock

    def record(self, kind: str, *fields: object) -> None:
        """Add one event of ``kind`` with its ``fields`` (plain, reproducible values)."""
        now = self.clock()
        self.events += 1
        self._hash.update(repr((now, kind, fields)).encode())
        if self.keep_lines and (self.verbose or kind not in _QUIET):
            self.lines.append(f"{now:10.3f}  {kind:<10} " + " ".join(map(str, fields)))

    def digest(self) -> str:
        """Hex digest of everything recorded so far."""
        return self._hash.hexdigest()


def _no_clock() -> float:
    return 0.0
