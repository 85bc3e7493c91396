"""What an idle group costs its node: objects shared between groups, none kept per group
that an idle group does not need, and the exact census of what remains."""

from __future__ import annotations

import collections
import gc
import types

import pytest
import trio
import trio.testing

from multiraft.bench import groups_bench as gb
from multiraft.group_spec import GroupSpec
from multiraft.proposals import Waiter
from multiraft.raft.interning import InternTable
from multiraft.raft.quorum import JointConfig, MajorityConfig
from multiraft.raft.rawnode import RawNode
from multiraft.raft.read_only import ReadOnly
from multiraft.raft.tracker import ProgressTracker, TrackerConfig
from multiraft.raft.types import ConfState, Entry, Message, MessageType, ReadOnlyOption
from multiraft.raft.unstable import Unstable
from multiraft.replica import Replica, SnapshotPolicy
from multiraft.requests import RequestQueue
from raft_harness import new_storage, new_test_config
from storage import MemoryStorage
from transport import MemoryNetwork


def _read(ctx: bytes) -> Message:
    return Message(type=MessageType.READ_INDEX, entries=(Entry(0, 0, data=ctx),))


def test_intern_table_shares_by_key_and_starts_over_past_its_limit() -> None:
    table: InternTable[str, list[int]] = InternTable(limit=2)
    a, b = [1], [2]
    assert table.add("a", a) is a and table.add("b", b) is b
    assert (table.get("a"), table.get("b"), table.get("c"), len(table)) == (a, b, None, 2)
    c = table.add("c", [3])
    assert (table.get("a"), table.get("b"), table.get("c"), len(table)) == (None, None, c, 1)
    with pytest.raises(ValueError, match="must be positive"):
        InternTable(limit=0)


def test_equal_configs_are_one_shared_instance() -> None:
    m = MajorityConfig([3, 1, 2])
    assert m is MajorityConfig({1, 2, 3}) is MajorityConfig(iter([2, 3, 1]))
    assert MajorityConfig() is MajorityConfig([])
    assert JointConfig(m) is JointConfig(MajorityConfig([1, 2, 3]), MajorityConfig())
    assert JointConfig(m, MajorityConfig([1])) is not JointConfig(m)
    t = TrackerConfig(JointConfig(m))
    assert t is TrackerConfig(JointConfig(m), False, set(), frozenset())
    assert TrackerConfig() is ProgressTracker(4, 0).config is ProgressTracker(8, 0).config
    with_learner = TrackerConfig(JointConfig(m), False, {4})
    assert with_learner is TrackerConfig(JointConfig(m), False, frozenset({4}))
    assert with_learner is not t and isinstance(with_learner.learners, frozenset)
    assert TrackerConfig(JointConfig(m, m), True) is not TrackerConfig(JointConfig(m, m), False)


def test_a_learner_set_passed_in_is_copied_so_changing_it_later_changes_no_config() -> None:
    learners = {4}
    cfg = TrackerConfig(JointConfig(MajorityConfig([1, 2, 3])), False, learners)
    learners.add(5)
    assert sorted(cfg.learners) == [4]
    assert TrackerConfig(JointConfig(MajorityConfig([1, 2, 3])), False, {4, 5}) is not cfg


def test_clone_of_a_shared_config_is_private() -> None:
    shared = TrackerConfig(JointConfig(MajorityConfig([1, 2])))
    copy = shared.clone()
    copy.learners.add(3)  # type: ignore[attr-defined]
    assert copy is not shared and copy != shared
    assert TrackerConfig(JointConfig(MajorityConfig([1, 2]))) is shared
    assert (shared.learners, repr(shared)) == (frozenset(), "voters=(1 2)")


