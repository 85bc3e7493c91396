"""The interpreter settings a node process runs with."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator

import pytest

from multiraft.interpreter_settings import (
    GIL_SWITCH_INTERVAL,
    NODE_GC_THRESHOLDS,
    current_settings,
    freeze_start_up_objects,
    tune_for_node_process,
)

#: What ``tune_for_node_process`` leaves as the scheduling policy on this OS.
BATCH = "batch" if hasattr(os, "SCHED_BATCH") and hasattr(os, "sched_setscheduler") else ""


@pytest.fixture
def restored_interpreter() -> Iterator[None]:
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        if policy is not None:
            os.sched_setscheduler(0, policy, os.sched_param(0))


def test_tune_for_node_process_sets_switch_interval_and_gc_thresholds(
    restored_interpreter: None,
) -> None:
    settings = tune_for_node_process()
    assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL == 0.0005
    assert gc.get_threshold() == NODE_GC_THRESHOLDS == (50_000, 20, 100)
    assert settings.switch_interval == GIL_SWITCH_INTERVAL
    assert settings.gc_thresholds == NODE_GC_THRESHOLDS
    assert settings.scheduling_policy == BATCH


def test_without_batch_scheduling_the_policy_stays(restored_interpreter: None) -> None:
    before = current_settings().scheduling_policy
    assert before == ("other" if BATCH else "")
    settings = tune_for_node_process(batch_scheduling=False)
    assert settings.scheduling_policy == before


def test_threads_started_after_tuning_inherit_batch_scheduling(
    restored_interpreter: None,
) -> None:
    import threading

    tune_for_node_process()
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.append(current_settings().scheduling_policy))
    thread.start()
    thread.join()
    assert seen == [BATCH]


def test_tune_for_node_process_takes_other_values(restored_interpreter: None) -> None:
    settings = tune_for_node_process(0.002, (1000, 5, 7))
    assert (sys.getswitchinterval(), gc.get_threshold()) == (0.002, (1000, 5, 7))
    assert settings == current_settings()


@pytest.mark.parametrize(
    ("interval", "thresholds", "field"),
    [
        (0.0, NODE_GC_THRESHOLDS, "switch_interval"),
        (-1.0, NODE_GC_THRESHOLDS, "switch_interval"),
        (GIL_SWITCH_INTERVAL, (0, 10, 10), "gc_thresholds"),
        (GIL_SWITCH_INTERVAL, (700, 10), "gc_thresholds"),
    ],
)
def test_tune_for_node_process_rejects_bad_values_naming_them_and_changes_nothing(
    restored_interpreter: None, interval: float, thresholds: tuple[int, int, int], field: str
) -> None:
    before = current_settings()
    with pytest.raises(ValueError, match=field):
        tune_for_node_process(interval, thresholds)
    assert current_settings() == before


def test_tune_for_node_process_rejects_a_non_bool_batch_scheduling(
    restored_interpreter: None,
) -> None:
    before = current_settings()
    with pytest.raises(ValueError, match="batch_scheduling"):
        tune_for_node_process(batch_scheduling=1)  # type: ignore[arg-type]
    assert current_settings() == before


def test_freeze_start_up_objects_exempts_every_live_object(restored_interpreter: None) -> None:
    kept = [[i] for i in range(1000)]
    frozen = freeze_start_up_objects()
    assert frozen == gc.get_freeze_count() >= len(kept)
    collected = {id(o) for o in gc.get_objects()}
    assert all(gc.is_tracked(x) and id(x) not in collected for x in kept)
    assert current_settings().gc_frozen_objects == frozen
    gc.unfreeze()
    collected = {id(o) for o in gc.get_objects()}
    assert all(id(x) in collected for x in kept)
