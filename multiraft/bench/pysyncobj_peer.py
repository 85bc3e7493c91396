"""One PySyncObj node process for ``multiraft bench compare`` (needs the ``compare`` extra).

``load`` mode hosts one replicated key-value group on one port; the node that
sees itself leader keeps ``--outstanding`` puts in flight for ``--seconds`` and
prints its commits and latencies as one JSON line. ``groups`` mode hosts more
and more groups, a port (and PySyncObj's tick thread) each, ``--step`` at a
time, until every group it hosts has a leader or a bound is hit, and prints one
JSON line per step and a final one with the count it reached.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated

from multiraft.bench.load import percentile

__all__ = ["ReplicatedDict", "main"]


class ReplicatedDict(SyncObj):  # type: ignore[misc]
    """A dict replicated by PySyncObj: the state machine of both modes."""

    def __init__(self, self_address: str, partners: list[str]) -> None:
        conf = SyncObjConf(dynamicMembershipChange=False, appendEntriesUseBatch=True)
        super().__init__(self_address, partners, conf)
        self.data: dict[bytes, bytes] = {}

    @replicated  # type: ignore[untyped-decorator]
    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value`` on every replica."""
        self.data[key] = value


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _wait_leader(objs: Sequence[ReplicatedDict], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(o._getLeader() is not None for o in objs):
            return True
        time.sleep(0.05)
    return False


def _load(args: argparse.Namespace) -> None:
    addrs = [f"127.0.0.1:{p}" for p in args.ports]
    me = addrs[args.node - 1]
    obj = ReplicatedDict(me, [a for a in addrs if a != me])
    if not _wait_leader([obj], 30):
        _emit({"node": args.node, "error": "no leader within 30 s"})
        return
    time.sleep(0.5)
    if not obj._isLeader():
        # Followers only serve the leader's load: stay up until it is over.
        time.sleep(args.seconds + 5)
        _emit({"node": args.node, "leader": False})
        return
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    value = b"v" * args.value_size
    deadline = time.perf_counter() + args.seconds
    finished = threading.Event()
    running = args.outstanding

    def issue(slot: int) -> None:
        nonlocal running
        started = time.perf_counter()
        if started >= deadline:
            with lock:
                running -= 1
                if running == 0:
                    finished.set()
            return

        def done(result: object, error: int) -> None:
            nonlocal errors
            with lock:
                if error == 0:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
            issue(slot)

        obj.put(b"key-%d" % slot, value, callback=done)

    began = time.perf_counter()
    for slot in range(args.outstanding):
        issue(slot)
    finished.wait(args.seconds + 30)
    elapsed = time.perf_counter() - began
    latencies.sort()
    _emit(
        {
            "node": args.node,
            "leader": True,
            "commits": len(latencies),
            "errors": errors,
            "elapsed": elapsed,
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
        }
    )
    time.sleep(1)


def _groups(args: argparse.Namespace) -> None:
    objs: list[ReplicatedDict] = []
    rss0 = _rss_bytes()
    deadline = time.monotonic() + args.seconds
    reached = 0
    why = "max groups"
    while len(objs) < args.max_groups:
        if time.monotonic() > deadline:
            why = "time bound"
            break
        if _rss_bytes() - rss0 > args.rss_mib << 20:
            why = "memory bound"
            break
        try:
            for _ in range(min(args.step, args.max_groups - len(objs))):
                g = len(objs)
                addrs = [f"127.0.0.1:{args.base_port + n * args.max_groups + g}" for n in range(3)]
                me = addrs[args.node - 1]
                objs.append(ReplicatedDict(me, [a for a in addrs if a != me]))
        except (OSError, RuntimeError, MemoryError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            break
        if not _wait_leader(objs, max(1.0, deadline - time.monotonic())):
            why = "time bound (waiting for leaders)"
            break
        reached = len(objs)
        _emit({"node": args.node, "groups": reached, "rss": _rss_bytes() - rss0})
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(args.idle)
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    _emit(
        {
            "node": args.node,
            "final": True,
            "reached": reached,
            "stopped_by": why,
            "rss_per_group": (_rss_bytes() - rss0) / max(1, len(objs)),
            "threads": threading.active_count(),
            "idle_cpu": cpu,
        }
    )
    time.sleep(args.linger)
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one node in ``load`` or ``groups`` mode."""
    p = argparse.ArgumentParser(prog="python -m multiraft.bench.pysyncobj_peer")
    p.add_argument("mode", choices=("load", "groups"))
    p.add_argument("--node", type=int, required=True, help="1, 2 or 3")
    p.add_argument("--ports", type=lambda s: [int(x) for x in s.split(",")], default=[])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--outstanding", type=int, default=256)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--base-port", type=int, default=30000)
    p.add_argument("--max-groups", type=int, default=1000)
    p.add_argument("--step", type=int, default=50)
    p.add_argument("--rss-mib", type=int, default=1024)
    p.add_argument("--idle", type=float, default=2.0)
    p.add_argument("--linger", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.mode == "load":
        _load(args)
    else:
        _groups(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
