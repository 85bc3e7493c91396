"""Power loss at every kind of crash point loses nothing acknowledged and accepts nothing torn.

Each trial runs a random workload on the engine over a simulated disk that
loses power at a random operation (a write, a sync, a segment rotation, a
compaction, a truncation, a garbage collection deleting or rewriting). The disk
then keeps a random part of what was not synced (torn and zeroed tails,
vanished new files, resurrected deleted ones). The reopened engine must hold
exactly the state after the last acknowledged step, or after the step in
flight (a batch is atomic), report no corruption, and keep working.

Some trials lose power a second time while the engine recovers. CI runs a few
hundred trials; ``pytest --runslow -m slow`` runs 10,000.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import Entry
from storage.engine import DurableLogEngine
from storage.errors import EngineFailedError
from storage.simulated_disk import SimulatedCrash, SimulatedDisk
from storage.sqlite_log import SqliteLogEngine
from test_engine_workload import apply_step, log_state, random_step

_STEPS = 30


def run_power_loss_trial(seed: int, path: str) -> str:
    """One trial; returns which kind of operation the power loss hit."""
    rng = random.Random(seed)
    options = {
        "segment_bytes": rng.choice([1024, 2048, 8192]),
        "gc_ratio": rng.choice([0.5, 1.0, 4.0]),
        "preallocate": rng.random() < 0.5,
        # The crashes are simulated on the segment files only.
        "durable_metadata": False,
    }
    disk = SimulatedDisk(crash_at=rng.randint(1, 110))
    ref = SqliteLogEngine.open(":memory:")
    engine = DurableLogEngine.open(path, files=disk, **options)  # type: ignore[arg-type]
    acked = pending = log_state(ref)
    hit = "after the last step"
    for _ in range(_STEPS):
        step = random_step(rng, ref, 4)
        apply_step(ref, step)
        pending = log_state(ref)
        try:
            apply_step(engine, step)
        except EngineFailedError as exc:
            assert isinstance(exc.__cause__, SimulatedCrash), f"seed {seed}: {exc!r}"
            hit = _crash_kind(exc)
            break
        acked = pending
    engine.close()
    crashed = disk.after_crash(rng)
    if rng.random() < 0.3:
        # Power fails again while recovering (cutting a torn tail, deleting files).
        crashed.crash_at = rng.randint(1, 3)
        try:
            DurableLogEngine.open(path, files=crashed, **options).close()  # type: ignore[arg-type]
        except SimulatedCrash:
            hit += " then during recovery"
        crashed.crash_at = None
        crashed = crashed.after_crash(rng)
    engine = DurableLogEngine.open(path, files=crashed, **options)  # type: ignore[arg-type]
    try:
        got = log_state(engine)
        assert got in (acked, pending), (
            f"seed {seed}: recovered state is neither the acknowledged nor the in-flight one"
        )
        assert engine.corruption_found() == [], f"seed {seed}: {engine.corruption_found()}"
        assert engine.corrupted_groups() == {}, f"seed {seed}"
        # The recovered log takes new writes and keeps them across a clean restart.
        probe = Entry(1, 1, data=b"after the crash")
        engine.write(WriteBatch([GroupWrite(99, entries=[probe])]))
        want = {**got, 99: log_state(engine)[99]}
    finally:
        engine.close()
    engine = DurableLogEngine.open(path, files=crashed, **options)  # type: ignore[arg-type]
    try:
        assert log_state(engine) == want, f"seed {seed}: state changed across a clean restart"
        assert engine.storage(99).entries(1, 2) == [probe], f"seed {seed}"
    finally:
        engine.close()
    return hit


def _crash_kind(exc: EngineFailedError) -> str:
    names = []
    for part in (exc, exc.__cause__):
        tb = part.__traceback__ if part is not None else None
        while tb is not None:
            names.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
    for kind in ("_relocate", "_delete_below", "remove_group"):
        if kind in names:
            return kind
    return names[-2]  # the disk operation that called tick()


def _trials(first_seed: int, count: int, tmp_path: Path) -> dict[str, int]:
    hits: dict[str, int] = {}
    for seed in range(first_seed, first_seed + count):
        kind = run_power_loss_trial(seed, str(tmp_path / f"t{seed}"))
        hits[kind] = hits.get(kind, 0) + 1
    return hits


def test_power_loss_at_random_points_keeps_acknowledged_state(tmp_path: Path) -> None:
    hits = _trials(1, 300, tmp_path)
    # Crashes landed on writes, syncs, new segments, garbage collection and removals.
    kinds = {kind.split(" ")[0] for kind in hits}
    for kind in ("pwrite", "sync", "open", "sync_dir", "_delete_below", "_relocate"):
        assert kind in kinds, hits
    assert any(kind.endswith("during recovery") for kind in hits), hits


@pytest.mark.slow
def test_power_loss_soak_ten_thousand_trials(tmp_path: Path) -> None:
    hits = _trials(100_000, 10_000, tmp_path)
    assert sum(hits.values()) == 10_000
