"""Flow control of appends: the inflights window, message size limits, and per-state sending.

Leader 1 of (1, 2) at term 1 holds its empty entry at index 1. Unless a test says
otherwise, follower 2 first acknowledges index 1, which puts it in REPLICATE with
match 1, next 2 and an empty window.
"""

from __future__ import annotations

from typing import Any

from multiraft.raft import Entry, MessageType, ProgressState
from multiraft.raft.raft import Raft
from raft_scenarios import entry_indexes, leader_of, peer_msg, propose

MT = MessageType

#: 84 bytes of data: each entry weighs exactly 100 bytes (data + 16 of overhead) against
#: max_size_per_msg, and 84 payload bytes in the in-flight byte window (as etcd counts).
DATA_100 = b"d" * 84


def replicating_leader(**kw: Any) -> Raft:
    """Leader whose follower 2 acknowledged index 1 and replicates from index 2."""
    r = leader_of([1, 2], **kw)
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=1))
    r.read_messages()
    pr = r.trk.progress[2]
    assert (pr.state, pr.match, pr.next, pr.inflights.count()) == (ProgressState.REPLICATE, 1, 2, 0)
    assert r.raft_log.committed == 1
    return r


def appends_to_2(r: Raft) -> list[list[int]]:
    """Take the outgoing messages; all must be appends to 2. Returns their entry indexes."""
    msgs = r.read_messages()
    assert all(m.type == MT.APP and m.to == 2 for m in msgs), msgs
    return [entry_indexes(m) for m in msgs]


def propose_and_send(r: Raft, count: int, data: bytes = b"somedata") -> list[list[int]]:
    """Propose ``count`` entries; returns the entry indexes of the appends that went out."""
    for _ in range(count):
        propose(r, data)
    return appends_to_2(r)


# ----------------------------------------------------------------- the window


def test_replicate_fills_window_to_max_inflight_msgs_then_stops() -> None:
    r = replicating_leader(max_inflight_msgs=3)
    pr = r.trk.progress[2]
    for index in (2, 3, 4):
        propose(r)
        assert appends_to_2(r) == [[index]]
    assert pr.inflights.count() == 3
    assert pr.inflights.full()
    assert pr.next == 5
    for _ in range(5):
        propose(r)
        assert r.read_messages() == []
    assert pr.inflights.count() == 3
    assert pr.next == 5
    assert r.raft_log.last_index() == 9


def test_replicate_stops_sending_once_inflight_bytes_reach_max_inflight_bytes() -> None:
    r = replicating_leader(max_size_per_msg=100, max_inflight_bytes=252)
    pr = r.trk.progress[2]
    for index, in_flight in ((2, 84), (3, 168), (4, 252)):
        assert not pr.inflights.full()
        propose(r, DATA_100)
        assert appends_to_2(r) == [[index]]
        assert pr.inflights.bytes() == in_flight
    assert pr.inflights.full()
    assert pr.inflights.count() == 3
    propose(r, DATA_100)
    propose(r, DATA_100)
    assert r.read_messages() == []
    assert pr.inflights.bytes() == 252
    assert pr.next == 5


def test_append_response_frees_bytes_and_the_freed_room_is_refilled() -> None:
    r = replicating_leader(max_size_per_msg=100, max_inflight_bytes=252)
    pr = r.trk.progress[2]
    propose_and_send(r, 5, DATA_100)
    assert (pr.inflights.bytes(), pr.next) == (252, 5)
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=2))
    # 84 payload bytes freed: exactly one more such entry (5) fits, 6 waits.
    msgs = r.read_messages()
    assert [(m.index, entry_indexes(m), m.commit) for m in msgs] == [(4, [5], 2)]
    assert (pr.inflights.bytes(), pr.inflights.count(), pr.next) == (252, 3, 6)


def test_append_response_frees_every_slot_up_to_its_index() -> None:
    r = replicating_leader(max_inflight_msgs=3)
    pr = r.trk.progress[2]
    assert propose_and_send(r, 5) == [[2], [3], [4]]
    assert pr.inflights.full()
    # Entries 5 and 6 wait. Acknowledging 3 frees the appends of 2 and 3 at once.
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=3))
    msgs = r.read_messages()
    assert [(m.type, m.index, m.log_term, entry_indexes(m), m.commit) for m in msgs] == [
        (MT.APP, 4, 1, [5, 6], 3)
    ]
    assert pr.inflights.count() == 2  # the appends ending at 4 and at 6
    assert (pr.match, pr.next) == (3, 7)


def test_stale_append_response_does_not_move_the_window() -> None:
    r = replicating_leader(max_inflight_msgs=3)
    pr = r.trk.progress[2]
    propose_and_send(r, 3)
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=3))
    r.read_messages()
    assert pr.inflights.count() == 1
    for stale in (1, 2, 3):
        r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=stale))
        assert r.read_messages() == []
        assert pr.inflights.count() == 1
        assert (pr.match, pr.next) == (3, 5)


def test_window_slides_forward_with_each_acknowledgement() -> None:
    r = replicating_leader(max_inflight_msgs=4)
    pr = r.trk.progress[2]
    propose_and_send(r, 4)
    # Entries 2..5 in flight. Each ack of the oldest frees one slot, and each new
    # proposal takes it again.
    for acked in range(2, 12):
        r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=acked))
        r.read_messages()
        assert pr.inflights.count() == 3
        propose(r)
        assert appends_to_2(r) == [[acked + 4]]
        assert pr.inflights.full()


