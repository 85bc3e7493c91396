"""``multiraft bench raft``: one group, three RawNodes in one process, no I/O.

Measures the raft core alone: committed-and-applied entries per second with
batched proposals and with one proposal at a time, and steps per second. Logs
are MemoryStorage; messages go straight from one node's Ready to the other's step.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Sequence

from multiraft.bench.report import BenchReport, bench_parser, run_main
from multiraft.raft import ConfChange, Config, EntryType, Message, RawNode

__all__ = ["main", "measure", "parser", "run"]

_PAYLOAD = 128


class _Cluster:
    """Three RawNodes wired directly, following the Ready contract."""

    def __init__(self, n: int = 3, max_size_per_msg: int = 1 << 20) -> None:
        from storage import MemoryStorage

        ids = list(range(1, n + 1))
        self.storages = {i: MemoryStorage() for i in ids}
        self.nodes = {
            i: RawNode(
                Config(
                    id=i,
                    storage=self.storages[i],
                    max_size_per_msg=max_size_per_msg,
                    max_inflight_msgs=256,
                )
            )
            for i in ids
        }
        for node in self.nodes.values():
            node.bootstrap(ids)
        self.applied = dict.fromkeys(ids, 0)
        self.steps = 0
        self.inbox: deque[Message] = deque()

    def pump(self) -> None:
        """Run ready cycles until no node has work."""
        nodes = self.nodes
        storages = self.storages
        inbox = self.inbox
        busy = True
        while busy:
            busy = False
            for nid, node in nodes.items():
                if not node.has_ready():
                    continue
                busy = True
                rd = node.ready()
                st = storages[nid]
                if rd.snapshot is not None:
                    st.apply_snapshot(rd.snapshot)
                if rd.entries:
                    st.append(rd.entries)
                if rd.hard_state is not None:
                    st.set_hard_state(rd.hard_state)
                inbox.extend(rd.messages)
                count = 0
                for e in rd.committed_entries:
                    if e.type == EntryType.CONF_CHANGE:
                        node.apply_conf_change(ConfChange.from_bytes(e.data))
                    elif e.data:
                        count += 1
                self.applied[nid] += count
                node.advance(rd)
            while inbox:
                m = inbox.popleft()
                nodes[m.to].step(m)
                self.steps += 1
                busy = True


def run(entries: int, batch: int, *, batch_api: bool = True) -> dict[str, float]:
    """Commit ``entries`` proposals, ``batch`` per ready cycle; return rates.

    With ``batch_api`` a cycle's proposals go in one ``propose_batch`` call,
    otherwise one ``propose`` call each.
    """
    c = _Cluster()
    c.pump()
    c.nodes[1].campaign()
    c.pump()
    leader = c.nodes[1]
    payload = b"x" * _PAYLOAD
    steps0 = c.steps
    t0 = time.perf_counter()
    done = 0
    while done < entries:
        n = min(batch, entries - done)
        if batch_api:
            leader.propose_batch([payload] * n)
        else:
            for _ in range(n):
                leader.propose(payload)
        c.pump()
        done += n
    elapsed = time.perf_counter() - t0
    if min(c.applied.values()) != entries:
        raise AssertionError(f"applied {c.applied}, expected {entries} on every node")
    return {
        "entries_per_s": entries / elapsed,
        "steps_per_s": (c.steps - steps0) / elapsed,
        "seconds": elapsed,
    }


def parser() -> argparse.ArgumentParser:
    """This benchmark's command line."""
    return bench_parser("raft", __doc__)


def measure(args: argparse.Namespace) -> BenchReport:
    """Run the raft core benchmark; return its figures."""
    report = BenchReport("raft", "single group, 3 RawNodes in-process, 128-byte entries")
    if args.tiny:
        batched_n, single_n = 2_000, 200
    else:
        batched_n = 20_000 if args.quick else 200_000
        single_n = 2_000 if args.quick else 20_000
    batched = run(batched_n, 1_000)
    per_call = run(batched_n // 4, 1_000, batch_api=False)
    single = run(single_n, 1)
    report.add(
        "batched (propose_batch, 1,000/cycle) entries/s", batched["entries_per_s"], "entries/s"
    )
    report.add(
        "batched (1,000 propose() calls/cycle) entries/s", per_call["entries_per_s"], "entries/s"
    )
    report.add("batched (1,000 propose() calls/cycle) steps/s", per_call["steps_per_s"], "steps/s")
    report.add("one at a time committed entries/s", single["entries_per_s"], "entries/s")
    report.add("one at a time steps/s", single["steps_per_s"], "steps/s")
    return report


def main(argv: Sequence[str]) -> int:
    """Run the raft core benchmark and print its figures."""
    return run_main(measure, parser(), argv)
