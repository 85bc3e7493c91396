"""Range KV example, state machines alone: range commands, splits, directory, tiling, wire."""

from __future__ import annotations

import attrs
import pytest

from examples.rangekv.client import RangeCache
from examples.rangekv.commands import (
    AllocateRangeIds,
    CasOutcome,
    CompareAndSet,
    Delete,
    ForgetChild,
    IdBlock,
    InitDirectory,
    InitRange,
    NotReady,
    Put,
    RecordSplit,
    Refused,
    ScanResult,
    SettleReplicas,
    Split,
    SplitOutcome,
    StartMove,
    UpdateReplicas,
    Value,
    WrongRange,
)
from examples.rangekv.descriptor import RangeDescriptor, TilingError, check_tiling
from examples.rangekv.directory import DirectoryStateMachine, Placement
from examples.rangekv.range_state import Move, RangeStateMachine
from examples.rangekv.wire import CodecError, message, pack, unpack

REPLICAS = (1, 2, 3)
WHOLE = RangeDescriptor(2, b"", None, 0, REPLICAS)


class RecordingObserver:
    """Records what a range state machine reports to its host."""

    def __init__(self) -> None:
        self.splits: list[tuple[int, InitRange, int]] = []
        self.restored: list[int] = []
        self.written: list[int] = []

    def range_split(self, parent: RangeStateMachine, child: InitRange, campaigner: int) -> None:
        self.splits.append((parent.range_id, child, campaigner))

    def range_restored(self, sm: RangeStateMachine) -> None:
        self.restored.append(sm.range_id)

    def range_written(self, sm: RangeStateMachine) -> None:
        self.written.append(sm.range_id)


class Applier:
    """Applies packed commands at increasing indexes."""

    def __init__(self, sm: RangeStateMachine | DirectoryStateMachine) -> None:
        self.sm = sm
        self.index = 0

    def __call__(self, command: object) -> object:
        self.index += 1
        return self.sm.apply(self.index, pack(command))


