"""Rebuilding every group's index from the segments when the engine opens.

Rules:

* Segments are read in sequence order; each starts with a ``SEGMENT_START``
  record naming where the previous segment ended, so a segment that lost
  batches at its end is caught even though each batch in it checks out.
* A batch that does not check out is accepted as the torn tail of a crash
  only when it is in the last segment and every sound batch after it was
  written before it was synced: none at all, or only batches ending in a
  ``SYNCED_UP_TO`` record at or below its offset (an unsynced batch that the
  crash lost while later writes, never synced either, reached the disk). That
  tail is then cut (``truncate`` + ``sync``) so later writes never sit behind
  garbage. A last segment with no sound batch at all is the remains of a
  rotation that never completed, and is deleted.
* Anything else is corruption. It is never cut away: it is reported as a
  :class:`CorruptionEvent` naming the segment, the offset and the groups whose
  records were damaged (or "all groups" when the damaged bytes cannot tell),
  the damaged batch is skipped, and reading resumes at the next sound batch.
* Garbage collection deletes segments from the oldest, and a group's records
  in older segments may be gone while later ones remain (see
  :mod:`storage.gc` and ``_Replayer``).
"""

from __future__ import annotations

from collections.abc import Callable

from storage.errors import FormatVersionError
from storage.files import SEGMENT_SUFFIX, FileLayer, LogFile
from storage.group_log import NO_SEGMENT, GroupLog, Location
from storage.records import (
    FORMAT_VERSION,
    RECORD_HEADER,
    SEGMENT_PEEK,
    RecordType,
    decode_compact,
    decode_conf_state,
    decode_entry_set,
    decode_entry_terms,
    decode_group_reset,
    decode_hard_state,
    decode_hard_state_set,
    decode_segment_start,
    decode_snapshot_metadata,
    decode_synced_up_to,
    decode_truncate,
    find_next_batch,
    parse_batch,
    peek_segment_start,
)

__all__ = [
    "CorruptionEvent",
    "OpenSegment",
    "RecoveryResult",
    "recover",
    "segment_name",
    "segment_seq",
]


def segment_name(seq: int) -> str:
    """File name of segment ``seq``."""
    return f"{seq:016x}{SEGMENT_SUFFIX}"


def segment_seq(name: str) -> int | None:
    """Sequence number of a segment file name (None for other names)."""
    stem = name[: -len(SEGMENT_SUFFIX)]
    if not name.endswith(SEGMENT_SUFFIX) or len(stem) != 16:
        return None
    try:
        return int(stem, 16)
    except ValueError:
        return None


class CorruptionEvent:
    """Damage found in a segment: where, why, and which groups it touches."""

    __slots__ = ("all_groups", "groups", "offset", "reason", "seq")

    def __init__(
        self, seq: int, offset: int, reason: str, groups: set[int], all_groups: bool
    ) -> None:
        self.seq = seq
        self.offset = offset
        self.reason = reason
        self.groups = groups
        self.all_groups = all_groups

    def __repr__(self) -> str:
        return f"CorruptionEvent({segment_name(self.seq)}@{self.offset}: {self.reason})"


class OpenSegment:
    """A live segment file, the offset where its sound data ends, and its allocated size."""

    __slots__ = ("allocated", "end", "file", "seq")

    def __init__(self, seq: int, file: LogFile, end: int, allocated: int) -> None:
        self.seq = seq
        self.file = file
        self.end = end
        self.allocated = allocated


class RecoveryResult:
    """What :func:`recover` found."""

    __slots__ = ("events", "groups", "removed", "segments", "torn_tails", "write_seqno")

    def __init__(self) -> None:
        self.groups: dict[int, GroupLog] = {}
        self.segments: list[OpenSegment] = []
        self.events: list[CorruptionEvent] = []
        #: Groups whose last record was their removal.
        self.removed: set[int] = set()
        #: ``(segment name, offset)`` of every torn tail that was cut.
        self.torn_tails: list[tuple[str, int]] = []
        self.write_seqno = 0


