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

The same cycle then runs the way a node is built (:func:`run_in_trio`): a task
reads the frame from its socket and hands it to a driver task through a
channel, the driver steps it and writes through ``trio.to_thread.run_sync``, and
the answer goes out with ``send_all``. The frames come from a plain thread that
sends one, waits for its answer and sends the next; its own CPU is left out.
Last, one trio task reads each frame and runs its whole cycle itself, the
write on the event loop: what a node that runs a frame to completion would pay.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from multiraft.bench.report import BenchReport, bench_parser, run_main
from multiraft.frames import Frame, GroupMessage
from multiraft.kv import KVCommand, KVStateMachine
from multiraft.ports import GroupWrite, WriteBatch
from multiraft.proposals import HEADER_SIZE
from multiraft.raft import (
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    RawNode,
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


_WARMUP = 5


class _Follower:
    """A follower of one group on a durable engine, with a KV state machine."""

    def __init__(self, engine: Any, sync: bool) -> None:
        snapshot = Snapshot(
            metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2, 3)), index=3, term=1)
        )
        engine.write(
            WriteBatch([GroupWrite(_GROUP, snapshot=snapshot, hard_state=HardState(1, 0, 3))])
        )
        self.engine = engine
        self.sync = sync
        self.node = RawNode(Config(id=_FOLLOWER, storage=engine.storage(_GROUP), applied=3))
        self.sm = KVStateMachine()

    def step(self, frame: Frame) -> WriteBatch:
        """Step ``frame``; the write its Ready needs (the Ready is kept for :meth:`finish`)."""
        for gm in frame.messages:
            self.node.step(gm.message)
        rd = self.rd = self.node.ready()
        return WriteBatch(
            [GroupWrite(_GROUP, entries=rd.entries, hard_state=rd.hard_state)], self.sync
        )

    def finish(self) -> Frame:
        """Apply and advance the Ready once written; the answer frame to send."""
        rd = self.rd
        answer = Frame(_FOLLOWER, _LEADER)
        for m in rd.messages:
            answer.messages.append(GroupMessage(_GROUP, m))
        for e in rd.committed_entries:
            if e.type is EntryType.NORMAL and e.data:
                self.sm.apply(e.index, e.data[HEADER_SIZE:])
        self.node.advance(rd)
        return answer


@contextmanager
def _follower(sync: bool) -> Iterator[_Follower]:
    from storage.engine import DurableLogEngine

    with tempfile.TemporaryDirectory(prefix="multiraft-bench-cycle-") as root:
        engine = DurableLogEngine.open(root)
        try:
            yield _Follower(engine, sync)
        finally:
            engine.close()


def _result(cpu: float, wall: float, cycles: int, per_frame: int, applied: int) -> dict[str, float]:
    return {
        "cpu_us": cpu / cycles * 1e6,
        "wall_us": wall / cycles * 1e6,
        "cpu_us_per_entry": cpu / (cycles * per_frame) * 1e6,
        "applied": applied,
    }


def run(per_frame: int, cycles: int, sync: bool = True) -> dict[str, float]:
    """Run ``cycles`` follower cycles of ``per_frame`` entries; CPU and wall per cycle.

    Returns ``cpu_us`` and ``wall_us`` per cycle, ``cpu_us_per_entry``, and
    ``applied`` (the state machine's last applied index, a check that every
    command went through).
    """
    from transport.wire import decode_frame, encode_frame

    frames = _frames(per_frame, cycles + _WARMUP)
    ours, theirs = socket.socketpair()
    with _follower(sync) as f, ours, theirs:
        out_fd = ours.fileno()

        def cycle(data: bytes) -> None:
            f.engine.write(f.step(decode_frame(data)))
            os.write(out_fd, encode_frame(f.finish()))
            theirs.recv(1 << 20)

        for data in frames[:_WARMUP]:
            cycle(data)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for data in frames[_WARMUP:]:
            cycle(data)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        return _result(cpu, wall, cycles, per_frame, f.sm.applied_index)


