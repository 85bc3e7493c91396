"""Batches written with ``sync=False`` skip ``fdatasync`` and a crash may lose only them.

The coordinator writes a batch of commit index moves without a sync. The
durable engine must then call no ``fdatasync`` for it, make it durable with the
next synced batch (a new segment first syncs the old one), and after a power
loss recover every synced batch, losing at most the unsynced batches after the
last completed sync, without reporting the gap they leave as corruption.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import Entry, HardState
from storage.engine import DurableLogEngine
from storage.errors import EngineFailedError
from storage.records import BATCH_HEADER
from storage.recovery import segment_name
from storage.simulated_disk import SimulatedDisk, SimulatedFile

G = 7
#: Small segments: every few batches start a new one.
OPTIONS = {"segment_bytes": 2048, "preallocate": False, "durable_metadata": False}


class CountingFile:
    """A simulated file that counts its ``sync`` calls on its disk."""

    def __init__(self, inner: SimulatedFile, disk: SyncCountingDisk) -> None:
        self._inner = inner
        self._disk = disk

    def pwrite(self, data: bytes, offset: int) -> None:
        self._inner.pwrite(data, offset)

    def pread(self, size: int, offset: int) -> bytes:
        return self._inner.pread(size, offset)

    def sync(self) -> None:
        self._disk.file_syncs += 1
        self._inner.sync()

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)

    def allocate(self, size: int) -> None:
        self._inner.allocate(size)

    def size(self) -> int:
        return self._inner.size()

    def close(self) -> None:
        self._inner.close()


class SyncCountingDisk(SimulatedDisk):
    """A simulated disk counting ``sync`` calls on its files."""

    def __init__(self) -> None:
        super().__init__()
        self.file_syncs = 0

    def open(self, name: str, *, create: bool) -> CountingFile:  # type: ignore[override]
        return CountingFile(super().open(name, create=create), self)


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=b"x%d" % i) for i in range(first, last + 1)]


def synced(first: int, last: int, commit: int) -> WriteBatch:
    return WriteBatch([GroupWrite(G, entries(first, last), HardState(1, 1, commit))])


def commit_move(commit: int) -> WriteBatch:
    return WriteBatch([GroupWrite(G, hard_state=HardState(1, 1, commit))], sync=False)


def state(engine: DurableLogEngine) -> tuple[int, int]:
    """(last index, commit) of group G."""
    v = engine.storage(G)
    return v.last_index(), v.initial_state()[0].commit


def test_an_unsynced_batch_calls_no_fdatasync_and_a_synced_one_calls_one(tmp_path: Path) -> None:
    disk = SyncCountingDisk()
    engine = DurableLogEngine.open(str(tmp_path), files=disk, **OPTIONS)  # type: ignore[arg-type]
    try:
        engine.write(synced(1, 2, 0))  # the first segment: its file sync only
        assert (disk.file_syncs, engine.syncs, engine.unsynced_writes) == (1, 1, 0)
        engine.write(commit_move(1))
        engine.write(commit_move(2))
        assert (disk.file_syncs, engine.syncs, engine.unsynced_writes) == (1, 1, 2)
        assert state(engine) == (2, 2)
        engine.write(synced(3, 3, 2))
        assert (disk.file_syncs, engine.syncs, engine.unsynced_writes) == (2, 2, 2)
        assert engine.stats()["unsynced_writes"] == 2
        engine.write(commit_move(3))
    finally:
        engine.close()
    # Closing syncs what is still unsynced.
    assert disk.file_syncs == 3


def test_a_new_segment_first_syncs_the_unsynced_tail_of_the_old_one(tmp_path: Path) -> None:
    disk = SyncCountingDisk()
    engine = DurableLogEngine.open(str(tmp_path), files=disk, **OPTIONS)  # type: ignore[arg-type]
    engine.write(synced(1, 1, 0))
    seq = engine.segment_seqs()[-1]
    last = 1
    while True:
        engine.write(commit_move(last))
        before = disk.file_syncs
        engine.write(WriteBatch([GroupWrite(G, [Entry(1, last + 1, data=bytes(300))])]))
        last += 1
        rotated = engine.segment_seqs()[-1] != seq
        # One sync for the batch; on rotation one more, first, for the old
        # segment's unsynced commit move.
        assert disk.file_syncs == before + (2 if rotated else 1)
        if rotated:
            break
    crashed = disk.after_crash(random.Random(1))
    engine.close()
    engine = DurableLogEngine.open(str(tmp_path), files=crashed, **OPTIONS)  # type: ignore[arg-type]
    try:
        # The commit written without a sync before the rotation survived it.
        assert state(engine) == (last, last - 1)
        assert engine.corruption_found() == []
    finally:
        engine.close()


def test_power_loss_keeps_every_synced_batch_and_loses_at_most_unsynced_commits(
    tmp_path: Path,
) -> None:
    outcomes = set()
    for seed in range(200):
        rng = random.Random(seed)
        path = str(tmp_path / f"t{seed}")
        disk = SimulatedDisk()
        engine = DurableLogEngine.open(path, files=disk, **OPTIONS)  # type: ignore[arg-type]
        last = commit = durable_commit = 0
        # (last index, commit) states a crash may leave: from the last sync on.
        allowed: list[tuple[int, int]] = [(0, 0)]
        for _ in range(rng.randint(1, 25)):
            if last and rng.random() < 0.6:
                commit = rng.randint(commit, last)
                engine.write(commit_move(commit))
                allowed.append((last, commit))
            else:
                n = rng.randint(1, 4)
                engine.write(synced(last + 1, last + n, commit))
                last += n
                durable_commit = commit
                allowed = [(last, durable_commit)]
        in_flight = rng.random() < 0.5
        if in_flight:
            # One more synced batch in flight: the power fails during its sync.
            disk.crash_at = disk.ops + 2
            with contextlib.suppress(EngineFailedError):
                engine.write(synced(last + 1, last + 1, commit))
            allowed.append((last + 1, commit))
        crashed = disk.after_crash(rng)
        engine.close()
        engine = DurableLogEngine.open(path, files=crashed, **OPTIONS)  # type: ignore[arg-type]
        try:
            got = state(engine)
            assert got in allowed, f"seed {seed}: recovered {got}, allowed {allowed}"
            outcomes.add("latest" if got == allowed[-1] else "lost unsynced")
            assert engine.corruption_found() == [], f"seed {seed}: {engine.corruption_found()}"
            entries_kept = engine.storage(G).entries(1, got[0] + 1)
            assert entries_kept == entries(1, got[0]), f"seed {seed}"
        finally:
            engine.close()
    assert outcomes == {"latest", "lost unsynced"}


def test_damage_before_a_batch_written_after_a_sync_is_still_corruption(tmp_path: Path) -> None:
    disk = SimulatedDisk()
    engine = DurableLogEngine.open(str(tmp_path), files=disk, **OPTIONS)  # type: ignore[arg-type]
    engine.write(synced(1, 1, 0))
    damaged_at = engine.disk_bytes()
    engine.write(commit_move(1))
    engine.write(commit_move(1))  # written while the previous one was unsynced
    engine.write(synced(2, 2, 1))  # so is this one, but its sync returned...
    engine.write(synced(3, 3, 1))  # ...as this batch, written after it, proves
    name = segment_name(engine.segment_seqs()[-1])
    engine.close()
    data = bytearray(disk.contents(name))
    data[damaged_at + 40] ^= 0xFF
    disk.replace_contents(name, bytes(data))
    engine = DurableLogEngine.open(str(tmp_path), files=disk, **OPTIONS)  # type: ignore[arg-type]
    try:
        # Reported at the damaged record, right after its batch header.
        assert [e.offset for e in engine.corruption_found()] == [damaged_at + BATCH_HEADER]
        assert state(engine) == (3, 1)
    finally:
        engine.close()


def test_a_lost_unsynced_batch_before_later_unsynced_ones_is_a_torn_tail(tmp_path: Path) -> None:
    disk = SimulatedDisk()
    engine = DurableLogEngine.open(str(tmp_path), files=disk, **OPTIONS)  # type: ignore[arg-type]
    engine.write(synced(1, 2, 0))
    synced_end = engine.disk_bytes()
    engine.write(commit_move(1))
    engine.write(commit_move(2))  # carries SYNCED_UP_TO = synced_end
    name = segment_name(engine.segment_seqs()[-1])
    data = bytearray(disk.contents(name))
    engine.close()
    # As if the power failed before the close: the first commit move never reached
    # the disk (zeros), the second did.
    data[synced_end : synced_end + 16] = bytes(16)
    disk.replace_contents(name, bytes(data))
    engine = DurableLogEngine.open(str(tmp_path), files=disk, **OPTIONS)  # type: ignore[arg-type]
    try:
        assert engine.corruption_found() == []
        assert state(engine) == (2, 0)
        assert engine.torn_tails == [(name, synced_end)]
    finally:
        engine.close()
