"""The durable log engine: one segmented write-ahead log shared by all groups of a node.

Layout of a data directory::

    LOCK                 held (flock) while an engine has the directory open
    meta.sqlite3         metadata (see storage.metadata)
    0000000000000001.seg segment files (see storage.records for the format)
    ...

``write(batch)`` encodes the records of every group in the batch into one
buffer, writes it with one ``pwrite`` and makes it durable with one
``fdatasync`` (plus a directory ``fsync`` when a segment file was created),
then updates the in-memory index under the engine lock. A batch goes whole
into one segment; when it does not fit the current one, a new segment starts
(space is preallocated with ``posix_fallocate`` a few MiB ahead of the write
offset when ``preallocate`` is set).

Snapshots are stored inside the log (metadata and data in one record); the
index keeps only their location, so ``snapshot()`` reads them back.

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
from collections.abc import Sequence

from multiraft.ports import WriteBatch
from multiraft.raft.types import Entry, HardState
from storage.errors import (
    CorruptionError,
    EngineClosedError,
    EngineFailedError,
    EngineLockedError,
)
from storage.files import FileLayer, OsFileLayer
from storage.gc import decide_collection
from storage.group_log import GroupLog
from storage.group_rules import GroupPlan, plan_group_write
from storage.metadata import METADATA_FILE, Metadata
from storage.records import (
    BatchBuilder,
    RecordType,
    compact_payload,
    conf_state_payload,
    entries_payload,
    entry_set_payload,
    group_reset_payload,
    hard_state_payload,
    hard_state_set_payload,
    snapshot_payload,
    truncate_payload,
)
from storage.recovery import recover, segment_name
from storage.segments import SegmentLog

__all__ = ["DurableLogEngine"]

#: A plain append of several entries: group, entries, payload offset and length.
_Append = tuple[GroupLog, Sequence[Entry], int, int]
#: Groups per ``ENTRY_SET``/``HARD_STATE_SET`` record: damage to one names at most these.
_SET_CHUNK = 256

#: Entries per record when garbage collection rewrites a group's log.
_RELOCATE_CHUNK = 4096


class DurableLogEngine:
    """The ``LogEngine`` port over a segmented write-ahead log (see the module docstring).

    Counters: ``writes`` and ``syncs`` count durable log writes and their
    ``fdatasync`` calls (always equal: one sync per write), ``dir_syncs``
    directory syncs, ``bytes_written`` log bytes. ``reopen_seconds`` is how
    long :meth:`open` took to recover.
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
        """Persist every group's writes with one write and one ``fdatasync``.

        The whole batch is checked first (see :mod:`storage.group_rules`): an
        invalid group write raises and nothing of the batch is persisted. A
        group may appear once per batch. An empty batch does nothing.
        """
        with self._writer_lock:
            self.check_usable()
            if not batch.groups:
                return
            builder = BatchBuilder()
            planned: list[tuple[GroupPlan, list[tuple[int, int, int]], GroupLog]] = []
            appends: list[_Append] = []
            one_logs: list[GroupLog] = []
            one_ids: list[int] = []
            one_ents: list[Entry] = []
            hs_logs: list[GroupLog] = []
            hs_ids: list[int] = []
            hs_vals: list[HardState] = []
            groups = self._groups
            seen: set[int] = set()
            add = builder.add
            for gw in batch.groups:
                gid = gw.group_id
                if gid in seen:
                    raise ValueError(f"group {gid} appears twice in one write batch")
                seen.add(gid)
                g = groups.get(gid)
                ents = gw.entries
                if (
                    g is not None
                    and ents
                    and ents[0].index == g.dummy_index + len(g.terms) + 1
                    and gw.snapshot is None
                    and gw.conf_state is None
                    and gw.created_snapshot is None
                    and not gw.compact_to
                    and ents[-1].index == ents[0].index + len(ents) - 1
                ):
                    # The common case (entries right after the last one, perhaps
                    # a hard state): no plan needed. Single entries and hard states
                    # of many groups go into set records, built column-wise below.
                    hs = gw.hard_state
                    if hs is not None:
                        hs_logs.append(g)
                        hs_ids.append(gid)
                        hs_vals.append(hs)
                    if len(ents) == 1:
                        one_logs.append(g)
                        one_ids.append(gid)
                        one_ents.append(ents[0])
                    else:
                        payload = entries_payload(ents)
                        appends.append(
                            (g, ents, add(RecordType.ENTRIES, gid, payload), len(payload))
                        )
                    continue
                if g is None:
                    g = GroupLog(gid, self)
                plan = plan_group_write(gw, g)
                recs = _encode_plan(plan, builder)
                if not recs and gid not in self._registered:
                    # The log itself must show that the group exists.
                    plan.hard_state = g.hard_state
                    recs = _encode_plan(plan, builder)
                planned.append((plan, recs, g))
            sets = []
            for k in range(0, len(one_ids), _SET_CHUNK):
                payload = entry_set_payload(
                    one_ids[k : k + _SET_CHUNK], one_ents[k : k + _SET_CHUNK]
                )
                sets.append((k, add(RecordType.ENTRY_SET, 0, payload), len(payload)))
            if len(hs_ids) == 1:
                add(RecordType.HARD_STATE, hs_ids[0], hard_state_payload(hs_vals[0]))
            else:
                for k in range(0, len(hs_ids), _SET_CHUNK):
                    payload = hard_state_set_payload(
                        hs_ids[k : k + _SET_CHUNK], hs_vals[k : k + _SET_CHUNK]
                    )
                    add(RecordType.HARD_STATE_SET, 0, payload)
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
            seq, base = self._commit(builder)
            repaired = []
            with self.lock:
                for k, off, plen in sets:
                    poff = base + off
                    chunk = zip(
                        one_logs[k : k + _SET_CHUNK], one_ents[k : k + _SET_CHUNK], strict=True
                    )
                    for slot, (g, e) in enumerate(chunk):
                        g.append_one(e, seq, poff, plen, slot)
                for g, appended, off, plen in appends:
                    terms = [e.term for e in appended]
                    g.append(appended[0].index, terms, appended, (seq, base + off, plen))
                for g, hs in zip(hs_logs, hs_vals, strict=True):
                    g.hard_state = hs
                    g.hs_seg = seq
                for plan, recs, g in planned:
                    gid = plan.group_id
                    current = groups.get(gid)
                    if current is None:
                        groups[gid] = current = g
                    _apply_plan(current, plan, recs, seq, base)
                    if plan.snapshot is not None and gid in self._corrupt:
                        repaired.append(gid)
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
        """Durable log writes so far (each one batch)."""
        return self._log.writes

    @property
    def syncs(self) -> int:
        """``fdatasync`` calls on the log so far (equal to ``writes``)."""
        return self._log.syncs

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

    def _commit(self, builder: BatchBuilder) -> tuple[int, int]:
        """Write one batch durably; returns its segment and the offset its body offsets add to."""
        try:
            seq, base, rotated = self._log.append(builder)
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


