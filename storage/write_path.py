"""Turning a write batch into log records, and applying them to the index once durable.

The common shape of a ready cycle for many groups, new entries right after
each group's last one and perhaps a hard state, takes a fast path: no
:class:`~storage.group_rules.GroupPlan`, and single entries and hard states of
many groups go into ``ENTRY_SET``/``HARD_STATE_SET`` records built column-wise.
Everything else is planned by :func:`storage.group_rules.plan_group_write`
(which also rejects invalid writes before anything reaches the disk).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from multiraft.ports import WriteBatch
from multiraft.raft.types import Entry, HardState
from storage.group_log import GroupLog
from storage.group_rules import GroupPlan, plan_group_write
from storage.records import (
    BatchBuilder,
    RecordType,
    compact_payload,
    conf_state_payload,
    entries_payload,
    entry_set_payload,
    hard_state_payload,
    hard_state_set_payload,
    snapshot_payload,
    truncate_payload,
)

__all__ = ["EncodedBatch"]

#: Groups per ``ENTRY_SET``/``HARD_STATE_SET`` record: damage to one names at most these.
_SET_CHUNK = 256


class EncodedBatch:
    """The records of one write batch, and how to apply them once written.

    ``builder`` holds the records; ``group_ids`` the groups written. Raises
    ``ValueError`` for a group appearing twice and the errors of
    :func:`~storage.group_rules.plan_group_write` for invalid writes.
    """

    def __init__(
        self,
        batch: WriteBatch,
        groups: dict[int, GroupLog],
        registered: set[int],
        new_group: Callable[[int], GroupLog],
    ) -> None:
        self.builder = builder = BatchBuilder()
        self.group_ids: set[int] = set()
        #: Groups with a plan: plan, ``(type, body offset, length)`` of its records, log.
        self._planned: list[tuple[GroupPlan, list[tuple[int, int, int]], GroupLog]] = []
        #: Plain appends of several entries: log, entries, payload offset and length.
        self._appends: list[tuple[GroupLog, Sequence[Entry], int, int]] = []
        self._one_logs: list[GroupLog] = []
        self._one_ents: list[Entry] = []
        self._hs_logs: list[GroupLog] = []
        self._hs_vals: list[HardState] = []
        #: Entry sets: first position in ``_one_*``, body offset, payload length.
        self._sets: list[tuple[int, int, int]] = []
        seen = self.group_ids
        add = builder.add
        one_ids: list[int] = []
        hs_ids: list[int] = []
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
                hs = gw.hard_state
                if hs is not None:
                    self._hs_logs.append(g)
                    hs_ids.append(gid)
                    self._hs_vals.append(hs)
                if len(ents) == 1:
                    self._one_logs.append(g)
                    one_ids.append(gid)
                    self._one_ents.append(ents[0])
                else:
                    payload = entries_payload(ents)
                    off = add(RecordType.ENTRIES, gid, payload)
                    self._appends.append((g, ents, off, len(payload)))
                continue
            if g is None:
                g = new_group(gid)
            plan = plan_group_write(gw, g)
            recs = _encode_plan(plan, builder)
            if not recs and gid not in registered:
                # The log itself must show that the group exists.
                plan.hard_state = g.hard_state
                recs = _encode_plan(plan, builder)
            self._planned.append((plan, recs, g))
        one_ents = self._one_ents
        for k in range(0, len(one_ids), _SET_CHUNK):
            payload = entry_set_payload(one_ids[k : k + _SET_CHUNK], one_ents[k : k + _SET_CHUNK])
            self._sets.append((k, add(RecordType.ENTRY_SET, 0, payload), len(payload)))
        hs_vals = self._hs_vals
        if len(hs_ids) == 1:
            add(RecordType.HARD_STATE, hs_ids[0], hard_state_payload(hs_vals[0]))
        else:
            for k in range(0, len(hs_ids), _SET_CHUNK):
                payload = hard_state_set_payload(
                    hs_ids[k : k + _SET_CHUNK], hs_vals[k : k + _SET_CHUNK]
                )
                add(RecordType.HARD_STATE_SET, 0, payload)

    def apply(self, groups: dict[int, GroupLog], seq: int, base: int) -> list[int]:
        """Apply the written batch to the index (engine lock held).

        ``seq`` and ``base``: where the batch body went. Returns the groups
        that received an incoming snapshot.
        """
        one_logs, one_ents = self._one_logs, self._one_ents
        for k, off, plen in self._sets:
            poff = base + off
            chunk = zip(one_logs[k : k + _SET_CHUNK], one_ents[k : k + _SET_CHUNK], strict=True)
            for slot, (g, e) in enumerate(chunk):
                g.append_one(e, seq, poff, plen, slot)
        for g, appended, off, plen in self._appends:
            terms = [e.term for e in appended]
            g.append(appended[0].index, terms, appended, (seq, base + off, plen))
        for g, hs in zip(self._hs_logs, self._hs_vals, strict=True):
            g.hard_state = hs
            g.hs_seg = seq
        snapshotted = []
        for plan, recs, g in self._planned:
            gid = plan.group_id
            current = groups.get(gid)
            if current is None:
                groups[gid] = current = g
            _apply_plan(current, plan, recs, seq, base)
            if plan.snapshot is not None:
                snapshotted.append(gid)
        return snapshotted


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