def test_pending_reads_dequeue_in_arrival_order_up_to_the_acknowledged_one() -> None:
    ro = ReadOnly(ReadOnlyOption.SAFE)
    assert (ro.queue, ro.last_pending_request_ctx(), ro.advance(b"x")) == ([], b"", [])
    for i, ctx in enumerate((b"a", b"b", b"c", b"a")):
        ro.add_request(10 + i, _read(ctx))
    assert (ro.queue, ro.last_pending_request_ctx()) == ([b"a", b"b", b"c"], b"c")
    assert ro.recv_ack(2, b"b") == {2: True} and ro.recv_ack(2, b"zz") == {}
    done = ro.advance(b"b")
    assert [(s.req.entries[0].data, s.index, s.acks) for s in done] == [
        (b"a", 10, {}),
        (b"b", 11, {2: True}),
    ]
    assert (ro.queue, list(ro.pending)) == ([b"c"], [b"c"])
    ro.add_request(20, _read(b"a"))
    assert (ro.queue, ro.last_pending_request_ctx()) == ([b"c", b"a"], b"a")
    assert [s.index for s in ro.advance(b"a")] == [12, 20]
    ro.add_request(30, _read(b"d"))
    ro.reset()
    assert (ro.pending, ro.queue, ro.last_pending_request_ctx()) == ({}, [], b"")


def test_an_empty_unstable_tail_holds_no_list_of_its_own() -> None:
    u = Unstable(offset=5)
    assert u.entries == () and u.slice(5, 5) == []
    appended = [Entry(1, 5), Entry(1, 6)]
    u.truncate_and_append(appended)
    assert isinstance(u.entries, list) and u.entries is not appended
    appended.append(Entry(1, 7))
    assert (u.offset, len(u.entries)) == (5, 2)
    u.stable_to(6, 1)
    assert (u.offset, u.entries) == (7, ())
    other = Unstable(offset=9)
    assert other.entries is u.entries
    other.truncate_and_append([Entry(2, 9)])
    assert (u.entries, [e.index for e in other.entries]) == ((), [9])


def test_fresh_memory_storages_share_their_log_until_one_is_written() -> None:
    a, b = MemoryStorage(), MemoryStorage()
    assert a._ents is b._ents and a._ents == [Entry(0, 0)]
    a.append([Entry(1, 1)])
    assert (a.last_index(), b.last_index(), b.first_index()) == (1, 0, 1)
    assert b._ents == [Entry(0, 0)]


#: Objects the garbage collector tracks for one idle group hosted by three
#: in-process nodes (three replicas), by type. Before this census was pinned a
#: group cost 112 (37.3 per replica): each replica also had its own membership
#: (TrackerConfig, JointConfig, MajorityConfig and its frozenset), a bound
#: method, the list of ReadOnly, the list of the empty unstable tail and a dummy
#: log entry. A group then started from a snapshot, not from one membership entry
#: per peer (10 entries became 4 entries and 3 snapshots: 88 objects, 85). Then
#: the empty outboxes of Raft and the empty request lists of Replica became the
#: shared empty tuple (6 lists per replica), every Progress with nothing in flight
#: shared one empty Inflights window, and equal SoftStates became one instance
#: (85 objects, 55). Now a quiesced replica folds its raft member (RawNode, Raft,
#: RaftLog, Unstable, ProgressTracker, ReadOnly, the dict of Progress and the 3
#: Progress, GatedStorage) into one DormantState (55 objects, 25). Then the
#: memory storage shared equal dummy entries and equal hard states between logs
#: (the initial snapshot leaves the same dummy entry in every new group's log,
#: and settled groups created together store the same few hard states: 25
#: objects, 19), and equal new groups with small initial state machine snapshots
#: shared their initial snapshot (19 objects, 16). Then equal short logs without
#: command data became one list, so the stored log (its dummy entry and the
#: leader's empty entry) is shared by the groups created together (16 objects,
#: 12). What is left: one of each per-replica object.
IDLE_GROUP_CENSUS = {
    "DormantState": 3,
    "MemoryStorage": 3,
    "Replica": 3,
    "_CounterMachine": 3,
}

_HELD_BUILTINS = (list, dict, set, frozenset, tuple, collections.deque, types.MethodType)


def _census() -> collections.Counter[str]:
    """GC-tracked objects of the coordinator, raft and storage, with the built-in
    containers and bound methods they hold, by type name.

    Everything else (trio's own objects, pytest's) varies with timing, not with
    the groups.
    """
    gc.collect()
    ours = []
    for o in gc.get_objects():
        module = type(o).__dict__.get("__module__")
        if isinstance(module, str) and (
            module.startswith(("multiraft.", "storage.")) or module == gb.__name__
        ):
            ours.append(o)
    held = {
        id(c): c
        for o in ours
        for c in gc.get_referents(o)
        if type(c) in _HELD_BUILTINS and gc.is_tracked(c)
    }
    return collections.Counter(type(o).__name__ for o in [*ours, *held.values()])


