"""The live segment files: durable appends, rotation, preallocation, reads, deletion.

One batch goes whole into one segment with one ``pwrite`` and one
``fdatasync`` (none for an unsynced batch: it becomes durable with the next
sync of its segment). When it does not fit what is left of the active segment,
a new segment starts: the old one is synced first if it holds unsynced bytes
(so nothing after them can be durable without them), the new one's first
record names where the previous one ended, and the batch is synced along with
the directory before it counts as written. A batch written while its segment
holds unsynced bytes ends with a ``SYNCED_UP_TO`` record naming where the
synced part ends, for recovery to tell a crash's lost tail from damage. Space is reserved
with ``posix_fallocate`` a few MiB ahead of the write offset (when
``preallocate`` is set), so ``fdatasync`` rarely has a file size to flush and
reopening reads few zero bytes past the data.

Errors are not handled here: the engine treats any of them as fatal.
"""

from __future__ import annotations

import threading

from storage.errors import CorruptionError
from storage.files import FileLayer
from storage.records import (
    BATCH_HEADER,
    RECORD_HEADER,
    BatchBuilder,
    RecordType,
    encode_record,
    segment_start_payload,
    synced_up_to_payload,
    verified_payload,
)
from storage.recovery import OpenSegment, segment_name

__all__ = ["SegmentLog"]

#: Bytes allocated ahead of the write offset when preallocating.
_PREALLOCATE_STEP = 4 << 20


class SegmentLog:
    """The segments of one engine, oldest first; the last one is written to.

    ``lock`` is the engine lock: the segment table changes under it, and
    :meth:`read_payload` runs under it, so a segment is never closed while read.
    Counters: ``writes`` (batches), ``syncs`` (``fdatasync`` calls: one per
    synced batch, plus one when a rotation finds unsynced bytes in the old
    segment), ``unsynced_writes`` (batches written without a sync),
    ``dir_syncs``, ``bytes_written``. Opening syncs the active segment once (not
    counted): what a killed process left in the page cache becomes durable
    before anything is written behind it.
    """

    def __init__(
        self,
        files: FileLayer,
        lock: threading.Lock,
        segments: list[OpenSegment],
        write_seqno: int,
        *,
        segment_bytes: int,
        preallocate: bool,
    ) -> None:
        self._files = files
        self._lock = lock
        self._segments = {seg.seq: seg for seg in segments}
        self._active = segments[-1] if segments else None
        self._write_seqno = write_seqno
        self._segment_bytes = segment_bytes
        self._preallocate = preallocate
        if self._active is not None:
            self._active.file.sync()
        #: Bytes of the active segment known durable.
        self._synced_end = 0 if self._active is None else self._active.end
        self.writes = 0
        self.syncs = 0
        self.unsynced_writes = 0
        self.dir_syncs = 0
        self.bytes_written = 0

    @property
    def active_seq(self) -> int | None:
        """Sequence number of the segment being written (None before the first write)."""
        return None if self._active is None else self._active.seq

    def seqs(self) -> list[int]:
        """Live segments, oldest first."""
        return sorted(self._segments)

    def sizes(self) -> dict[int, int]:
        """Bytes of data in each live segment."""
        return {seq: seg.end for seq, seg in self._segments.items()}

    def append(self, builder: BatchBuilder, sync: bool = True) -> tuple[int, int, bool]:
        """Write one batch, durably unless ``sync`` is False.

        Returns the segment it went to, the offset to add to the builder's body
        offsets, and whether a new segment was started (always synced).
        """
        active = self._active
        size = BATCH_HEADER + builder.size
        rotate = active is None or (active.end + size > self._segment_bytes and active.end > 0)
        if rotate:
            self.sync()
            prev_end = 0 if active is None else active.end
            seq = 1 if active is None else active.seq + 1
            lead = encode_record(RecordType.SEGMENT_START, 0, segment_start_payload(prev_end))
            offset = allocated = 0
            sync = True
        else:
            assert active is not None
            seq, lead, offset, allocated = active.seq, b"", active.end, active.allocated
            if self._synced_end < offset:
                builder.add(RecordType.SYNCED_UP_TO, 0, synced_up_to_payload(self._synced_end))
        self._write_seqno += 1
        buf, shift = builder.finish(seq, self._write_seqno, lead)
        end = offset + len(buf)
        if rotate:
            f = self._files.open(segment_name(seq), create=True)
        else:
            assert active is not None
            f = active.file
        if self._preallocate and end > allocated:
            allocated = max(end, min(self._segment_bytes, end + _PREALLOCATE_STEP))
            f.allocate(allocated)
        f.pwrite(buf, offset)
        if sync:
            f.sync()
            self.syncs += 1
        else:
            self.unsynced_writes += 1
        if rotate:
            self._files.sync_dir()
            self.dir_syncs += 1
        self.writes += 1
        self.bytes_written += len(buf)
        with self._lock:
            if rotate:
                self._active = self._segments[seq] = OpenSegment(seq, f, end, allocated)
            else:
                assert active is not None
                active.end = end
                active.allocated = allocated
        if sync:
            self._synced_end = end
        return seq, offset + shift, rotate

    def sync(self) -> None:
        """Make the active segment durable if it holds unsynced bytes."""
        active = self._active
        if active is not None and self._synced_end < active.end:
            active.file.sync()
            self.syncs += 1
            self._synced_end = active.end

    def read_payload(self, seq: int, offset: int, length: int) -> bytes:
        """A record's payload, both checksums verified (``CorruptionError`` otherwise)."""
        raw = self._segments[seq].file.pread(RECORD_HEADER + length, offset - RECORD_HEADER)
        payload, group = verified_payload(raw, length)
        if payload is not None:
            return payload
        raise CorruptionError(
            segment_name(seq),
            offset - RECORD_HEADER,
            [group] if group >= 0 else [],
            "record does not read back as written",
        )

    def delete_below(self, horizon: int) -> int:
        """Delete the segments older than ``horizon`` (never the active one); how many."""
        active = self.active_seq
        with self._lock:
            doomed = sorted(s for s in self._segments if s < horizon and s != active)
            closing = [self._segments.pop(s).file for s in doomed]
        if not doomed:
            return 0
        for f in closing:
            f.close()
        for s in doomed:
            self._files.remove(segment_name(s))
        self._files.sync_dir()
        self.dir_syncs += 1
        return len(doomed)

    def close(self) -> None:
        """Close every segment file (errors ignored: nothing is written any more)."""
        with self._lock:
            segments = list(self._segments.values())
            self._segments.clear()
            self._active = None
        for seg in segments:
            try:
                seg.file.close()
            except OSError:
                continue