def test_heartbeat_response_frees_one_slot_when_window_full() -> None:
    r = replicating_leader(max_inflight_msgs=3)
    pr = r.trk.progress[2]
    propose_and_send(r, 3)
    assert pr.inflights.full()
    r.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 1))
    assert pr.inflights.count() == 2
    # The follower is behind, so the leader also sends an (empty) append after 4.
    msgs = r.read_messages()
    assert [(m.type, m.index, entry_indexes(m)) for m in msgs] == [(MT.APP, 4, [])]
    assert pr.inflights.count() == 2


def test_heartbeat_response_frees_nothing_when_window_not_full() -> None:
    r = replicating_leader(max_inflight_msgs=3)
    pr = r.trk.progress[2]
    propose_and_send(r, 2)
    assert pr.inflights.count() == 2
    r.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 1))
    assert pr.inflights.count() == 2
    r.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 1))
    assert pr.inflights.count() == 2


def test_heartbeat_response_on_full_window_sends_exactly_one_more_append() -> None:
    r = replicating_leader(max_inflight_msgs=3)
    pr = r.trk.progress[2]
    propose_and_send(r, 3)
    for _ in range(4):
        propose(r)
    assert r.read_messages() == []
    # Entries 5..8 are waiting: the freed slot carries them all in one append.
    r.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 1))
    assert appends_to_2(r) == [[5, 6, 7, 8]]
    assert pr.inflights.full()
    assert pr.next == 9
    for _ in range(3):
        propose(r)
        assert r.read_messages() == []


# ------------------------------------------------------------ message size


def append_pending(r: Raft, *data: bytes) -> None:
    """Append entries to the leader's log without sending anything."""
    assert r.append_entry([Entry(0, 0, data=d) for d in data])


def test_max_size_per_msg_zero_sends_exactly_one_entry_per_append() -> None:
    r = replicating_leader(max_size_per_msg=0)
    append_pending(r, b"a", b"b", b"c")
    for index in (2, 3, 4):
        r.send_append(2)
        assert appends_to_2(r) == [[index]]
    assert r.trk.progress[2].next == 5


def test_max_size_per_msg_caps_entry_bytes_of_one_append() -> None:
    r = replicating_leader(max_size_per_msg=250)
    append_pending(r, *[DATA_100] * 5)
    # 100-byte entries under a 250-byte cap: two per append.
    sent = []
    for _ in range(3):
        r.send_append(2)
        sent.extend(appends_to_2(r))
    assert sent == [[2, 3], [4, 5], [6]]


def test_entry_larger_than_max_size_per_msg_goes_alone() -> None:
    r = replicating_leader(max_size_per_msg=150)
    big = b"x" * 500
    append_pending(r, DATA_100, big, DATA_100, DATA_100)
    sent = []
    for _ in range(3):
        r.send_append(2)
        sent.extend(appends_to_2(r))
    # The small entry before the big one does not take it along, and the big one
    # travels alone (a cap never stops a single entry). Two small ones (200 bytes)
    # exceed the cap too, so each goes alone.
    assert sent == [[2], [3], [4]]
    r.send_append(2)
    assert appends_to_2(r) == [[5]]
    big_first = replicating_leader(max_size_per_msg=150)
    append_pending(big_first, big, DATA_100)
    big_first.send_append(2)
    assert appends_to_2(big_first) == [[2]]


# ------------------------------------------------------ sending per state


def test_probe_sends_one_append_until_a_heartbeat_response() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    assert (pr.state, pr.next) == (ProgressState.PROBE, 1)
    append_pending(r, b"somedata")
    r.send_append(2)
    msgs = r.read_messages()
    assert [(m.type, m.index, entry_indexes(m)) for m in msgs] == [(MT.APP, 0, [1, 2])]
    assert pr.msg_app_flow_paused
    for round_ in range(3):
        # Whatever the leader appends, nothing more goes out while the probe is unanswered.
        for _ in range(10):
            append_pending(r, b"somedata")
            r.send_append(2)
            assert r.read_messages() == []
        # A heartbeat is still sent, and does not unpause the probe by itself.
        r.step(peer_msg(MT.BEAT, 1, 1, 0))
        msgs = r.read_messages()
        assert [(m.type, m.to) for m in msgs] == [(MT.HEARTBEAT, 2)], round_
        assert pr.msg_app_flow_paused
    # The heartbeat response lets exactly one probe out, from the same next index.
    r.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 1))
    msgs = r.read_messages()
    assert [(m.type, m.index, entry_indexes(m)) for m in msgs] == [(MT.APP, 0, list(range(1, 33)))]
    assert pr.msg_app_flow_paused
    assert (pr.state, pr.next) == (ProgressState.PROBE, 1)
    r.send_append(2)
    assert r.read_messages() == []


def test_probe_is_unpaused_by_an_append_response() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    r.send_append(2)
    r.read_messages()
    assert pr.msg_app_flow_paused
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=1))
    assert not pr.msg_app_flow_paused
    assert (pr.state, pr.match, pr.next) == (ProgressState.REPLICATE, 1, 2)


def test_replicate_sends_optimistically_without_waiting_for_responses() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    pr.become_replicate()
    assert pr.next == 1
    append_pending(r, b"somedata")
    r.send_append(2)
    assert appends_to_2(r) == [[1, 2]]
    for i in range(10):
        append_pending(r, b"somedata")
        r.send_append(2)
        assert appends_to_2(r) == [[3 + i]]
        assert pr.next == 4 + i
    assert pr.match == 0
    assert pr.inflights.count() == 11


def test_snapshot_state_sends_no_appends() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    pr.become_snapshot(10)
    for _ in range(10):
        append_pending(r, b"somedata")
        r.send_append(2)
        assert r.read_messages() == []
    propose(r)
    assert r.read_messages() == []
    assert (pr.state, pr.pending_snapshot, pr.next) == (ProgressState.SNAPSHOT, 10, 1)
