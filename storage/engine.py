"""The durable log engine: one segmented write-ahead log shared by all groups of a node.

Layout of a data directory::

    LOCK                 held (flock) while an engine has the directory open
    meta.sqlite3         metadata (see storage.metadata)
    0000000000000001.seg segment files (see storage.records for the format)
    ...

``write(batch)`` encodes the records of every group in the batch into one
buffer, writes it with one ``pwrite`` and makes it durable with one
``fdatasync`` (plus a directory ``fsync`` when a segment file was created),
then updates the in-memory index under the engine lock. A batch with
``sync=False`` (commit index moves only) skips the ``fdatasync``: it becomes
durable with the next synced batch, and before anything is written to a new
segment; a crash before then may lose it and the unsynced batches after it,
never a synced one (see :mod:`storage.segments` and :mod:`storage.recovery`).
Closing syncs what is still unsynced. A batch goes whole
into one segment; when it does not fit the current one, a new segment starts
(space is preallocated with ``posix_fallocate`` a few MiB ahead of the write
offset when ``preallocate`` is set).

Snapshots are stored inside the log (metadata and data in one record); the
index keeps only their location, so ``snapshot()`` reads them back.

Threads: ``write``, ``remove_group``, ``collect_garbage`` and ``close`` run one
at a time (the writer lock). Their I/O happens without the engine lock; the
index is updated under it once the sync returned, and the group views take it
for every read, so a reader sees a batch entirely or not at all.

Registry: a new group is recorded in the metadata lazily (at the next segment
rotation or at close); its records in the log prove it exists and opening
reconciles the two. A removed group that comes back loses its tombstone
before its first write is logged. Garbage collection runs after a write that
started a new segment (see :mod:`storage.gc`).

Failures: any error while writing, syncing, creating or deleting files leaves
the engine *failed*: every later call raises :class:`EngineFailedError`. A
failed ``fsync`` is never retried (the kernel may have dropped the dirty
pages), and nothing is acknowledged after one.

Corruption found when opening (see :mod:`storage.recovery`) does not stop the
engine by default: it is recorded in the metadata, the affected groups are
reported by :meth:`DurableLogEngine.corrupted_groups` (the coordinator keeps
them from voting or acknowledging), and they stay flagged across restarts
until repaired by an incoming snapshot. With ``strict=True``, ``open`` raises
the :class:`CorruptionError` instead.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

from multiraft.ports import WriteBatch
from multiraft.raft.types import Entry
from storage.errors import (
    CorruptionError,
    EngineClosedError,
    EngineFailedError,
    EngineLockedError,
)
from storage.files import FileLayer, OsFileLayer
from storage.gc import decide_collection
from storage.group_log import GroupLog
from storage.metadata import METADATA_FILE, Metadata
from storage.records import (
    BatchBuilder,
    RecordType,
    entries_payload,
    group_reset_payload,
)
from storage.recovery import recover, segment_name
from storage.segments import SegmentLog
from storage.write_path import EncodedBatch

__all__ = ["DurableLogEngine"]


#: Entries per record when garbage collection rewrites a group's log.
_RELOCATE_CHUNK = 4096


class DurableLogEngine:
    """The ``LogEngine`` port over a segmented write-ahead log (see the module docstring).

    Counters: ``writes`` counts log writes (batches), ``syncs`` their
    ``fdatasync`` calls (one per synced write, plus one when a new segment or
    closing finds unsynced bytes), ``unsynced_writes`` the writes made without
    one, ``dir_syncs`` directory syncs, ``bytes_written`` log bytes. ``reopen_seconds`` is how
    long :meth:`open` took to recover; ``last_write_seconds`` how long the last
    synced :meth:`write` took (the coordinator's ``in_engine`` write durations).
    """

    def __init__(
        self,
        path: str,
        files: FileLayer,
        metadata: Metadata,
        lock_fd: int,
        *,
        segment_bytes: int,
        preallocate: bool,
        tail_cache_entries: int,
        gc_ratio: float,
    ) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.tail_cache_entries = tail_cache_entries
        self._files = files
        self._meta = metadata
        self._lock_fd = lock_fd
        self._writer_lock = threading.Lock()
        self._segment_bytes = segment_bytes
        self._preallocate = preallocate
        self._gc_ratio = gc_ratio
        self._groups: dict[int, GroupLog] = {}
        self._registered: set[int] = set()
        # Registered in memory, not yet in the metadata (see write()).
        self._unsaved_registry: set[int] = set()
        self._tombstones: set[int] = set()
        self._log = SegmentLog(
            files, self.lock, [], 0, segment_bytes=segment_bytes, preallocate=preallocate
        )
        self._failed: BaseException | None = None
        self._closed = False
        self._corrupt: dict[int, CorruptionError] = {}
        self._corrupt_pins: dict[int, int] = {}
        self._found: list[CorruptionError] = []
        self._in_gc = False
        self._rotated_since_gc = False
        self.segments_deleted = 0
        self.groups_relocated = 0
        self.reopen_seconds = 0.0
        self.last_write_seconds = 0.0
        self.torn_tails: list[tuple[str, int]] = []

    # -- opening -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str,
        *,
        segment_bytes: int = 64 << 20,
        preallocate: bool = True,
        tail_cache_entries: int = 256,
        gc_ratio: float = 2.0,
        strict: bool = False,
        files: FileLayer | None = None,
        durable_metadata: bool = True,
    ) -> DurableLogEngine:
        """Open (creating if needed) the engine in directory ``path`` and recover it.

        ``files`` replaces the real segment files (tests pass a simulated
        disk); the metadata database and the lock always live in ``path``.
        ``durable_metadata=False`` skips the metadata database's fsyncs: only
        for tests whose crashes are simulated on ``files``.
        Raises :class:`EngineLockedError` if the directory is in use,
        :class:`~storage.errors.FormatVersionError` if it was written by a newer
        format, and :class:`CorruptionError` when ``strict`` and damage is found.
        """
        started = time.perf_counter()
        os.makedirs(path, exist_ok=True)
        lock_fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise EngineLockedError(f"{path} is in use by another log engine") from None
        try:
            metadata = Metadata(os.path.join(path, METADATA_FILE), durable=durable_metadata)
        except BaseException:
            os.close(lock_fd)
            raise
        engine = cls(
            path,
            files if files is not None else OsFileLayer(path),
            metadata,
            lock_fd,
            segment_bytes=segment_bytes,
            preallocate=preallocate,
            tail_cache_entries=tail_cache_entries,
            gc_ratio=gc_ratio,
        )
        try:
            engine._recover()
        except BaseException:
            engine._release()
            raise
        engine.reopen_seconds = time.perf_counter() - started
        if strict and engine._found:
            engine._release()
            raise engine._found[0]
        return engine

    def _recover(self) -> None:
        meta = self._meta
        result = recover(self._files, meta.first_live_segment, self._new_group)
        self.torn_tails = result.torn_tails
        self._log = SegmentLog(
            self._files,
            self.lock,
            result.segments,
            result.write_seqno,
            segment_bytes=self._segment_bytes,
            preallocate=self._preallocate,
        )
        live = meta.live_groups()
        removed = meta.removed_groups()
        # Removal is logged before it is recorded in the metadata: finish it.
        finish_removal = sorted(result.removed & live)
        if finish_removal:
            meta.tombstone(finish_removal)
            live -= set(finish_removal)
            removed |= set(finish_removal)
        groups = {gid: g for gid, g in result.groups.items() if gid not in removed}
        unregistered = sorted(set(groups) - live)
        if unregistered:
            meta.register(unregistered)
            live |= set(unregistered)
        self._groups = groups
        self._registered = live
        self._tombstones = removed - live
        known = meta.known_corruption()
        everyone = sorted(live | set(groups))
        for ev in result.events:
            affected = everyone if ev.all_groups else sorted(ev.groups)
            err = CorruptionError(
                segment_name(ev.seq), ev.offset, affected, ev.reason, all_groups=ev.all_groups
            )
            self._found.append(err)
            if (ev.seq, ev.offset) not in known:
                meta.record_corruption(ev.seq, ev.offset, ev.reason, affected)
        by_place: dict[tuple[int, int, str], list[int]] = {}
        for gid, seq, offset, reason in meta.corrupt_groups():
            by_place.setdefault((seq, offset, reason), []).append(gid)
            self._corrupt_pins[gid] = seq
        for (seq, offset, reason), gids in by_place.items():
            err = CorruptionError(segment_name(seq), offset, gids, reason)
            for gid in gids:
                self._corrupt[gid] = err

    def _new_group(self, group_id: int) -> GroupLog:
        return GroupLog(group_id, self)

    # -- state checks ----------------------------------------------------------

    def check_usable(self) -> None:
        """Raise :class:`EngineClosedError` or :class:`EngineFailedError` if not usable."""
        if self._closed:
            raise EngineClosedError("the log engine is closed")
        if self._failed is not None:
            raise EngineFailedError(f"the log engine failed earlier: {self._failed!r}")

    def _fail(self, exc: BaseException) -> EngineFailedError:
        self._failed = exc
        return EngineFailedError(f"log write failed, the engine stops: {exc!r}")

    # -- the LogEngine port ------------------------------------------------------

    def storage(self, group_id: int) -> GroupLog:
        """The raft ``Storage`` view of ``group_id`` (created empty when new)."""
        with self.lock:
            self.check_usable()
            g = self._groups.get(group_id)
            if g is None:
                g = self._groups[group_id] = GroupLog(group_id, self)
            return g

    def group_ids(self) -> list[int]:
        """Groups with persisted state (written at least once and not removed), ascending."""
        with self.lock:
            self.check_usable()
            return sorted(self._registered)

    def write(self, batch: WriteBatch) -> None:
        """Persist every group's writes with one write and one ``fdatasync`` (none if
        ``batch.sync`` is False).

        The whole batch is checked first (see :mod:`storage.group_rules`): an
        invalid group write raises and nothing of the batch is persisted. A
        group may appear once per batch. An empty batch does nothing.
        """
        began = time.perf_counter()
        with self._writer_lock:
            self.check_usable()
            if not batch.groups:
                return
            encoded = EncodedBatch(batch, self._groups, self._registered, self._new_group)
            seen = encoded.group_ids
            new = [gid for gid in seen if gid not in self._registered]
            # A new group is registered in the metadata lazily (its records in the
            # log prove it exists; opening reconciles). A removed group coming back
            # must lose its tombstone first, or a restart would drop it again.
            revived = [gid for gid in new if gid in self._tombstones]
            if revived:
                try:
                    self._meta.register(revived)
                except BaseException as exc:
                    raise self._fail(exc) from exc
                self._tombstones.difference_update(revived)
            seq, base = self._commit(encoded.builder, batch.sync)
            with self.lock:
                snapshotted = encoded.apply(self._groups, seq, base)
                repaired = [gid for gid in snapshotted if gid in self._corrupt]
                self._registered.update(new)
                self._unsaved_registry.update(new)
                for gid in repaired:
                    del self._corrupt[gid]
                    del self._corrupt_pins[gid]
            if repaired:
                try:
                    self._meta.clear_corrupt(repaired)
                except BaseException as exc:
                    raise self._fail(exc) from exc
            if self._rotated_since_gc and not self._in_gc:
                self._collect_locked()
            if batch.sync:
                self.last_write_seconds = time.perf_counter() - began

    def remove_group(self, group_id: int) -> None:
        """Durably drop all state of ``group_id`` (nothing happens if it has none)."""
        with self._writer_lock:
            self.check_usable()
            if group_id not in self._registered and group_id not in self._groups:
                return
            builder = BatchBuilder()
            builder.add(RecordType.REMOVE_GROUP, group_id, b"")
            self._commit(builder)
            try:
                self._meta.tombstone([group_id])
            except BaseException as exc:
                raise self._fail(exc) from exc
            self._tombstones.add(group_id)
            with self.lock:
                g = self._groups.pop(group_id, None)
                if g is not None:
                    g.clear()
                self._registered.discard(group_id)
                self._unsaved_registry.discard(group_id)
                self._corrupt.pop(group_id, None)
                self._corrupt_pins.pop(group_id, None)

    def close(self) -> None:
        """Release files and the directory lock; later calls raise :class:`EngineClosedError`.

        Also works on a failed engine (it only releases resources).
        """
        with self._writer_lock:
            if self._closed:
                return
            if self._failed is None:
                try:
                    self._log.sync()
                except BaseException as exc:
                    self._release()
                    raise self._fail(exc) from exc
                self._save_registry()
            self._release()

    def _release(self) -> None:
        self._closed = True
        self._log.close()
        self._meta.close()
        os.close(self._lock_fd)

    # -- beyond the port -------------------------------------------------------

    @property
    def metadata(self) -> Metadata:
        """The metadata database (node id, cluster id, registry)."""
        return self._meta

    def corrupted_groups(self) -> dict[int, CorruptionError]:
        """Groups flagged corrupt (not to vote or acknowledge until repaired by a snapshot)."""
        with self.lock:
            return dict(self._corrupt)

    def corruption_found(self) -> list[CorruptionError]:
        """Every damage found when this engine opened (including already known ones)."""
        return list(self._found)

    def removed_groups(self) -> set[int]:
        """Tombstones of removed groups."""
        self.check_usable()
        return self._meta.removed_groups()

    @property
    def writes(self) -> int:
        """Log writes so far (each one batch, synced or not)."""
        return self._log.writes

    @property
    def syncs(self) -> int:
        """``fdatasync`` calls on the log so far (see the class docstring)."""
        return self._log.syncs

    @property
    def unsynced_writes(self) -> int:
        """Log writes made without ``fdatasync`` (batches with ``sync=False``)."""
        return self._log.unsynced_writes

    @property
    def dir_syncs(self) -> int:
        """Directory syncs so far (segment files created or deleted)."""
        return self._log.dir_syncs

    @property
    def bytes_written(self) -> int:
        """Log bytes written so far."""
        return self._log.bytes_written

    def segment_seqs(self) -> list[int]:
        """Sequence numbers of the live segments, oldest first."""
        with self.lock:
            return self._log.seqs()

    def disk_bytes(self) -> int:
        """Bytes of log data in the live segments."""
        with self.lock:
            return sum(self._log.sizes().values())

    def stats(self) -> dict[str, int]:
        """Counters and sizes."""
        with self.lock:
            return {
                "writes": self.writes,
                "syncs": self.syncs,
                "unsynced_writes": self.unsynced_writes,
                "dir_syncs": self.dir_syncs,
                "bytes_written": self.bytes_written,
                "segments": len(self._log.seqs()),
                "disk_bytes": sum(self._log.sizes().values()),
                "segments_deleted": self.segments_deleted,
                "groups_relocated": self.groups_relocated,
                "groups": len(self._registered),
                "corrupted_groups": len(self._corrupt),
            }

    def collect_garbage(self) -> int:
        """Delete garbage segments now, rewriting slow groups forward; returns segments deleted."""
        with self._writer_lock:
            self.check_usable()
            return self._collect_locked()

    def read_payload(self, seq: int, offset: int, length: int) -> bytes:
        """A record's payload read from its segment, both checksums verified."""
        return self._log.read_payload(seq, offset, length)

    # -- writing -------------------------------------------------------------------

    def _commit(self, builder: BatchBuilder, sync: bool = True) -> tuple[int, int]:
        """Write one batch (durably if ``sync``); returns its segment and the offset its
        body offsets add to."""
        try:
            seq, base, rotated = self._log.append(builder, sync)
        except BaseException as exc:
            raise self._fail(exc) from exc
        if rotated:
            self._rotated_since_gc = True
        return seq, base

    # -- garbage collection ------------------------------------------------------------

    def _save_registry(self) -> None:
        if not self._unsaved_registry:
            return
        try:
            self._meta.register(sorted(self._unsaved_registry))
        except BaseException as exc:
            raise self._fail(exc) from exc
        self._unsaved_registry.clear()

    def _collect_locked(self) -> int:
        self._save_registry()
        self._rotated_since_gc = False
        self._in_gc = True
        try:
            deleted = 0
            for _ in range(len(self._log.seqs()) + 1):
                active_seq = self._log.active_seq
                if active_seq is None:
                    break
                decision = decide_collection(
                    list(self._groups.values()),
                    self._corrupt_pins,
                    self._log.sizes(),
                    active_seq,
                    self._segment_bytes,
                    self._gc_ratio,
                )
                deleted += self._delete_below(decision.horizon)
                if not decision.relocate:
                    break
                self._relocate(decision.relocate)
                self._rotated_since_gc = False
            return deleted
        finally:
            self._in_gc = False

    def _relocate(self, group_ids: list[int]) -> None:
        builder = BatchBuilder()
        planned: list[tuple[GroupLog, list[tuple[int, int, int]], list[Entry]]] = []
        for gid in group_ids:
            g = self._groups[gid]
            recs: list[tuple[int, int, int]] = []
            payload = group_reset_payload(
                g.dummy_index, g.dummy_term, g.hard_state, g.conf_override
            )
            recs.append(
                (
                    RecordType.GROUP_RESET,
                    builder.add(RecordType.GROUP_RESET, gid, payload),
                    len(payload),
                )
            )
            if g.snap_loc is not None:
                snap = self.read_payload(*g.snap_loc)
                recs.append(
                    (
                        RecordType.SNAPSHOT_STORE,
                        builder.add(RecordType.SNAPSHOT_STORE, gid, snap),
                        len(snap),
                    )
                )
            entries = g.all_entries()
            for k in range(0, len(entries), _RELOCATE_CHUNK):
                payload = entries_payload(entries[k : k + _RELOCATE_CHUNK])
                recs.append(
                    (
                        RecordType.ENTRIES,
                        builder.add(RecordType.ENTRIES, gid, payload),
                        len(payload),
                    )
                )
            planned.append((g, recs, entries))
        seq, base = self._commit(builder)
        with self.lock:
            for g, recs, entries in planned:
                snap_meta = g.snap_meta
                k = 0
                for rtype, off, plen in recs:
                    loc = (seq, base + off, plen)
                    if rtype == RecordType.GROUP_RESET:
                        g.reset(g.dummy_index, g.dummy_term, g.hard_state, g.conf_override, seq)
                    elif rtype == RecordType.SNAPSHOT_STORE:
                        assert snap_meta is not None
                        g.store_snapshot(snap_meta, loc)
                    else:
                        chunk = entries[k : k + _RELOCATE_CHUNK]
                        g.append(chunk[0].index, [e.term for e in chunk], chunk, loc)
                        k += _RELOCATE_CHUNK
        self.groups_relocated += len(planned)

    def _delete_below(self, horizon: int) -> int:
        if not any(seq < horizon for seq in self._log.seqs()):
            return 0
        try:
            # Recorded first, so that a crash in between still ends in deletion.
            self._meta.first_live_segment = horizon
            deleted = self._log.delete_below(horizon)
        except BaseException as exc:
            raise self._fail(exc) from exc
        self.segments_deleted += deleted
        return deleted
