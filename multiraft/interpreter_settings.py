"""CPython and scheduler settings for a process whose main job is hosting a node.

Three interpreter defaults and one of the OS scheduler cost a busy node its
latency tail; ``multiraft node`` changes them at start-up
(:func:`tune_for_node_process`), and a program embedding a node may call the
same function. They are process-wide, so the library never changes them on
its own (``open_node`` leaves them alone).

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
* **Scheduling policy** (Linux; ``SCHED_OTHER`` by default). A node wakes
  another process with every frame it sends and its storage thread with every
  write; when they share a core, the woken task preempts the waker, which then
  waits in the middle of its ready cycle (a loopback ``send`` took 0.2 to
  0.8 ms). Under ``SCHED_BATCH`` a woken task does not preempt: it runs when
  the waker blocks, which a node does at its next wait. Loopback, one group at
  12,000 commits/s (half of peak), alternating runs on a quiet two-core VM:
  p99 12.5 ms against 15.1 ms at the median of seven rounds (lower in six),
  and fewer requests sent late by the load generator. Threads inherit the
  policy from the thread that starts them, so tune before starting threads.
"""

from __future__ import annotations

import contextlib
import gc
import os
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
    #: The calling thread's scheduling policy: ``"batch"``, ``"other"`` (the
    #: default), ``"unknown"`` for any other, ``""`` where the OS does not say.
    scheduling_policy: str = ""


def current_settings() -> InterpreterSettings:
    """What the process runs with now."""
    return InterpreterSettings(
        sys.getswitchinterval(),
        tuple(gc.get_threshold()),
        gc.get_freeze_count(),
        _scheduling_policy(),
    )


def _scheduling_policy() -> str:
    get = getattr(os, "sched_getscheduler", None)
    if get is None:
        return ""
    policy = get(0)
    if policy == getattr(os, "SCHED_BATCH", None):
        return "batch"
    if policy == getattr(os, "SCHED_OTHER", None):
        return "other"
    return "unknown"


def _set_batch_scheduling() -> None:
    """``SCHED_BATCH`` for the calling thread where the OS has it (Linux)."""
    setter = getattr(os, "sched_setscheduler", None)
    batch = getattr(os, "SCHED_BATCH", None)
    if setter is None or batch is None:
        return
    # Leaving SCHED_OTHER for SCHED_BATCH needs no privilege; a refusal (a
    # sandbox, a real-time policy set by the operator) leaves the policy as is.
    with contextlib.suppress(OSError):
        setter(0, batch, os.sched_param(0))


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
    batch_scheduling: bool = True,
) -> InterpreterSettings:
    """Set the switch interval, collection thresholds and (with
    ``batch_scheduling``, on Linux) ``SCHED_BATCH`` for a node process.

    Raises ValueError naming the argument when one is out of range. Returns
    the settings in force afterwards. Call it before the process starts
    threads (they inherit the scheduling policy), and call
    :func:`freeze_start_up_objects` as well once the node is up.
    """
    if not switch_interval > 0:
        raise ValueError(f"switch_interval must be > 0 seconds, got {switch_interval!r}")
    if len(gc_thresholds) != 3 or any(t < 1 for t in gc_thresholds):
        raise ValueError(f"gc_thresholds must be three integers >= 1, got {gc_thresholds!r}")
    if not isinstance(batch_scheduling, bool):
        raise ValueError(f"batch_scheduling must be a bool, got {batch_scheduling!r}")
    sys.setswitchinterval(switch_interval)
    gc.set_threshold(*gc_thresholds)
    if batch_scheduling:
        _set_batch_scheduling()
    return current_settings()
