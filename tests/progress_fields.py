"""Every field of a raft ``Progress`` as a tuple (Progress has no ``==``), for tests
that compare a member's progress with another's."""

from __future__ import annotations

from typing import Any

from multiraft.raft.progress import Progress


def progress_fields(pid: int, pr: Progress) -> tuple[Any, ...]:
    """``pid`` and everything ``pr`` holds, its inflights window's state included."""
    w = pr.inflights
    return (
        pid,
        pr.match,
        pr.next,
        pr.state,
        pr.recent_active,
        pr.msg_app_flow_paused,
        pr.pending_snapshot,
        pr.probe_next,
        pr.sent_commit,
        pr.is_learner,
        w.count(),
        w.bytes(),
        w.size,
        w.max_bytes,
    )