def ready_range(items: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[RangeStateMachine, Applier]:
    sm = RangeStateMachine(2, RecordingObserver())
    apply = Applier(sm)
    assert apply(InitRange(WHOLE, items)) == Value(None)
    return sm, apply


# ------------------------------------------------------------------ range state machine


def test_range_answers_not_ready_until_its_init_range_is_applied() -> None:
    sm = RangeStateMachine(2)
    apply = Applier(sm)
    assert apply(Put(b"a", b"1")) == NotReady(2)
    assert sm.get(b"a") == NotReady(2)
    assert apply(Split(b"m", 9, 0, 1)) == NotReady(2)
    assert apply(InitRange(WHOLE, ((b"a", b"0"),))) == Value(None)
    assert sm.get(b"a") == Value(b"0")
    # A second InitRange (a later leader proposing it again) changes nothing.
    assert apply(InitRange(WHOLE, ((b"z", b"9"),))) == Value(None)
    assert dict(sm.data) == {b"a": b"0"}


def test_init_range_for_another_range_id_is_refused() -> None:
    sm = RangeStateMachine(5)
    outcome = Applier(sm)(InitRange(WHOLE))
    assert isinstance(outcome, Refused)
    assert not sm.ready


def test_put_and_delete_return_the_previous_value_and_track_bytes() -> None:
    sm, apply = ready_range()
    assert apply(Put(b"k", b"one")) == Value(None)
    assert apply(Put(b"k", b"three")) == Value(b"one")
    assert sm.data_bytes == len(b"k") + len(b"three")
    assert apply(Delete(b"k")) == Value(b"three")
    assert apply(Delete(b"k")) == Value(None)
    assert sm.data_bytes == 0
    assert sm.get(b"k") == Value(None)


def test_compare_and_set_applies_only_when_the_key_holds_the_expected_value() -> None:
    sm, apply = ready_range()
    assert apply(CompareAndSet(b"k", None, b"v1")) == CasOutcome(True, b"v1")
    assert apply(CompareAndSet(b"k", None, b"v2")) == CasOutcome(False, b"v1")
    assert apply(CompareAndSet(b"k", b"wrong", b"v2")) == CasOutcome(False, b"v1")
    assert apply(CompareAndSet(b"k", b"v1", b"v2")) == CasOutcome(True, b"v2")
    assert apply(CompareAndSet(b"k", b"v2", None)) == CasOutcome(True, None)
    assert b"k" not in sm.data
    assert apply(CompareAndSet(b"gone", b"x", b"y")) == CasOutcome(False, None)


def test_split_moves_the_upper_keys_to_the_child_and_bumps_the_generation() -> None:
    items = ((b"a", b"1"), (b"f", b"2"), (b"m", b"3"), (b"t", b"4"))
    sm, apply = ready_range(items)
    outcome = apply(Split(b"m", 7, 0, 3))
    left = RangeDescriptor(2, b"", b"m", 1, REPLICAS)
    right = RangeDescriptor(7, b"m", None, 0, REPLICAS)
    assert outcome == SplitOutcome(left, right)
    assert sm.descriptor == left
    assert dict(sm.data) == {b"a": b"1", b"f": b"2"}
    assert sm.data_bytes == 4
    child = InitRange(right, ((b"m", b"3"), (b"t", b"4")), 2)
    assert sm.children == {7: child}
    observer = sm.observer
    assert isinstance(observer, RecordingObserver)
    assert observer.splits == [(2, child, 3)]
    # Writes of moved keys now point at the child.
    assert apply(Put(b"t", b"x")) == WrongRange(left, right)
    assert sm.get(b"z") == WrongRange(left, right)
    assert apply(ForgetChild(7)) == Value(None)
    assert sm.children == {}


def test_split_is_refused_when_stale_outside_the_range_or_while_replicas_change() -> None:
    _, apply = ready_range(((b"a", b"1"), (b"m", b"2")))
    assert isinstance(apply(Split(b"", 7, 0, 1)), Refused)  # at the range's own start
    assert isinstance(apply(Split(b"m", 7, 3, 1)), Refused)  # stale generation
    assert apply(Split(b"m", 7, 0, 1)) == SplitOutcome(
        RangeDescriptor(2, b"", b"m", 1, REPLICAS), RangeDescriptor(7, b"m", None, 0, REPLICAS)
    )
    assert isinstance(apply(Split(b"q", 8, 1, 1)), Refused)  # no longer inside the range
    assert apply(StartMove(3, 4)) == Value(None)
    assert isinstance(apply(Split(b"c", 8, 1, 1)), Refused)
    assert apply(SettleReplicas((1, 2, 4), 1)) == Value(None)
    outcome = apply(Split(b"c", 8, 1, 1))
    assert outcome == SplitOutcome(
        RangeDescriptor(2, b"", b"c", 2, (1, 2, 4)), RangeDescriptor(8, b"c", b"m", 0, (1, 2, 4))
    )


def test_start_move_lists_both_nodes_and_is_idempotent_until_settled() -> None:
    sm, apply = ready_range()
    assert isinstance(apply(StartMove(4, 5)), Refused)  # 4 is not a replica
    assert isinstance(apply(StartMove(3, 2)), Refused)  # 2 is a replica already
    assert sm.replicas_version == 0
    assert apply(StartMove(3, 4)) == Value(None)
    assert sm.descriptor == RangeDescriptor(2, b"", None, 0, (1, 2, 3, 4))
    assert sm.move == Move(3, 4)
    assert sm.replicas_version == 1
    assert apply(StartMove(3, 4)) == Value(None)  # a retry changes nothing
    assert sm.replicas_version == 1
    assert isinstance(apply(StartMove(1, 5)), Refused)  # one move at a time
    assert apply(SettleReplicas((4, 2, 1), 1)) == Value(None)
    assert sm.descriptor == RangeDescriptor(2, b"", None, 0, (1, 2, 4))
    assert sm.move is None
    assert sm.replicas_version == 2


def test_settle_replicas_applies_only_at_the_current_version() -> None:
    sm, apply = ready_range()
    assert isinstance(apply(SettleReplicas((1, 2), 1)), Refused)  # from the future
    assert apply(SettleReplicas((1, 2), 0)) == Value(None)
    assert sm.descriptor is not None and sm.descriptor.replicas == (1, 2)
    assert isinstance(apply(SettleReplicas((1, 2, 3), 0)), Refused)  # decided on version 0
    assert isinstance(apply(SettleReplicas((), 1)), Refused)
    assert sm.replicas_version == 1
    assert sm.descriptor.replicas == (1, 2)
    assert RangeStateMachine(9).apply(1, pack(SettleReplicas((1,), 0))) == NotReady(9)


def test_scan_is_clipped_to_the_range_and_reports_where_it_ends() -> None:
    items = tuple((bytes([c]), b"v") for c in b"abcdefgh")
    sm, apply = ready_range(items)
    apply(Split(b"e", 7, 0, 1))
    assert sm.scan(b"b", None, 100) == ScanResult(((b"b", b"v"), (b"c", b"v"), (b"d", b"v")), b"e")
    assert sm.scan(b"b", b"d", 100) == ScanResult(((b"b", b"v"), (b"c", b"v")), b"e")
    assert sm.scan(b"a", None, 2) == ScanResult(((b"a", b"v"), (b"b", b"v")), b"e")
    assert isinstance(sm.scan(b"f", None, 10), WrongRange)


def test_middle_key_is_the_key_at_half_the_count() -> None:
    sm, _ = ready_range(tuple((bytes([c]), b"") for c in b"abcde"))
    assert sm.middle_key() == b"c"
    single, _ = ready_range(((b"a", b""),))
    assert single.middle_key() is None


def test_snapshot_restore_reproduces_state_and_reports_pending_children() -> None:
    sm, apply = ready_range(((b"a", b"1"), (b"p", b"2")))
    apply(Split(b"p", 7, 0, 1))
    apply(StartMove(3, 4))
    observer = RecordingObserver()
    copy = RangeStateMachine(2, observer)
    copy.restore(sm.snapshot())
    assert copy.descriptor == sm.descriptor
    assert copy.last_right == sm.last_right
    assert copy.move == sm.move == Move(3, 4)
    assert copy.replicas_version == sm.replicas_version == 1
    assert copy.children == sm.children
    assert dict(copy.data) == dict(sm.data)
    assert copy.data_bytes == sm.data_bytes
    assert observer.restored == [2]
    assert copy.snapshot() == sm.snapshot()


def test_client_writes_are_reported_to_the_observer() -> None:
    sm, apply = ready_range()
    apply(Put(b"a", b"1"))
    apply(CompareAndSet(b"a", b"1", b"2"))
    apply(Split(b"a", 7, 0, 1))
    observer = sm.observer
    assert isinstance(observer, RecordingObserver)
    assert observer.written == [2, 2]


# ------------------------------------------------------------------------ directory


def test_directory_allocates_consecutive_id_blocks() -> None:
    d = DirectoryStateMachine()
    apply = Applier(d)
    apply(InitDirectory(WHOLE, 3))
    assert apply(AllocateRangeIds(4)) == IdBlock(3, 4)
    assert apply(AllocateRangeIds(2)) == IdBlock(7, 2)
    assert isinstance(apply(AllocateRangeIds(0)), Refused)
    assert d.next_range_id == 9


def test_directory_records_splits_in_generation_order_only() -> None:
    d = DirectoryStateMachine()
    apply = Applier(d)
    assert apply(InitDirectory(WHOLE, 3)) == Value(None)
    assert apply(InitDirectory(RangeDescriptor(9, b"", None), 99)) == Value(None)
    assert d.descriptors() == [WHOLE]
    l1 = RangeDescriptor(2, b"", b"m", 1, REPLICAS)
    r1 = RangeDescriptor(3, b"m", None, 0, REPLICAS)
    l2 = RangeDescriptor(2, b"", b"f", 2, REPLICAS)
    r2 = RangeDescriptor(4, b"f", b"m", 0, REPLICAS)
    # The second split before the first would leave [m, +inf) uncovered.
    assert isinstance(apply(RecordSplit(l2, r2)), Refused)
    assert apply(RecordSplit(l1, r1)) == Value(None)
    assert apply(RecordSplit(l1, r1)) == Value(None)  # a retry
    assert apply(RecordSplit(l2, r2)) == Value(None)
    assert d.descriptors() == [l2, r2, r1]
    check_tiling(d.descriptors())
    assert d.lookup(b"") == l2
    assert d.lookup(b"g") == r2
    assert d.lookup(b"zzz") == r1
    mismatched = RangeDescriptor(3, b"n", None, 1, REPLICAS)
    assert isinstance(apply(RecordSplit(mismatched, RangeDescriptor(5, b"q", None))), Refused)


def test_directory_update_replicas_and_snapshot_round_trip() -> None:
    d = DirectoryStateMachine()
    apply = Applier(d)
    apply(InitDirectory(WHOLE, 3))
    assert apply(UpdateReplicas(2, (1, 2, 4))) == Value(None)
    assert isinstance(apply(UpdateReplicas(77, (1,))), Refused)
    assert d.by_id[2].replicas == (1, 2, 4)
    copy = DirectoryStateMachine()
    copy.restore(d.snapshot())
    assert copy.descriptors() == d.descriptors()
    assert copy.next_range_id == 3
    assert copy.lookup(b"x") == attrs.evolve(WHOLE, replicas=(1, 2, 4))


def test_directory_ignores_replica_updates_older_than_the_recorded_version() -> None:
    d = DirectoryStateMachine()
    apply = Applier(d)
    apply(InitDirectory(WHOLE, 3))
    assert d.placement(2) == Placement(2, 0, REPLICAS)
    assert apply(UpdateReplicas(2, (1, 2, 3, 4), 1)) == Value(None)
    assert apply(UpdateReplicas(2, (1, 2, 4), 2)) == Value(None)
    assert apply(UpdateReplicas(2, (1, 2, 3, 4), 1)) == Value(None)  # late: ignored
    assert d.by_id[2].replicas == (1, 2, 4)
    assert d.placement(2) == Placement(2, 2, REPLICAS)
    assert d.placement(77) is None


def test_directory_records_founders_and_keeps_its_replicas_when_a_split_arrives_late() -> None:
    d = DirectoryStateMachine()
    apply = Applier(d)
    apply(InitDirectory(WHOLE, 3))
    apply(UpdateReplicas(2, (1, 2, 4), 2))
    # The split happened before the move settled: its descriptors list (1, 2, 3).
    left = RangeDescriptor(2, b"", b"m", 1, REPLICAS)
    right = RangeDescriptor(3, b"m", None, 0, REPLICAS)
    assert apply(RecordSplit(left, right)) == Value(None)
    assert d.descriptors() == [RangeDescriptor(2, b"", b"m", 1, (1, 2, 4)), right]
    assert d.placement(2) == Placement(2, 2, REPLICAS)
    assert d.placement(3) == Placement(3, 0, REPLICAS)
    copy = DirectoryStateMachine()
    copy.restore(d.snapshot())
    assert copy.placements == d.placements
    assert copy.descriptors() == d.descriptors()


def test_directory_lookup_before_initialization_is_none() -> None:
    d = DirectoryStateMachine()
    assert d.lookup(b"a") is None
    assert not d.ready


# ------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(
    ("descriptors", "message_part"),
    [
        ([RangeDescriptor(1, b"", b"m"), RangeDescriptor(2, b"n", None)], "gap before"),
        ([RangeDescriptor(1, b"", b"m"), RangeDescriptor(2, b"k", None)], "overlap before"),
        ([RangeDescriptor(1, b"", b"m")], "from b'm' up are not covered"),
        ([RangeDescriptor(1, b"a", None)], "gap before"),
        ([RangeDescriptor(1, b"", b"m"), RangeDescriptor(1, b"m", None)], "appears twice"),
        ([RangeDescriptor(1, b"", None), RangeDescriptor(2, b"m", None)], "without an upper"),
    ],
)
def test_check_tiling_names_the_first_defect(
    descriptors: list[RangeDescriptor], message_part: str
) -> None:
    with pytest.raises(TilingError, match=message_part.replace("(", r"\(")):
        check_tiling(descriptors)


