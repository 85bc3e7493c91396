"""Real SIGKILL: a child process writing batches is killed at random moments.

The child writes batch ``k`` as entry ``k`` of each of 40 groups (and their
hard states, and every 25 batches a snapshot and compaction), with small
segments so rotations and garbage collection happen, and prints ``k`` once
``write`` returned. The parent kills it with SIGKILL at a random moment,
reopens the engine and checks that every acknowledged batch is there, that
batches are atomic (all groups end at the same index) and that the log is
whole; then starts the child again, which continues where the log ends.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from multiraft.raft.types import HardState
from storage.engine import DurableLogEngine

_GROUPS = 40
_KILLS = 20
_SEED = 20240607

_CHILD = r"""
import sys
from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from storage.engine import DurableLogEngine

engine = DurableLogEngine.open(sys.argv[1], segment_bytes=64 * 1024)
groups = int(sys.argv[2])
k = engine.storage(1).last_index() + 1
while True:
    writes = []
    for g in range(1, groups + 1):
        gw = GroupWrite(g, entries=[Entry(1, k, data=b"%d:%d" % (k, g) * 4)])
        gw.hard_state = HardState(term=1, vote=0, commit=k)
        if k % 25 == 0:
            meta = SnapshotMetadata(ConfState(voters=(1,)), k - 5, 1)
            gw.created_snapshot = Snapshot(meta, b"state at %d" % (k - 5))
            gw.compact_to = k - 10
        writes.append(gw)
    engine.write(WriteBatch(writes))
    print(k, flush=True)
    k += 1
"""


def _run_child_until_killed(path: str, rng: random.Random) -> list[int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, path, str(_GROUPS)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    # Let it get going (the first acknowledgement), then kill it at a random moment.
    first = child.stdout.readline()
    time.sleep(rng.uniform(0.0, 0.25))
    child.send_signal(signal.SIGKILL)
    rest = child.stdout.read()
    child.stdout.close()
    child.wait()
    acked = [int(x) for x in (first + rest).split()]
    assert acked, "the child acknowledged nothing"
    return acked


def test_every_acknowledged_batch_survives_sigkill(tmp_path: Path) -> None:
    rng = random.Random(_SEED)
    path = str(tmp_path / "log")
    highest_acked = 0
    for kill in range(_KILLS):
        acked = _run_child_until_killed(path, rng)
        assert acked == list(range(acked[0], acked[-1] + 1)), f"seed {_SEED}, kill {kill}"
        highest_acked = acked[-1]
        engine = DurableLogEngine.open(path, segment_bytes=64 * 1024)
        try:
            assert engine.corruption_found() == [], f"seed {_SEED}, kill {kill}"
            lasts = {engine.storage(g).last_index() for g in range(1, _GROUPS + 1)}
            assert len(lasts) == 1, f"seed {_SEED}, kill {kill}: a batch was split: {lasts}"
            last = lasts.pop()
            assert last >= highest_acked, (
                f"seed {_SEED}, kill {kill}: lost {last + 1}..{highest_acked}"
            )
            for g in (1, rng.randint(2, _GROUPS)):
                view = engine.storage(g)
                first = view.first_index()
                got = view.entries(first, last + 1)
                assert [e.index for e in got] == list(range(first, last + 1))
                assert all(e.data == b"%d:%d" % (e.index, g) * 4 for e in got)
                assert view.initial_state()[0] == HardState(term=1, vote=0, commit=last)
                if last >= 25:
                    snap = view.snapshot()
                    want_index = last // 25 * 25 - 5
                    assert (snap.metadata.index, snap.data) == (
                        want_index,
                        b"state at %d" % want_index,
                    )
        finally:
            engine.close()
    assert highest_acked > _KILLS, f"seed {_SEED}: too little written to mean anything"
