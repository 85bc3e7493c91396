"""Link faults of the simulator: cuts refuse, trimmed appends stay valid prefixes."""

from __future__ import annotations

import random

from multiraft.frames import Frame, GroupMessage, HeartbeatRecord, SnapshotOutcome
from multiraft.raft.types import Entry, Message, MessageType
from multiraft.testing.sim_network import LinkFaults, SimTransport


def app(term: int, entry_terms: list[int], index: int = 2, commit: int = 7) -> Message:
    entries = tuple(Entry(t, index + 1 + i, data=b"e") for i, t in enumerate(entry_terms))
    return Message(
        MessageType.APP,
        to=2,
        from_=1,
        term=term,
        index=index,
        log_term=1,
        entries=entries,
        commit=commit,
    )


def frame(*messages: Message) -> Frame:
    return Frame(
        1,
        2,
        [GroupMessage(9, m) for m in messages],
        heartbeats=[HeartbeatRecord(9, 1, 2, 5, 3)],
    )


class Inner:
    def __init__(self) -> None:
        self.sent: list[tuple[int, Frame]] = []

    def send(self, to_node: int, f: Frame) -> bool:
        self.sent.append((to_node, f))
        return True

    async def receive(self) -> Frame | SnapshotOutcome:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        return None


class Seen:
    def __init__(self) -> None:
        self.frames: list[tuple[int, int, Frame]] = []

    def on_frame(self, src: int, dst: int, f: Frame) -> None:
        self.frames.append((src, dst, f))


def test_stale_only_link_keeps_the_entries_older_than_the_senders_term() -> None:
    faults = LinkFaults(random.Random(0))
    faults.stale_only.add((1, 2))
    original = app(5, [2, 2, 5, 5])
    out = faults.filter(1, 2, frame(original, Message(MessageType.HEARTBEAT_RESP, to=2)))
    trimmed = out.messages[0].message
    assert [e.term for e in trimmed.entries] == [2, 2]
    assert [e.index for e in trimmed.entries] == [3, 4]
    assert (trimmed.index, trimmed.log_term, trimmed.commit, trimmed.term) == (2, 1, 7, 5)
    assert len(original.entries) == 4  # the sender's message is not touched
    assert out.messages[1].message.type is MessageType.HEARTBEAT_RESP
    assert out.heartbeats == [HeartbeatRecord(9, 1, 2, 5, 3)]
    assert faults.trimmed_appends == 1


def test_stale_only_append_whose_first_entry_is_new_becomes_an_empty_probe() -> None:
    faults = LinkFaults(random.Random(0))
    faults.stale_only.add((1, 2))
    out = faults.filter(1, 2, frame(app(5, [5, 5])))
    assert out.messages[0].message.entries == ()
    assert out.messages[0].message.index == 2


def test_stale_only_applies_to_its_direction_only_and_leaves_old_entries_whole() -> None:
    faults = LinkFaults(random.Random(0))
    faults.stale_only.add((2, 1))
    f = frame(app(5, [5]))
    assert faults.filter(1, 2, f) is f
    faults.stale_only.add((1, 2))
    g = frame(app(5, [3, 4]))
    assert faults.filter(1, 2, g) is g
    assert faults.trimmed_appends == 0


def test_short_appends_keep_a_strict_prefix() -> None:
    faults = LinkFaults(random.Random(3))
    faults.short_append_rate = 1.0
    lengths = set()
    for _ in range(50):
        out = faults.filter(1, 2, frame(app(5, [5, 5, 5, 5])))
        kept = out.messages[0].message.entries
        assert kept == app(5, [5, 5, 5, 5]).entries[: len(kept)]
        lengths.add(len(kept))
    assert lengths == {0, 1, 2, 3}
    single = frame(app(5, [5]))
    assert faults.filter(1, 2, single) is single


async def test_cut_link_refuses_the_frame_after_the_observer_saw_it() -> None:
    faults = LinkFaults(random.Random(0))
    inner, seen = Inner(), Seen()
    t = SimTransport(inner, 1, faults, seen)
    f = frame(app(5, [5]))
    assert t.send(2, f) is True
    faults.cut.add((1, 2))
    assert t.send(2, f) is False
    assert t.send(3, f) is True
    assert [to for to, _ in inner.sent] == [2, 3]
    assert [(s, d) for s, d, _ in seen.frames] == [(1, 2), (1, 2), (1, 3)]
    assert t.refused == 1
    faults.isolate(3, [1, 2, 3])
    assert not faults.reaches(1, 3) and not faults.reaches(3, 2)
    faults.clear()
    assert faults.reaches(1, 2) and faults.cut == set()
