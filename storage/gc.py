"""When to delete segments and which groups to rewrite forward so they can go.

A segment can be deleted once no group needs a record in it. Segments are
only ever deleted from the oldest one up (so the log stays one unbroken run
of segments); what a group needs is the oldest segment holding its live
entries, its hard state, its conf state, its snapshot or the record that set
its dummy entry (:meth:`storage.group_log.GroupLog.min_segment`). A group
flagged corrupt also pins the segment where the damage is, so the evidence
stays until the group is repaired.

One slow group (idle, or far behind on compaction) would otherwise pin old
segments forever. When the bytes on disk exceed ``ratio`` times the live
bytes plus one segment, the groups pinning the oldest segment are *rewritten
forward*: their whole live state is written again as one ``GROUP_RESET`` with
their snapshot and entries, in the current segment, so the oldest segment
becomes garbage. Disk use, and with it the time to reopen, stays bounded by
the live data rather than by history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from storage.group_log import NO_SEGMENT, GroupLog

__all__ = ["GcDecision", "decide_collection"]


class GcDecision:
    """``horizon``: segments below it are garbage; ``relocate``: groups to rewrite forward."""

    __slots__ = ("horizon", "relocate")

    def __init__(self, horizon: int, relocate: list[int]) -> None:
        self.horizon = horizon
        self.relocate = relocate

    def __repr__(self) -> str:
        return f"GcDecision(horizon={self.horizon}, relocate={self.relocate})"


def decide_collection(
    groups: Iterable[GroupLog],
    pinned: Mapping[int, int],
    segment_sizes: Mapping[int, int],
    active_seq: int,
    segment_bytes: int,
    ratio: float,
) -> GcDecision:
    """Decide one step of garbage collection.

    ``pinned`` maps corrupt groups to the segment holding their damage;
    ``segment_sizes`` gives the bytes used by every live segment.
    """
    needs: dict[int, int] = {}
    live = 0
    for g in groups:
        seg = min(g.min_segment(), pinned.get(g.group_id, NO_SEGMENT))
        if seg != NO_SEGMENT:
            needs[g.group_id] = seg
        live += g.live_bytes()
    horizon = min(min(needs.values(), default=active_seq), active_seq)
    on_disk = sum(size for seq, size in segment_sizes.items() if seq >= horizon)
    if horizon >= active_seq or on_disk <= ratio * live + segment_bytes:
        return GcDecision(horizon, [])
    relocate = sorted(gid for gid, seg in needs.items() if seg == horizon)
    if any(pinned.get(gid) == horizon for gid in relocate):
        # Damage in the oldest segment holds it until the groups are repaired.
        return GcDecision(horizon, [])
    return GcDecision(horizon, relocate)