def run_in_trio(per_frame: int, cycles: int, one_task: bool = False) -> dict[str, float]:
    """The same cycles, built as a node builds them (see the module docs); as :func:`run`.

    With ``one_task`` the reader task runs each cycle itself, writing on the
    event loop and answering with a non-blocking ``os.write``: a node built to
    run a frame to completion, for comparison.
    """
    import trio

    from transport.framing import HEADER, FrameReader, Kind, record
    from transport.wire import decode_frame, encode_frame

    frames = [record(Kind.FRAME, f) for f in _frames(per_frame, cycles + _WARMUP)]
    leader_end, follower_end = socket.socketpair()
    leader_cpu = [0.0]

    def leader() -> None:
        # Plain blocking I/O in a thread of its own: one frame, its whole answer, the next.
        began = time.thread_time()
        for data in frames:
            leader_end.sendall(data)
            size, _ = HEADER.unpack(_recv_exactly(leader_end.recv, HEADER.size))
            _recv_exactly(leader_end.recv, size)
            if data is frames[_WARMUP - 1]:
                began = time.thread_time()
        leader_cpu[0] = time.thread_time() - began

    async def follower(f: _Follower) -> tuple[float, float]:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(follower_end))
        reader = FrameReader(stream, 1 << 24, idle_timeout=60.0)
        send, receive = trio.open_memory_channel[bytes](1)
        marks: list[tuple[float, float]] = []

        async def read() -> None:
            async with send:
                with reader.idle_deadline():
                    while (got := await reader.read()) is not None:
                        await send.send(got[1])

        async def read_and_run() -> None:
            out_fd = follower_end.fileno()
            done = 0
            with reader.idle_deadline():
                while (got := await reader.read()) is not None:
                    f.engine.write(f.step(decode_frame(got[1])))
                    answer = record(Kind.FRAME, encode_frame(f.finish()))
                    # The socket takes a small answer whole (the leader reads each).
                    if os.write(out_fd, answer) != len(answer):
                        raise RuntimeError("the socket took part of an answer")
                    done += 1
                    if done in (_WARMUP, _WARMUP + cycles):
                        marks.append((time.process_time(), time.perf_counter()))

        async def drive() -> None:
            async with receive:
                done = 0
                async for payload in receive:
                    batch = f.step(decode_frame(payload))
                    await trio.to_thread.run_sync(f.engine.write, batch)
                    await stream.send_all(record(Kind.FRAME, encode_frame(f.finish())))
                    done += 1
                    if done in (_WARMUP, _WARMUP + cycles):
                        marks.append((time.process_time(), time.perf_counter()))

        async with trio.open_nursery() as nursery:
            if one_task:
                send.close()
                receive.close()
                nursery.start_soon(read_and_run)
            else:
                nursery.start_soon(read)
                nursery.start_soon(drive)
            thread = threading.Thread(target=leader, name="bench-cycle-leader")
            thread.start()
            await trio.to_thread.run_sync(thread.join)
            # The leader is done: its end of the stream closes, the reader ends.
            leader_end.shutdown(socket.SHUT_WR)
        (cpu0, wall0), (cpu1, wall1) = marks
        return cpu1 - cpu0, wall1 - wall0

    with _follower(True) as f, leader_end, follower_end:
        cpu, wall = trio.run(follower, f)
        return _result(cpu - leader_cpu[0], wall, cycles, per_frame, f.sm.applied_index)


def _recv_exactly(recv: Callable[[int], bytes], n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = recv(n - len(data))
        if not chunk:
            raise ConnectionError("the follower closed the connection")
        data += chunk
    return data


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
    for per_frame in (1, 150):
        got = details[f"{per_frame} in trio"] = run_in_trio(per_frame, cycles)
        label = f"{per_frame}-entry cycle in trio, reader and driver tasks, to_thread write"
        report.add(f"{label}, CPU", got["cpu_us"], "us")
        report.add(f"{label}, wall", got["wall_us"], "us")
    got = details["1 in one trio task"] = run_in_trio(1, cycles, one_task=True)
    label = "1-entry cycle in one trio task, write on the event loop"
    report.add(f"{label}, CPU", got["cpu_us"], "us")
    report.add(f"{label}, wall", got["wall_us"], "us")
    report.details = details
    return report


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; print the figures (and write JSON with ``--json``)."""
    return run_main(measure, parser(), argv)