async def test_an_idle_group_keeps_an_exact_census_of_objects_on_three_nodes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    per_batch = 30
    async with gb._cluster(MemoryNetwork(), 4 * per_batch) as nodes:

        async def create(lo: int, hi: int) -> None:
            for i in gb.NODES:
                await nodes[i].create_groups(
                    GroupSpec(g, gb.NODES, gb._CounterMachine(), campaign=g % 3 + 1 == i)
                    for g in range(lo, hi)
                )
            await gb._wait_leaders(nodes, hi, timeout=5)
            await gb._wait(lambda: gb._all_quiesced(nodes, hi), 5, "quiescence")
            await trio.sleep(1)

        # The first batch pays for everything shared (configs, buffers, frames);
        # the second one costs only what each group keeps.
        await create(0, per_batch)
        before = _census()
        await create(per_batch, 2 * per_batch)
        grown = _census() - before
    per_group = {name: n / per_batch for name, n in sorted(grown.items())}
    assert per_group == IDLE_GROUP_CENSUS
    assert sum(per_group.values()) == 12


def _replica() -> Replica:
    storage = new_storage([1])
    rn = RawNode(new_test_config(1, 10, 1, storage))
    return Replica(
        7, 1, rn, storage, gb._CounterMachine(), SnapshotPolicy(0, 0, 0), ConfState(voters=(1,)), 0
    )


def _outcome(w: Waiter) -> object:
    assert w.done
    return w._error if w._error is not None else w._value


def test_request_lists_of_a_replica_are_the_empty_tuple_until_used_and_after() -> None:
    r = _replica()
    assert (r.campaign_waiters, r.ops, r.reads_awaiting_apply) == ((), (), ())
    assert not r.has_pending_requests
    w1, w2 = Waiter(), Waiter()
    r.add_campaign_waiter(w1)
    r.add_campaign_waiter(w2)
    assert r.campaign_waiters == [w1, w2]
    r.campaign()
    assert (r.campaign_waiters, _outcome(w1), _outcome(w2)) == ((), None, None)
    r.applied = 3
    now, later, first = Waiter(), Waiter(), Waiter()
    r.await_apply(3, 1, now)
    assert (_outcome(now), r.reads_awaiting_apply) == (3, ())
    r.await_apply(9, 2, later)
    r.await_apply(5, 3, first)
    assert [(i, s) for i, s, _ in r.reads_awaiting_apply] == [(5, 3), (9, 2)]
    assert r.has_pending_requests
    r.applied = 6
    r.release_reads()
    assert (_outcome(first), later.done, len(r.reads_awaiting_apply)) == (5, False, 1)
    r.applied = 9
    r.release_reads()
    assert (_outcome(later), r.reads_awaiting_apply) == (9, ())
    r.release_reads()
    assert not r.has_pending_requests


def test_failing_a_replica_fails_its_waiters_and_leaves_the_empty_tuples() -> None:
    r = _replica()
    campaign, read = Waiter(), Waiter()
    r.add_campaign_waiter(campaign)
    r.await_apply(4, 1, read)
    queue = RequestQueue(None, lambda: None)  # adding needs no table
    queue.add(r, Replica.campaign)
    error = RuntimeError("stopped")
    r.fail_all(error)
    assert (_outcome(campaign), _outcome(read)) == (error, error)
    assert (r.campaign_waiters, r.ops, r.reads_awaiting_apply) == ((), (), ())


def test_queued_requests_make_one_list_and_queue_the_replica_once() -> None:
    r = _replica()
    signals: list[None] = []
    queue = RequestQueue(None, lambda: signals.append(None))  # adding needs no table
    first = Replica.campaign

    def second(replica: Replica) -> None:
        return None

    queue.add(r, first)
    queue.add(r, second)
    assert (r.ops, queue._pending, len(signals)) == ([first, second], [r], 2)
