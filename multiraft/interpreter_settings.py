"""CPython settings for a process whose main job is hosting a node.

Three interpreter defaults cost a busy node its latency tail; ``multiraft
node`` changes them at start-up (:func:`tune_for_node_process`), and a program
embedding a node may call the same function. They are process-wide, so the
library never changes them on its own (``open_node`` leaves them alone).

* **GIL switch interval** (CPython's default 5 ms). The durable engine writes
  in one worker thread, which drops the GIL for ``write`` and ``fdatasync``
  and needs it back after each. While the event loop thread runs Python code
  (stepping messages, answering requests), the writer waits for it up to a
  whole interval each time: on a loopback leader at 8,800 commits/s a ready
  cycle's write took 6.6 ms at the median for a 0.25 ms ``fdatasync``, and
  1.25 ms with a 0.5 ms interval. Each cycle waits for its write, so every
  commit pays it two or three times (leader and follower cycles).
* **Objects alive after start-up** (modules, classes, the event loop's
  internals): full collections visit every one of them again and again,
  although they live until exit. :func:`gc.freeze` moves them out of the
  collector's generations once the node is up.
* **Collection thresholds** (700, 10, 10). A node allocates entries,
  messages and frames at a high rate and keeps many of them (the log's entries
  until a snapshot), so the default thresholds trigger a full collection of
  every log entry about once a second under load (17 to 44 ms each on a loopback
  leader at 13,000 commits/s), which is the tail. :data:`NODE_GC_THRESHOLDS` makes full
  collections rare (a young generation of 50,000 objects; a full collection
  after 100 middle ones); cycles are still collected.
"""

from __future__ import annotations

import gc
import sys

import attrs

__all__ = [
    "GIL_SWITCH_INTERVAL",
    "NODE_GC_THRESHOLDS",
    "InterpreterSettings",
    "current_settings",
    "freeze_start_up_objects",
    "tune_for_node_process",
]

#: Seconds between the GIL hand-overs CPython forces (``sys.setswitchinterval``).
GIL_SWITCH_INTERVAL = 0.0005

#: ``gc.set_threshold`` for a node process: young, middle, full (see the module docs).
NODE_GC_THRESHOLDS = (50_000, 20, 100)


@attrs.frozen
class InterpreterSettings:
    """The process's interpreter settings a node's latency depends on."""

    #: ``sys.getswitchinterval()``, seconds.
    switch_interval: float
    #: ``gc.get_threshold()``.
    gc_thresholds: tuple[int, ...]
    #: Objects :func:`gc.freeze` moved out of the collector's reach.
    gc_frozen_objects: int


def current_settings() -> InterpreterSettings:
    """What the process runs with now."""
    return InterpreterSettings(
        sys.getswitchinterval(), tuple(gc.get_threshold()), gc.get_freeze_count()
    )


def freeze_start_up_objects() -> int:
    """Collect garbage, then exempt every surviving object from later collections.

    Call once the node is up (imports done, groups recovered). Returns how many
    objects are frozen. Frozen objects that die later are freed as usual when
    their reference count drops; only cycles among them wait for ``gc.unfreeze``.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def tune_for_node_process(
    switch_interval: float = GIL_SWITCH_INTERVAL,
    gc_thresholds: tuple[int, int, int] = NODE_GC_THRESHOLDS,
) -> InterpreterSettings:
    """Set the switch interval and collection thresholds for a node process.

    Raises ValueError naming the argument when one is out of range. Returns
    the settings in force afterwards. Call :func:`freeze_start_up_objects` as
    well once the node is up.
    """
    if not switch_interval > 0:
        raise ValueError(f"switch_interval must be > 0 seconds, got {switch_interval!r}")
    if len(gc_thresholds) != 3 or any(t < 1 for t in gc_thresholds):
        raise ValueError(f"gc_thresholds must be three integers >= 1, got {gc_thresholds!r}")
    sys.setswitchinterval(switch_interval)
    gc.set_threshold(*gc_thresholds)
    return current_settings()
