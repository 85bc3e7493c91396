"""The on-disk record format of the log: batches of checksummed, aligned records.

A segment file is a sequence of *batches*, one per durable write::

    batch header (32 bytes, little endian)
      u32 header_crc   crc32 of bytes 4..32 of this header
      u32 magic        BATCH_MAGIC
      u32 segment_seq  sequence number of the segment the batch was written to
      u32 record_count
      u64 body_len     bytes of records that follow
      u64 write_seqno  engine-wide number of the write, increasing by one per batch
    body: record_count records, each

    record header (24 bytes)
      u32 payload_crc  crc32 of the payload
      u32 header_crc   crc32 of bytes 8..24 of this header, seeded with payload_crc
      u32 payload_len
      u8  type, 3 bytes zero
      u64 group_id
    payload, then zero padding to a multiple of 8 bytes

A batch counts only when its header and every record in it check out: a write
torn by a crash fails as a whole. The segment sequence number in every header
means bytes left over from another segment never pass for a record of this
one. The record header has its own checksum so that a damaged payload still
names the group it belonged to.

Payloads by type (all integers little endian):

* ``SEGMENT_START`` (group 0): u32 format version, u32 zero, u64 end offset of
  the previous segment (0 for the first). First record of every segment.
* ``ENTRIES``: u64 first index, u32 count, count x u64 terms, count x u32 data
  lengths, count x u8 entry types, then the data of every entry back to back.
* ``TRUNCATE``: u64 index of the last entry kept (a conflicting suffix follows).
* ``HARD_STATE``: u64 term, u64 vote, u64 commit.
* ``CONF_STATE``: the conf state through :mod:`multiraft.codec`.
* ``SNAPSHOT_APPLY`` / ``SNAPSHOT_STORE``: u32 metadata length, the metadata
  through the codec, then the snapshot data. ``APPLY`` resets the log to the
  snapshot (an incoming snapshot); ``STORE`` only records it (a snapshot the
  node took of its own log).
* ``COMPACT``: u64 index, u64 term of that index (the new dummy entry).
* ``REMOVE_GROUP``: empty; the group's state is gone.
* ``GROUP_RESET``: u64 dummy index, u64 dummy term, u64 term, u64 vote,
  u64 commit, u8 has-conf-state flag, then the conf state through the codec.
  Written by garbage collection when it rewrites a group's live state forward:
  it replaces everything known about the group; ``SNAPSHOT_STORE`` and
  ``ENTRIES`` records of the same batch follow it.
* ``ENTRY_SET`` (group 0): one entry for each of many groups, the common shape
  of a write for many groups. u32 count, u32 crc32 of the group ids, count x
  u64 group ids, count x u64 indexes, count x u64 terms, count x u32 data
  lengths, count x u8 types, then the data back to back. The separate checksum
  of the ids still names the groups when the rest of the payload is damaged.
* ``HARD_STATE_SET`` (group 0): hard states of many groups: u32 count, u32
  crc32 of the ids, then count x u64 each of group ids, terms, votes, commits.
* ``SYNCED_UP_TO`` (group 0): u64 offset. Last record of a batch written while
  the segment was synced only up to that offset (an earlier batch was written
  without ``fdatasync``), so a crash may keep this batch and lose the bytes
  before it: recovery then knows the gap is not damage (see
  :mod:`storage.recovery`).

Encoding many small records costs the writer a few Python operations each;
the set records are built from whole columns at once.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from zlib import crc32

from multiraft.codec import decode, encode
from multiraft.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMetadata

__all__ = [
    "BATCH_HEADER",
    "BATCH_MAGIC",
    "BatchBuilder",
    "FORMAT_VERSION",
    "ParsedBatch",
    "RECORD_HEADER",
    "RecordType",
    "SEGMENT_PEEK",
    "SET_TYPES",
    "compact_payload",
    "conf_state_payload",
    "decode_compact",
    "decode_conf_state",
    "decode_entries",
    "decode_entry_set",
    "decode_entry_set_entry",
    "decode_entry_terms",
    "decode_group_reset",
    "decode_hard_state",
    "decode_hard_state_set",
    "decode_segment_start",
    "decode_synced_up_to",
    "decode_snapshot",
    "decode_snapshot_metadata",
    "decode_truncate",
    "encode_record",
    "entries_payload",
    "entry_set_payload",
    "find_next_batch",
    "group_reset_payload",
    "hard_state_payload",
    "hard_state_set_payload",
    "parse_batch",
    "peek_segment_start",
    "segment_start_payload",
    "synced_up_to_payload",
    "snapshot_payload",
    "truncate_payload",
    "verified_payload",
]

#: Version of the segment format written by this code.
FORMAT_VERSION = 1
#: "MRWL" little endian: marks batch headers.
BATCH_MAGIC = 0x4C57524D

_BATCH = struct.Struct("<IIIIQQ")
_BATCH_TAIL = struct.Struct("<IIIQQ")
_RECORD = struct.Struct("<IIIB3xQ")
_RECORD_TAIL = struct.Struct("<IB3xQ")
_CRC_PAIR = struct.Struct("<II")
BATCH_HEADER = _BATCH.size
RECORD_HEADER = _RECORD.size

_ENTRIES_HEAD = struct.Struct("<QI")
_ONE_ENTRY = struct.Struct("<QIQIB")
_U64 = struct.Struct("<Q")
_U64X2 = struct.Struct("<QQ")
_U64X3 = struct.Struct("<QQQ")
_RESET = struct.Struct("<QQQQQB")
_SEGMENT_START = struct.Struct("<IIQ")
_U32 = struct.Struct("<I")
#: Bytes to read from the start of a segment for :func:`peek_segment_start`.
SEGMENT_PEEK = BATCH_HEADER + RECORD_HEADER + _SEGMENT_START.size
_ZEROS = tuple(b"\x00" * n for n in range(8))
_ENTRY_TYPES = tuple(EntryType)


class RecordType:
    """Record type codes (one byte in the record header)."""

    SEGMENT_START = 1
    ENTRIES = 2
    TRUNCATE = 3
    HARD_STATE = 4
    CONF_STATE = 5
    SNAPSHOT_APPLY = 6
    SNAPSHOT_STORE = 7
    COMPACT = 8
    REMOVE_GROUP = 9
    GROUP_RESET = 10
    ENTRY_SET = 11
    HARD_STATE_SET = 12
    SYNCED_UP_TO = 13


_MAX_TYPE = RecordType.SYNCED_UP_TO
#: Record types that hold many groups (their header names group 0).
SET_TYPES = frozenset({RecordType.ENTRY_SET, RecordType.HARD_STATE_SET})
_SET_HEAD = struct.Struct("<II")


def entries_payload(entries: Sequence[Entry]) -> bytes:
    """The ``ENTRIES`` payload of consecutive ``entries`` (the hot path of every write)."""
    if len(entries) == 1:
        e = entries[0]
        data = e.data
        return _ONE_ENTRY.pack(e.index, 1, e.term, len(data), e.type) + data
    datas = [e.data for e in entries]
    return b"".join(
        (
            _ENTRIES_HEAD.pack(entries[0].index, len(entries)),
            array("Q", [e.term for e in entries]).tobytes(),
            array("I", map(len, datas)).tobytes(),
            bytes([e.type for e in entries]),
            *datas,
        )
    )


def entry_set_payload(groups: list[int], entries: list[Entry]) -> bytes:
    """The ``ENTRY_SET`` payload: ``entries[k]`` is the one new entry of ``groups[k]``."""
    gids = array("Q", groups).tobytes()
    datas = [e.data for e in entries]
    return b"".join(
        (
            _SET_HEAD.pack(len(groups), crc32(gids)),
            gids,
            array("Q", [e.index for e in entries]).tobytes(),
            array("Q", [e.term for e in entries]).tobytes(),
            array("I", map(len, datas)).tobytes(),
            bytes([e.type for e in entries]),
            *datas,
        )
    )


def decode_entry_set(
    buf: bytes | memoryview, pstart: int
) -> tuple[list[int], list[int], list[int]]:
    """Group ids, indexes and terms of an ``ENTRY_SET`` payload."""
    (count, _) = _SET_HEAD.unpack_from(buf, pstart)
    cols = array("Q")
    o = pstart + _SET_HEAD.size
    cols.frombytes(buf[o : o + 24 * count])
    flat = cols.tolist()
    return flat[:count], flat[count : 2 * count], flat[2 * count :]


def decode_entry_set_entry(payload: bytes, slot: int) -> Entry:
    """Entry number ``slot`` of an ``ENTRY_SET`` payload."""
    (count, _) = _SET_HEAD.unpack_from(payload, 0)
    o = _SET_HEAD.size + 8 * count
    (index,) = _U64.unpack_from(payload, o + 8 * slot)
    (term,) = _U64.unpack_from(payload, o + 8 * count + 8 * slot)
    o += 16 * count
    lens = array("I")
    lens.frombytes(payload[o : o + 4 * count])
    etype = payload[o + 4 * count + slot]
    start = o + 5 * count + sum(lens[:slot])
    return Entry(term, index, _ENTRY_TYPES[etype], payload[start : start + lens[slot]])


def hard_state_set_payload(groups: list[int], states: list[HardState]) -> bytes:
    """The ``HARD_STATE_SET`` payload: ``states[k]`` is the hard state of ``groups[k]``."""
    gids = array("Q", groups).tobytes()
    return b"".join(
        (
            _SET_HEAD.pack(len(groups), crc32(gids)),
            gids,
            array("Q", [h.term for h in states]).tobytes(),
            array("Q", [h.vote for h in states]).tobytes(),
            array("Q", [h.commit for h in states]).tobytes(),
        )
    )


def decode_hard_state_set(buf: bytes | memoryview, pstart: int) -> list[tuple[int, HardState]]:
    """``(group, hard state)`` pairs of a ``HARD_STATE_SET`` payload."""
    (count, _) = _SET_HEAD.unpack_from(buf, pstart)
    cols = array("Q")
    o = pstart + _SET_HEAD.size
    cols.frombytes(buf[o : o + 32 * count])
    flat = cols.tolist()
    return [
        (flat[k], HardState(flat[count + k], flat[2 * count + k], flat[3 * count + k]))
        for k in range(count)
    ]


def _set_groups(buf: bytes | memoryview, pstart: int, plen: int) -> list[int] | None:
    """The group ids of a set record if their own checksum holds, else None."""
    if plen < _SET_HEAD.size:
        return None
    count, gcrc = _SET_HEAD.unpack_from(buf, pstart)
    o = pstart + _SET_HEAD.size
    if o + 8 * count > pstart + plen:
        return None
    raw = buf[o : o + 8 * count]
    if crc32(raw) != gcrc:
        return None
    ids = array("Q")
    ids.frombytes(raw)
    return ids.tolist()


def encode_record(rtype: int, group_id: int, payload: bytes) -> bytes:
    """One record, header and padding included."""
    n = len(payload)
    pcrc = crc32(payload)
    tail = _RECORD_TAIL.pack(n, rtype, group_id)
    return b"".join((_CRC_PAIR.pack(pcrc, crc32(tail, pcrc)), tail, payload, _ZEROS[-n & 7]))


class BatchBuilder:
    """Accumulates the records of one write into one buffer.

    ``add`` returns where the payload will sit relative to the start of the
    body; :meth:`finish` may put one record (the segment start) in front, so
    the final position is ``finish``'s ``body_shift`` + that offset.
    """

    __slots__ = ("_count", "_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def size(self) -> int:
        """Bytes of the body so far."""
        return self._size

    def add(self, rtype: int, group_id: int, payload: bytes) -> int:
        """Append a record; returns the body offset of its payload."""
        n = len(payload)
        pcrc = crc32(payload)
        tail = _RECORD_TAIL.pack(n, rtype, group_id)
        parts = self._parts
        parts.append(_CRC_PAIR.pack(pcrc, crc32(tail, pcrc)))
        parts.append(tail)
        parts.append(payload)
        pad = -n & 7
        if pad:
            parts.append(_ZEROS[pad])
        start = self._size + RECORD_HEADER
        self._size = start + n + pad
        self._count += 1
        return start

    def finish(self, segment_seq: int, write_seqno: int, lead: bytes = b"") -> tuple[bytes, int]:
        """The whole batch and the shift to add to body offsets to get batch offsets."""
        body_len = self._size + len(lead)
        count = self._count + (1 if lead else 0)
        tail = _BATCH_TAIL.pack(BATCH_MAGIC, segment_seq, count, body_len, write_seqno)
        head = _U32.pack(crc32(tail)) + tail
        buf = b"".join((head, lead, *self._parts))
        return buf, BATCH_HEADER + len(lead)


class ParsedBatch:
    """The outcome of reading one batch at some offset of a segment.

    ``ok``: the whole batch checks out; ``records`` holds ``(type, group,
    payload_offset, payload_len)`` for each record. When not ok, ``reason``
    says why; if the header was sound, ``end`` is where the batch claims to end,
    ``records`` holds the records that did check out and ``bad_groups`` the
    groups of those that did not; ``unknown`` is true when some damaged bytes
    could not be attributed to a group.
    """

    __slots__ = (
        "bad_groups",
        "bad_offset",
        "end",
        "header_ok",
        "ok",
        "reason",
        "records",
        "unknown",
        "write_seqno",
    )

    def __init__(self) -> None:
        self.ok = False
        self.header_ok = False
        self.end = 0
        self.write_seqno = 0
        self.records: list[tuple[int, int, int, int]] = []
        self.bad_groups: set[int] = set()
        self.unknown = False
        self.reason = ""
        #: Where the first damage is (the batch itself when its header is bad).
        self.bad_offset = 0


def parse_batch(buf: bytes | memoryview, off: int, segment_seq: int) -> ParsedBatch:
    """Check and split the batch at ``off`` (see :class:`ParsedBatch`)."""
    out = ParsedBatch()
    out.bad_offset = off
    size = len(buf)
    if off + BATCH_HEADER > size:
        out.reason = "short batch header"
        return out
    hcrc, magic, seq, count, body_len, seqno = _BATCH.unpack_from(buf, off)
    if hcrc == 0 and magic == 0 and body_len == 0:
        out.reason = "zeroed batch header"
        return out
    if crc32(buf[off + 4 : off + BATCH_HEADER]) != hcrc or magic != BATCH_MAGIC:
        out.reason = "bad batch header checksum"
        return out
    if seq != segment_seq:
        out.reason = f"batch header of segment {seq}, not {segment_seq}"
        return out
    out.header_ok = True
    out.write_seqno = seqno
    start = off + BATCH_HEADER
    end = start + body_len
    out.end = end
    if end > size:
        out.reason = f"batch of {body_len} bytes runs past the end of the segment"
        out.unknown = True
        return out
    records = out.records
    pos = start
    damaged = False
    unpack = _RECORD.unpack_from
    for _ in range(count):
        if pos + RECORD_HEADER > end:
            out.reason = "record header runs past the end of its batch"
            out.bad_offset = pos
            out.unknown = True
            return out
        pcrc, rhcrc, plen, rtype, group = unpack(buf, pos)
        if crc32(buf[pos + 8 : pos + RECORD_HEADER], pcrc) != rhcrc or rtype > _MAX_TYPE:
            out.reason = f"bad record header checksum at offset {pos}"
            out.bad_offset = pos
            out.unknown = True
            return out
        pstart = pos + RECORD_HEADER
        pend = pstart + plen
        if pend > end:
            out.reason = f"record at offset {pos} runs past the end of its batch"
            out.bad_offset = pos
            out.unknown = True
            return out
        if crc32(buf[pstart:pend]) != pcrc:
            damaged = True
            if rtype in SET_TYPES:
                named = _set_groups(buf, pstart, plen)
                if named:
                    out.bad_groups.update(named)
                else:
                    out.unknown = True
            else:
                out.bad_groups.add(group)
            if not out.reason:
                out.reason = f"bad record checksum at offset {pos} (group {group})"
                out.bad_offset = pos
        else:
            records.append((rtype, group, pstart, plen))
        pos = pend + (-plen & 7)
    if pos != end:
        out.reason = "records do not fill their batch"
        out.unknown = True
        return out
    out.ok = not damaged
    return out


def verified_payload(raw: bytes, length: int) -> tuple[bytes | None, int]:
    """Check a record read back whole (header + ``length`` payload bytes).

    Returns the payload (None if anything is off) and the group id the header
    names (-1 when the header itself is damaged or short).
    """
    if len(raw) != RECORD_HEADER + length:
        return None, -1
    pcrc, hcrc, plen, _, group = _RECORD.unpack_from(raw, 0)
    if crc32(raw[8:RECORD_HEADER], pcrc) != hcrc or plen != length:
        return None, -1
    payload = raw[RECORD_HEADER:]
    return (payload if crc32(payload) == pcrc else None), group


def peek_segment_start(head: bytes, segment_seq: int) -> int | None:
    """Previous segment end named by the first record of a segment, from its first bytes.

    ``head`` must hold at least :data:`SEGMENT_PEEK` bytes; None if they do not
    check out (the batch itself is not verified here, only its header and first record).
    """
    if len(head) < SEGMENT_PEEK:
        return None
    hcrc, magic, seq, _, _, _ = _BATCH.unpack_from(head, 0)
    if crc32(head[4:BATCH_HEADER]) != hcrc or magic != BATCH_MAGIC or seq != segment_seq:
        return None
    raw = head[BATCH_HEADER:SEGMENT_PEEK]
    payload, _ = verified_payload(raw, _SEGMENT_START.size)
    if payload is None or raw[12] != RecordType.SEGMENT_START:
        return None
    return decode_segment_start(payload, 0)[1]


def find_next_batch(buf: bytes, start: int, segment_seq: int) -> int | None:
    """Offset of the first sound batch of this segment at or after ``start``, if any."""
    pattern = _CRC_PAIR.pack(BATCH_MAGIC, segment_seq)
    pos = buf.find(pattern, start + 4)
    while pos >= 0:
        off = pos - 4
        if off % 8 == 0 and parse_batch(buf, off, segment_seq).ok:
            return off
        pos = buf.find(pattern, pos + 1)
    return None


def decode_entry_terms(buf: bytes | memoryview, pstart: int) -> tuple[int, list[int]]:
    """First index and the terms of an ``ENTRIES`` payload."""
    first, count = _ENTRIES_HEAD.unpack_from(buf, pstart)
    terms = array("Q")
    o = pstart + _ENTRIES_HEAD.size
    terms.frombytes(buf[o : o + 8 * count])
    return first, terms.tolist()


def decode_entries(payload: bytes, lo: int, hi: int) -> tuple[list[Entry], list[int]]:
    """Entries ``[lo, hi)`` of an ``ENTRIES`` payload, and the sizes of all of them.

    ``lo`` and ``hi`` must lie within the payload's range.
    """
    first, count = _ENTRIES_HEAD.unpack_from(payload, 0)
    o = _ENTRIES_HEAD.size
    terms = array("Q")
    terms.frombytes(payload[o : o + 8 * count])
    o += 8 * count
    lens = array("I")
    lens.frombytes(payload[o : o + 4 * count])
    o += 4 * count
    types = payload[o : o + count]
    o += count
    for k in range(lo - first):
        o += lens[k]
    out = []
    sizes = []
    types_by_code = _ENTRY_TYPES
    for k in range(lo - first, hi - first):
        n = lens[k]
        out.append(Entry(terms[k], first + k, types_by_code[types[k]], payload[o : o + n]))
        sizes.append(n + 16)
        o += n
    return out, sizes


def decode_hard_state(buf: bytes | memoryview, pstart: int) -> HardState:
    """The hard state of a ``HARD_STATE`` payload."""
    term, vote, commit = _U64X3.unpack_from(buf, pstart)
    return HardState(term=term, vote=vote, commit=commit)


def hard_state_payload(hs: HardState) -> bytes:
    """The ``HARD_STATE`` payload of ``hs``."""
    return _U64X3.pack(hs.term, hs.vote, hs.commit)


def decode_conf_state(payload: bytes) -> ConfState:
    """The conf state of a ``CONF_STATE`` payload."""
    return decode(payload, ConfState)


def conf_state_payload(cs: ConfState) -> bytes:
    """The ``CONF_STATE`` payload of ``cs``."""
    return encode(cs)


def snapshot_payload(meta: SnapshotMetadata, data: bytes) -> bytes:
    """The ``SNAPSHOT_APPLY``/``SNAPSHOT_STORE`` payload of a snapshot."""
    m = encode(meta)
    return b"".join((_U32.pack(len(m)), m, data))


def decode_snapshot_metadata(payload: bytes | memoryview) -> tuple[SnapshotMetadata, int]:
    """The metadata of a snapshot payload and the offset where its data starts."""
    (n,) = _U32.unpack_from(payload, 0)
    return decode(bytes(payload[4 : 4 + n]), SnapshotMetadata), 4 + n


def decode_snapshot(payload: bytes) -> tuple[SnapshotMetadata, bytes]:
    """Metadata and data of a snapshot payload."""
    meta, o = decode_snapshot_metadata(payload)
    return meta, payload[o:]


def truncate_payload(last_kept: int) -> bytes:
    """The ``TRUNCATE`` payload."""
    return _U64.pack(last_kept)


def decode_truncate(buf: bytes | memoryview, pstart: int) -> int:
    """The last kept index of a ``TRUNCATE`` payload."""
    (last_kept,) = _U64.unpack_from(buf, pstart)
    return int(last_kept)


def compact_payload(index: int, term: int) -> bytes:
    """The ``COMPACT`` payload."""
    return _U64X2.pack(index, term)


def decode_compact(buf: bytes | memoryview, pstart: int) -> tuple[int, int]:
    """Index and term of a ``COMPACT`` payload."""
    index, term = _U64X2.unpack_from(buf, pstart)
    return index, term


def group_reset_payload(
    dummy_index: int, dummy_term: int, hs: HardState, conf_state: ConfState | None
) -> bytes:
    """The ``GROUP_RESET`` payload."""
    head = _RESET.pack(
        dummy_index, dummy_term, hs.term, hs.vote, hs.commit, 0 if conf_state is None else 1
    )
    return head if conf_state is None else head + encode(conf_state)


def decode_group_reset(payload: bytes) -> tuple[int, int, HardState, ConfState | None]:
    """Dummy index and term, hard state and conf state override of a ``GROUP_RESET``."""
    dummy_index, dummy_term, term, vote, commit, has_cs = _RESET.unpack_from(payload, 0)
    cs = decode(payload[_RESET.size :], ConfState) if has_cs else None
    return dummy_index, dummy_term, HardState(term=term, vote=vote, commit=commit), cs


def segment_start_payload(prev_end: int) -> bytes:
    """The ``SEGMENT_START`` payload."""
    return _SEGMENT_START.pack(FORMAT_VERSION, 0, prev_end)


def synced_up_to_payload(offset: int) -> bytes:
    """The ``SYNCED_UP_TO`` payload."""
    return _U64.pack(offset)


def decode_synced_up_to(buf: bytes | memoryview, pstart: int) -> int:
    """The offset of a ``SYNCED_UP_TO`` payload."""
    return int(_U64.unpack_from(buf, pstart)[0])


def decode_segment_start(buf: bytes | memoryview, pstart: int) -> tuple[int, int]:
    """Format version and previous segment end of a ``SEGMENT_START`` payload."""
    version, _, prev_end = _SEGMENT_START.unpack_from(buf, pstart)
    return version, prev_end