def test_check_tiling_accepts_an_exact_cover_in_any_order() -> None:
    check_tiling(
        [
            RangeDescriptor(3, b"m", None),
            RangeDescriptor(1, b"", b"c"),
            RangeDescriptor(2, b"c", b"m"),
        ]
    )


# -------------------------------------------------------------------------- cache


def test_cache_replaces_overlapping_entries_and_keeps_newer_generations() -> None:
    cache = RangeCache()
    cache.update(WHOLE)
    assert cache.find(b"q") == WHOLE
    left = RangeDescriptor(2, b"", b"m", 1, REPLICAS)
    right = RangeDescriptor(3, b"m", None, 0, REPLICAS)
    cache.update(left)
    assert cache.find(b"q") is None  # the stale whole range is gone
    cache.update(right)
    assert cache.find(b"q") == right
    cache.update(WHOLE)  # an older view of range 2 does not replace the newer one
    assert cache.find(b"a") == left
    assert cache.find(b"q") == right
    assert len(cache) == 2
    cache.evict(3)
    assert cache.find(b"q") is None
    assert cache.find(b"a") == left


# --------------------------------------------------------------------------- wire


def test_wire_round_trips_and_rejects_unknown_opcodes() -> None:
    for value in (
        Put(b"k", b"v"),
        CompareAndSet(b"k", None, b"v"),
        InitRange(WHOLE, ((b"a", b"b"),)),
    ):
        assert unpack(pack(value)) == value
    with pytest.raises(CodecError, match="unknown message opcode 250"):
        unpack(bytes([250]) + pack(Put(b"k", b"v"))[1:])
    with pytest.raises(CodecError):
        unpack(pack(Put(b"k", b"v"))[:3])
    with pytest.raises(TypeError, match="not a registered message"):
        pack(object())


def test_registering_an_opcode_twice_is_an_error() -> None:
    @attrs.frozen
    class Other:
        x: int

    with pytest.raises(ValueError, match="already names Put"):
        message(1)(Other)
    with pytest.raises(ValueError, match="out of range"):
        message(256)(Other)