def recover(
    files: FileLayer,
    first_live: int,
    new_group: Callable[[int], GroupLog],
) -> RecoveryResult:
    """Read every live segment and rebuild the groups (see the module docstring)."""
    result = RecoveryResult()
    seqs = sorted(s for s in map(segment_seq, files.list_names()) if s is not None)
    stale = [s for s in seqs if s < first_live]
    for s in stale:
        files.remove(segment_name(s))
    seqs = seqs[len(stale) :]
    dropped = False
    last_data = b""
    # A last segment with no sound batch is an interrupted rotation.
    while seqs:
        f = files.open(segment_name(seqs[-1]), create=False)
        last_data = f.pread(f.size(), 0)
        f.close()
        if find_next_batch(last_data, -4, seqs[-1]) is not None:
            break
        files.remove(segment_name(seqs.pop()))
        dropped = True
    if stale or dropped:
        files.sync_dir()
    replay = _Replayer(result, new_group)
    for k, seq in enumerate(seqs):
        f = files.open(segment_name(seq), create=False)
        is_last = k == len(seqs) - 1
        expected_end = None if is_last else _peek_prev_end(files, seqs[k + 1])
        if k > 0 and seqs[k - 1] != seq - 1:
            replay.event(seq, 0, f"segments {seqs[k - 1] + 1}..{seq - 1} are missing", None)
        data = last_data if is_last else f.pread(f.size(), 0)
        end = _scan_segment(data, seq, is_last, expected_end, replay, result)
        if is_last and len(data.rstrip(b"\x00")) > end:
            f.truncate(end)
            f.sync()
            result.torn_tails.append((segment_name(seq), end))
        result.segments.append(OpenSegment(seq, f, end, f.size()))
    replay.finish()
    return result


def _peek_prev_end(files: FileLayer, seq: int) -> int | None:
    f = files.open(segment_name(seq), create=False)
    try:
        return peek_segment_start(f.pread(SEGMENT_PEEK, 0), seq)
    finally:
        f.close()


def _scan_segment(
    data: bytes,
    seq: int,
    is_last: bool,
    expected_end: int | None,
    replay: _Replayer,
    result: RecoveryResult,
) -> int:
    limit = len(data) if expected_end is None else expected_end
    off = 0
    while off < limit:
        pb = parse_batch(data, off, seq)
        if pb.ok and pb.end <= limit:
            if off == 0:
                _check_segment_start(data, seq, pb.records, replay)
            replay.apply_batch(data, seq, pb.records)
            result.write_seqno = max(result.write_seqno, pb.write_seqno)
            off = pb.end
            continue
        if is_last and _only_unsynced_writes_follow(data, off, seq):
            return off  # the torn tail of a crash
        all_groups = not pb.header_ok or pb.unknown
        reason = pb.reason or "batch runs past the segment end"
        replay.event(seq, pb.bad_offset, reason, None if all_groups else pb.bad_groups)
        if pb.header_ok:
            replay.apply_batch(data, seq, pb.records)
        if pb.header_ok and not pb.unknown and pb.end <= limit:
            off = pb.end
            continue
        nxt = find_next_batch(data, off + 8, seq)
        if nxt is None or nxt >= limit:
            return limit if expected_end is not None else off
        off = nxt
    if expected_end is not None and len(data) < expected_end:
        replay.event(
            seq, len(data), f"segment ends at {len(data)}, the next one says {expected_end}", None
        )
    return off


def _only_unsynced_writes_follow(data: bytes, off: int, seq: int) -> bool:
    """Whether every sound batch after the bad one at ``off`` says ``off`` was not yet synced."""
    nxt = find_next_batch(data, off + 8, seq)
    while nxt is not None:
        pb = parse_batch(data, nxt, seq)
        if not pb.records:
            return False
        last = pb.records[-1]
        if last[0] != RecordType.SYNCED_UP_TO or decode_synced_up_to(data, last[2]) > off:
            return False
        nxt = find_next_batch(data, pb.end, seq)
    return True