def _encode_plan(plan: GroupPlan, builder: BatchBuilder) -> list[tuple[int, int, int]]:
    """Add the records of ``plan`` to ``builder``; returns ``(type, body offset, length)`` each."""
    gid = plan.group_id
    recs: list[tuple[int, int, int]] = []
    snap = plan.snapshot
    if snap is not None:
        p = snapshot_payload(snap.metadata, snap.data)
        recs.append(
            (RecordType.SNAPSHOT_APPLY, builder.add(RecordType.SNAPSHOT_APPLY, gid, p), len(p))
        )
    if plan.truncate_after is not None:
        p = truncate_payload(plan.truncate_after)
        recs.append((RecordType.TRUNCATE, builder.add(RecordType.TRUNCATE, gid, p), len(p)))
    if plan.entries:
        p = entries_payload(plan.entries)
        recs.append((RecordType.ENTRIES, builder.add(RecordType.ENTRIES, gid, p), len(p)))
    if plan.hard_state is not None:
        p = hard_state_payload(plan.hard_state)
        recs.append((RecordType.HARD_STATE, builder.add(RecordType.HARD_STATE, gid, p), len(p)))
    if plan.conf_state is not None:
        p = conf_state_payload(plan.conf_state)
        recs.append((RecordType.CONF_STATE, builder.add(RecordType.CONF_STATE, gid, p), len(p)))
    stored = plan.stored_snapshot
    if stored is not None:
        p = snapshot_payload(stored.metadata, stored.data)
        recs.append(
            (RecordType.SNAPSHOT_STORE, builder.add(RecordType.SNAPSHOT_STORE, gid, p), len(p))
        )
    if plan.compact_to:
        p = compact_payload(plan.compact_to, plan.compact_term)
        recs.append((RecordType.COMPACT, builder.add(RecordType.COMPACT, gid, p), len(p)))
    return recs


def _apply_plan(
    g: GroupLog, plan: GroupPlan, recs: Sequence[tuple[int, int, int]], seq: int, base: int
) -> None:
    """Apply a persisted plan to the in-memory index (engine lock held)."""
    for rtype, off, plen in recs:
        loc = (seq, base + off, plen)
        if rtype == RecordType.ENTRIES:
            ents = plan.entries
            g.append(ents[0].index, [e.term for e in ents], ents, loc)
        elif rtype == RecordType.HARD_STATE:
            assert plan.hard_state is not None
            g.set_hard_state(plan.hard_state, seq)
        elif rtype == RecordType.TRUNCATE:
            assert plan.truncate_after is not None
            g.truncate(plan.truncate_after)
        elif rtype == RecordType.SNAPSHOT_APPLY:
            assert plan.snapshot is not None
            g.apply_snapshot(plan.snapshot.metadata, loc)
        elif rtype == RecordType.CONF_STATE:
            assert plan.conf_state is not None
            g.set_conf_state(plan.conf_state, seq)
        elif rtype == RecordType.SNAPSHOT_STORE:
            assert plan.stored_snapshot is not None
            g.store_snapshot(plan.stored_snapshot.metadata, loc)
        else:
            g.compact(plan.compact_to, plan.compact_term, seq)
