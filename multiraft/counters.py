"""The monotonic counters a node reports through ``Node.stats()``."""

from __future__ import annotations

import attrs

__all__ = ["NodeCounters"]


@attrs.define(slots=True)
class NodeCounters:
    """Events counted since the node opened (each field only ever grows).

    ``ticks``: ticks of the node's timer; ``groups_ticked``: group ticks (quiesced
    groups are not ticked); ``ready_cycles``: cycles that had work;
    ``frames_sent``/``frames_received`` and ``messages_sent``/``messages_received``:
    transport traffic (a coalesced heartbeat record counts as one message);
    ``heartbeats_coalesced``: heartbeats and responses sent as records;
    ``heartbeat_frames_sent``: frames sent that carry at least one such record;
    ``heartbeats_skipped``: heartbeats left out because the group sent that
    follower an append in the previous heartbeat interval, and heartbeat
    responses left out because they only agreed to quiesce;
    ``storage_syncs``: durable log engine writes (one per cycle with writes that
    must be durable); ``storage_unsynced_writes``: cycles whose writes were only
    commit index moves, written without a sync;
    ``send_failures``: frames the transport refused; ``proposals``: commands
    submitted here; ``proposal_batches``: raft proposals made for them (several
    commands of one group queued in one cycle go in one batch);
    ``commands_applied``; ``entries_applied_before_write``: committed entries
    applied before their cycle's write (persisted here in an earlier cycle);
    ``frames_stepped_during_write``: frames of acknowledgements a leader stepped
    while its cycle's write was in flight (see :mod:`multiraft.commits_during_write`);
    ``snapshots_taken``/``snapshots_restored``;
    ``snapshots_on_demand``: those of ``snapshots_taken`` taken because a follower
    needed a snapshot newer than the stored one (a member added since);
    ``snapshots_sent``: snapshot messages handed to the transport;
    ``quiesce_events``/``wakeups``; ``peers_judged_dead``;
    ``unknown_group_messages`` (for groups not hosted), ``unknown_groups_created``
    (by the CREATE policy), ``tombstoned_messages`` (for removed groups),
    ``dropped_messages`` (refused by raft, misaddressed, or for a failed group);
    ``groups_failed``: groups stopped because their raft rejected an input as
    impossible.
    """

    ticks: int = 0
    groups_ticked: int = 0
    ready_cycles: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    heartbeats_coalesced: int = 0
    heartbeats_skipped: int = 0
    heartbeat_frames_sent: int = 0
    storage_syncs: int = 0
    storage_unsynced_writes: int = 0
    send_failures: int = 0
    proposals: int = 0
    proposal_batches: int = 0
    commands_applied: int = 0
    entries_applied_before_write: int = 0
    frames_stepped_during_write: int = 0
    snapshots_taken: int = 0
    snapshots_restored: int = 0
    snapshots_on_demand: int = 0
    snapshots_sent: int = 0
    quiesce_events: int = 0
    wakeups: int = 0
    peers_judged_dead: int = 0
    unknown_group_messages: int = 0
    unknown_groups_created: int = 0
    tombstoned_messages: int = 0
    dropped_messages: int = 0
    groups_failed: int = 0
