"""``multiraft bench cycle``: the floor of a follower's ready cycle, without the event loop.

One follower of one group runs ready cycles back to back, each on one append
frame from its leader, with the project's own parts and nothing else: the frame
decoded from its wire bytes, stepped into the ``RawNode``, the ``Ready``
written to the durable log engine (one ``fdatasync``), the answer encoded and
written to a socket, the committed commands applied to the KV state machine,
``advance``. No trio, no tasks, no worker thread.

What it measures is what a ready cycle must cost here at least, to set beside
the fixed cost per cycle that ``multiraft bench cluster`` fits for a node
(its ``CPU model`` lines): the difference is what the node's event-loop tasks,
their hand-offs and the storage thread's add.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from collections.abc import Sequence

from multiraft.bench.report import BenchReport, bench_parser, run_main
from multiraft.frames import Frame, GroupMessage
from multiraft.kv import KVCommand, KVStateMachine
from multiraft.ports import GroupWrite, WriteBatch
from multiraft.proposals import HEADER_SIZE
from multiraft.raft import Config, RawNode
from multiraft.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

__all__ = ["main", "measure", "parser", "run"]

_GROUP = 1
_LEADER = 1
_FOLLOWER = 2
_TERM = 2
#: Entries per frame in the runs: one command alone, a light load, half of the
#: one-group peak's cycles on the loopback cluster.
_SIZES = (1, 10, 150)


def _frames(per_frame: int, count: int) -> list[bytes]:
    """``count`` encoded append frames of ``per_frame`` KV puts each, in log order."""
    from transport.wire import encode_frame

    command = bytes(HEADER_SIZE) + KVCommand("put", b"key-1", b"v" * 100).to_bytes()
    out: list[bytes] = []
    prev = 3  # the group starts from a snapshot at index 3, term 1
    for _ in range(count):
        entries = tuple(
            Entry(term=_TERM, index=prev + 1 + j, type=EntryType.NORMAL, data=command)
            for j in range(per_frame)
        )
        m = Message(
            type=MessageType.APP,
            to=_FOLLOWER,
            from_=_LEADER,
            term=_TERM,
            log_term=_TERM if prev > 3 else 1,
            index=prev,
            entries=entries,
            commit=prev,
        )
        frame = Frame(_LEADER, _FOLLOWER)
        frame.messages.append(GroupMessage(_GROUP, m))
        out.append(encode_frame(frame))
        prev += per_frame
    return out


def run(per_frame: int, cycles: int, sync: bool = True) -> dict[str, float]:
    """Run ``cycles`` follower cycles of ``per_frame`` entries; CPU and wall per cycle.

    Returns ``cpu_us`` and ``wall_us`` per cycle, ``cpu_us_per_entry``, and
    ``applied`` (the state machine's last applied index, a check that every
    command went through).
    """
    from storage.engine import DurableLogEngine
    from transport.wire import decode_frame, encode_frame

    warmup = 5
    frames = _frames(per_frame, cycles + warmup)
    with tempfile.TemporaryDirectory(prefix="multiraft-bench-cycle-") as root:
        engine = DurableLogEngine.open(root)
        ours, theirs = socket.socketpair()
        try:
            snapshot = Snapshot(
                metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2, 3)), index=3, term=1)
            )
            engine.write(
                WriteBatch([GroupWrite(_GROUP, snapshot=snapshot, hard_state=HardState(1, 0, 3))])
            )
            node = RawNode(Config(id=_FOLLOWER, storage=engine.storage(_GROUP), applied=3))
            sm = KVStateMachine()
            out_fd = ours.fileno()

            def cycle(data: bytes) -> None:
                for gm in decode_frame(data).messages:
                    node.step(gm.message)
                rd = node.ready()
                gw = GroupWrite(_GROUP, entries=rd.entries, hard_state=rd.hard_state)
                engine.write(WriteBatch([gw], sync))
                answer = Frame(_FOLLOWER, _LEADER)
                for m in rd.messages:
                    answer.messages.append(GroupMessage(_GROUP, m))
                os.write(out_fd, encode_frame(answer))
                for e in rd.committed_entries:
                    if e.type is EntryType.NORMAL and e.data:
                        sm.apply(e.index, e.data[HEADER_SIZE:])
                node.advance(rd)
                theirs.recv(1 << 20)

            for data in frames[:warmup]:
                cycle(data)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for data in frames[warmup:]:
                cycle(data)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            ours.close()
            theirs.close()
            engine.close()
    return {
        "cpu_us": cpu / cycles * 1e6,
        "wall_us": wall / cycles * 1e6,
        "cpu_us_per_entry": cpu / (cycles * per_frame) * 1e6,
        "applied": sm.applied_index,
    }


def parser() -> argparse.ArgumentParser:
    """This benchmark's command line."""
    return bench_parser("cycle", __doc__)


def measure(args: argparse.Namespace) -> BenchReport:
    """Follower cycles of 1, 10 and 150 entries, synced, and of 1 entry unsynced."""
    cycles = 50 if args.tiny else 500 if args.quick else 2_000
    report = BenchReport("cycle", "a follower's ready cycle with no event loop, no thread")
    details: dict[str, dict[str, float]] = {}
    for per_frame in _SIZES:
        got = details[f"{per_frame} synced"] = run(per_frame, cycles)
        label = f"{per_frame}-entry cycle"
        report.add(f"{label}, CPU", got["cpu_us"], "us")
        report.add(f"{label}, wall (fdatasync included)", got["wall_us"], "us")
        report.add(f"{label}, CPU per entry", got["cpu_us_per_entry"], "us")
    got = details["1 unsynced"] = run(1, cycles, sync=False)
    report.add("1-entry cycle without fdatasync, CPU", got["cpu_us"], "us")
    report.details = details
    return report


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; print the figures (and write JSON with ``--json``)."""
    return run_main(measure, parser(), argv)