def _check_segment_start(
    data: bytes, seq: int, records: list[tuple[int, int, int, int]], replay: _Replayer
) -> None:
    if not records or records[0][0] != RecordType.SEGMENT_START:
        replay.event(seq, 0, "segment does not begin with a segment start record", None)
        return
    version, _ = decode_segment_start(data, records[0][2])
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"segment {segment_name(seq)} has format version {version}; this code reads "
            f"versions up to {FORMAT_VERSION}: upgrade multiraft to open it"
        )


class _ReplayLog:
    """A group's entries during replay: pieces that may have gaps until the end.

    Each piece is ``(first live index, terms, record first index, location, slot)``.
    """

    __slots__ = ("base_seg", "dummy_index", "dummy_term", "pieces")

    def __init__(self) -> None:
        self.dummy_index = 0
        self.dummy_term = 0
        self.base_seg = NO_SEGMENT
        self.pieces: list[tuple[int, list[int], int, Location, int]] = []

    def last(self) -> int:
        if not self.pieces:
            return self.dummy_index
        first, terms, _, _, _ = self.pieces[-1]
        return first + len(terms) - 1

    def truncate_after(self, last_kept: int) -> None:
        pieces = self.pieces
        while pieces and pieces[-1][0] > last_kept:
            pieces.pop()
        if pieces:
            first, terms, rec_first, loc, slot = pieces[-1]
            if first + len(terms) - 1 > last_kept:
                pieces[-1] = (first, terms[: last_kept - first + 1], rec_first, loc, slot)

    def append(self, first: int, terms: list[int], loc: Location, slot: int) -> None:
        self.truncate_after(first - 1)
        self.pieces.append((first, terms, first, loc, slot))

    def compact(self, index: int, term: int, seq: int) -> bool:
        if index < self.dummy_index:
            return False
        pieces = self.pieces
        while pieces and pieces[0][0] + len(pieces[0][1]) - 1 <= index:
            pieces.pop(0)
        if pieces and pieces[0][0] <= index:
            first, terms, rec_first, loc, slot = pieces[0]
            pieces[0] = (index + 1, terms[index + 1 - first :], rec_first, loc, slot)
        self.dummy_index = index
        self.dummy_term = term
        self.base_seg = seq
        return True

    def reset(self, index: int, term: int, seq: int) -> None:
        self.pieces = []
        self.dummy_index = index
        self.dummy_term = term
        self.base_seg = seq

    def install(self, g: GroupLog) -> bool:
        """Move the entries into ``g``, up to the first gap; false if there is one."""
        expect = self.dummy_index + 1
        terms: list[int] = []
        runs = []
        whole = True
        for first, piece_terms, rec_first, (seq, poff, plen), slot in self.pieces:
            if first != expect:
                whole = False
                break
            terms.extend(piece_terms)
            expect = first + len(piece_terms)
            runs.append((rec_first, expect - 1, seq, poff, plen, slot))
        g.dummy_index = self.dummy_index
        g.dummy_term = self.dummy_term
        g.base_seg = self.base_seg
        g.terms = terms
        g.runs = runs
        return whole


