"""Handing the C heap's free pages back to the system after a large folding wave.

When thousands of replicas fold their raft members away at once, the memory
they free inside the C library's heap (the blocks CPython's small-object
allocator does not serve: dict tables, long lists, byte strings) stays reserved
by the process: glibc gives back only the top of its heap on its own.
``malloc_trim`` releases the free pages in the middle too. It is called once a
wave of at least :data:`TRIM_AFTER_FOLDS` folds is over, so a steady trickle of
folds never pays for it. Where the C library has no ``malloc_trim`` (not glibc)
the trimmer does nothing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

__all__ = ["LONG_WAVE_FACTOR", "TRIM_AFTER_FOLDS", "HeapTrimmer", "malloc_trim"]

#: Folds since the last trim after which the end of a folding wave trims the heap.
TRIM_AFTER_FOLDS = 4096

#: A wave that never ends (replicas keep quiescing while others fold) still trims
#: after this many times :data:`TRIM_AFTER_FOLDS` folds.
LONG_WAVE_FACTOR = 16


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: fn(0)


class HeapTrimmer:
    """Counts folded replicas and trims the heap when a large wave of them ends.

    ``trim`` is the call that releases free memory (default: :func:`malloc_trim`;
    None: never trim). ``trims`` counts the calls made.
    """

    __slots__ = ("_trim", "folds", "threshold", "trims")

    def __init__(
        self,
        trim: Callable[[], object] | None,
        threshold: int = TRIM_AFTER_FOLDS,
    ) -> None:
        self._trim = trim
        self.threshold = threshold
        #: Replicas folded since the last trim.
        self.folds = 0
        self.trims = 0

    def wave_ended(self, folded: int, more_to_come: bool) -> bool:
        """``folded`` more replicas folded; ``more_to_come`` says others are still
        waiting to fold. True when a wave large enough to trim after is over, or
        went on for :data:`LONG_WAVE_FACTOR` times that long (the count starts
        again): the caller drops what it can, then calls :meth:`trim`."""
        folds = self.folds = self.folds + folded
        if folds < self.threshold:
            return False
        if more_to_come and folds < LONG_WAVE_FACTOR * self.threshold:
            return False
        self.folds = 0
        return True

    def trim(self) -> None:
        """Give the C heap's free pages back to the system (if it can)."""
        if self._trim is not None:
            self._trim()
            self.trims += 1