class _Replayer:
    """Applies records to the groups in log order.

    Garbage collection may have deleted a group's older records while later
    ones remain. Each record is applied for its effect on index ranges (entries
    replace everything from their first index, a truncation drops what follows,
    a compaction drops what precedes and sets the dummy entry, a snapshot or a
    rewrite replaces everything), which gives the true final log as long as
    every record the final state depends on was kept, which is what garbage
    collection guarantees. At the end, each group's entries must run on from
    its dummy entry without a gap; a group whose do not is reported.
    """

    __slots__ = ("_logs", "_new_group", "_result")

    def __init__(self, result: RecoveryResult, new_group: Callable[[int], GroupLog]) -> None:
        self._result = result
        self._new_group = new_group
        self._logs: dict[int, _ReplayLog] = {}

    def event(self, seq: int, offset: int, reason: str, groups: set[int] | None) -> None:
        self._result.events.append(
            CorruptionEvent(seq, offset, reason, set(groups or ()), groups is None)
        )

    def _group(self, gid: int) -> tuple[GroupLog, _ReplayLog]:
        g = self._result.groups.get(gid)
        if g is None:
            g = self._result.groups[gid] = self._new_group(gid)
            self._logs[gid] = _ReplayLog()
            self._result.removed.discard(gid)
        return g, self._logs[gid]

    def apply_batch(self, data: bytes, seq: int, records: list[tuple[int, int, int, int]]) -> None:
        for rtype, gid, pstart, plen in records:
            if rtype == RecordType.SEGMENT_START or rtype == RecordType.SYNCED_UP_TO:
                continue
            if rtype == RecordType.ENTRY_SET:
                self._apply_entry_set(data, seq, pstart, plen)
                continue
            if rtype == RecordType.HARD_STATE_SET:
                for member, hs in decode_hard_state_set(data, pstart):
                    self._group(member)[0].set_hard_state(hs, seq)
                continue
            if not self._apply(data, seq, rtype, gid, pstart, plen):
                self.event(
                    seq,
                    pstart - RECORD_HEADER,
                    f"record of type {rtype} does not fit the log of group {gid}",
                    {gid},
                )

    def _apply_entry_set(self, data: bytes, seq: int, pstart: int, plen: int) -> None:
        loc = (seq, pstart, plen)
        gids, indexes, terms = decode_entry_set(data, pstart)
        for slot, gid in enumerate(gids):
            log = self._group(gid)[1]
            index = indexes[slot]
            if index <= log.dummy_index:
                self.event(
                    seq,
                    pstart - RECORD_HEADER,
                    f"entry set does not fit the log of group {gid}",
                    {gid},
                )
                continue
            log.append(index, [terms[slot]], loc, slot)

    def _apply(self, data: bytes, seq: int, rtype: int, gid: int, pstart: int, plen: int) -> bool:
        if rtype == RecordType.REMOVE_GROUP:
            g = self._result.groups.pop(gid, None)
            if g is not None:
                g.clear()
                del self._logs[gid]
            self._result.removed.add(gid)
            return True
        g, log = self._group(gid)
        loc = (seq, pstart, plen)
        if rtype == RecordType.ENTRIES:
            first, terms = decode_entry_terms(data, pstart)
            if first <= log.dummy_index:
                return False
            log.append(first, terms, loc, -1)
        elif rtype == RecordType.TRUNCATE:
            log.truncate_after(decode_truncate(data, pstart))
        elif rtype == RecordType.HARD_STATE:
            g.set_hard_state(decode_hard_state(data, pstart), seq)
        elif rtype == RecordType.CONF_STATE:
            g.set_conf_state(decode_conf_state(data[pstart : pstart + plen]), seq)
        elif rtype == RecordType.SNAPSHOT_APPLY:
            meta, _ = decode_snapshot_metadata(memoryview(data)[pstart : pstart + plen])
            g.apply_snapshot(meta, loc)
            log.reset(meta.index, meta.term, seq)
        elif rtype == RecordType.SNAPSHOT_STORE:
            meta, _ = decode_snapshot_metadata(memoryview(data)[pstart : pstart + plen])
            g.store_snapshot(meta, loc)
        elif rtype == RecordType.COMPACT:
            index, term = decode_compact(data, pstart)
            return log.compact(index, term, seq)
        elif rtype == RecordType.GROUP_RESET:
            dummy_index, dummy_term, hs, cs = decode_group_reset(data[pstart : pstart + plen])
            g.reset(dummy_index, dummy_term, hs, cs, seq)
            log.reset(dummy_index, dummy_term, seq)
        else:
            return False
        return True

    def finish(self) -> None:
        damaged: set[int] = set()
        everyone = False
        for ev in self._result.events:
            damaged |= ev.groups
            everyone = everyone or ev.all_groups
        for gid, g in self._result.groups.items():
            log = self._logs[gid]
            # A gap after damage already reported is its consequence, not news.
            if not log.install(g) and not everyone and gid not in damaged:
                seq = log.pieces[0][3][0] if log.pieces else 0
                self.event(seq, 0, f"entries of group {gid} are missing", {gid})
