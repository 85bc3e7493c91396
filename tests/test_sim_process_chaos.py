"""Chaos on real ``multiraft node`` processes: SIGKILL, restarts, cut links, a checked history.

Three node processes on 127.0.0.1 with durable data directories serve a few KV
groups. Client tasks put and read keys through the admin ports of random nodes
and record every operation (invocation, outcome) in a history, while a fault
task kills a random node with SIGKILL and starts it again, and cuts and
restores the connections between nodes. After the faults stop, every replica
must converge, a final read of every key joins the history, and the history
must be linearizable: so no acknowledged write was lost or reordered.

Real time and real processes make a run unrepeatable, but the seed fixes every
choice (faults, targets, keys, pauses); it is printed and named in every
failure. Replay the choices with ``MULTIRAFT_CHAOS_SEED=<seed> python3 -m pytest
tests/test_sim_process_chaos.py``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import trio

from multiraft.admin import AdminError
from multiraft.testing.history import History
from multiraft.testing.linearizability import OpKind, check_history
from multiraft.testing.trace import EventTrace
from tests.process_cluster import ProcessCluster, process_cluster

NODES = (1, 2, 3)
GROUPS = list(range(1, 7))
KEYS = [b"a", b"b", b"c"]
CHAOS_SECONDS = 12.0
#: A call without an answer by then is given up (its outcome unknown). The node's own
#: proposal timeout is 3 s; a call on a connection closed under it may never answer.
CALL_SECONDS = 8.0
#: Errors a node raises before a write could be submitted: it certainly did not apply.
NOT_SUBMITTED = {"NotLeaderError", "GroupNotFoundError"}
#: What a call may raise when its node dies or its connection is cut under it.
CONNECTION_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def chaos_seed() -> int:
    text = os.environ.get("MULTIRAFT_CHAOS_SEED")
    return int(text) if text else random.SystemRandom().randrange(1 << 30)


class Chaos:
    """The cluster under test, its history and the faults done so far."""

    def __init__(self, cluster: ProcessCluster, seed: int) -> None:
        self.cluster = cluster
        self.seed = seed
        self.history = History(EventTrace())
        self.faults: list[str] = []
        self.acknowledged = 0
        self.stop = trio.Event()

    def up(self) -> list[int]:
        return [n for n in NODES if self.cluster[n].running and self.cluster[n].admin is not None]

    async def call(self, node_id: int, op: str, **fields: Any) -> Any:
        with trio.move_on_after(CALL_SECONDS):
            return await self.cluster[node_id].call(op, **fields)
        raise trio.BrokenResourceError(f"no answer from node {node_id} in {CALL_SECONDS}s")

    def context(self) -> str:
        return f"seed {self.seed}; faults: {'; '.join(self.faults[-12:])}"

    async def client(self, client_id: int) -> None:
        rng = random.Random(f"{self.seed}-client-{client_id}")
        seq = 0
        while not self.stop.is_set():
            await trio.sleep(rng.uniform(0.0, 0.02))
            nodes = self.up()
            if not nodes:
                continue
            node_id, g, key = rng.choice(nodes), rng.choice(GROUPS), rng.choice(KEYS)
            if rng.random() < 0.5:
                seq += 1
                await self._put(node_id, client_id, g, key, b"%d.%d" % (client_id, seq))
            else:
                await self._get(node_id, client_id, g, key)

    async def _put(self, node_id: int, client_id: int, g: int, key: bytes, value: bytes) -> None:
        op = self.history.invoke(client_id, g, key, OpKind.PUT, value)
        try:
            await self.call(node_id, "put", group=g, key=key, value=value)
        except AdminError as exc:
            if exc.error in NOT_SUBMITTED:
                self.history.failed(op, exc.error)
            else:
                self.history.unknown(op, exc.error)
            return
        except CONNECTION_ERRORS as exc:
            self.history.unknown(op, type(exc).__name__)
            return
        self.history.ok(op)
        self.acknowledged += 1

    async def _get(self, node_id: int, client_id: int, g: int, key: bytes) -> None:
        op = self.history.invoke(client_id, g, key, OpKind.GET)
        try:
            value = await self.call(node_id, "get", group=g, key=key)
        except (AdminError, *CONNECTION_ERRORS) as exc:
            self.history.failed(op, type(exc).__name__)
            return
        self.history.ok(op, None if value is None else bytes(value))

    async def faults_loop(self, rng: random.Random) -> None:
        """Kill and restart nodes, cut and restore links, until the chaos time is over."""
        with trio.move_on_after(CHAOS_SECONDS):
            while True:
                await trio.sleep(rng.uniform(0.3, 1.2))
                if rng.random() < 0.5:
                    await self._kill_and_restart(rng)
                else:
                    await self._cut(rng)

    async def _kill_and_restart(self, rng: random.Random) -> None:
        victim = rng.choice(NODES)
        down = rng.uniform(0.2, 2.0)
        self.faults.append(f"SIGKILL node {victim} for {down:.1f}s")
        await self.cluster[victim].kill()
        await trio.sleep(down)
        await self.cluster[victim].start()

    async def _cut(self, rng: random.Random) -> None:
        a = rng.choice(NODES)
        others = [n for n in NODES if n != a]
        cut = others if rng.random() < 0.5 else [rng.choice(others)]
        length = rng.uniform(0.2, 2.0)
        self.faults.append(f"cut node {a} from {cut} for {length:.1f}s")
        if a not in self.up():
            return
        try:
            await self.call(a, "block", nodes=cut)
            await trio.sleep(length)
        finally:
            if a in self.up():
                with trio.CancelScope(shield=True):
                    await self.call(a, "unblock", nodes=cut)

    async def converge(self, timeout: float) -> None:
        """Wait until every node holds the same data for every group."""
        with trio.move_on_after(timeout):
            while True:
                try:
                    dumps = [
                        [(await self.call(n, "dump", group=g))["data"] for g in GROUPS]
                        for n in NODES
                    ]
                except (AdminError, *CONNECTION_ERRORS):
                    dumps = []
                if dumps and all(d == dumps[0] for d in dumps):
                    return
                await trio.sleep(0.2)
        raise AssertionError(f"replicas did not converge within {timeout}s ({self.context()})")

    async def final_reads(self) -> None:
        """A linearizable read of every key, retried until it succeeds, joins the history."""
        for g in GROUPS:
            for key in KEYS:
                with trio.fail_after(20):
                    while True:
                        before = len(self.history.operations)
                        await self._get(NODES[0], 0, g, key)
                        if len(self.history.operations) > before:
                            break
                        await trio.sleep(0.1)


async def test_sigkill_restarts_and_connection_cuts_keep_the_history_linearizable(
    tmp_path: Path,
) -> None:
    seed = chaos_seed()
    print(f"chaos seed {seed} (replay the choices: MULTIRAFT_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    snapshots = ["--snapshot-entries", "30", "--snapshot-keep-entries", "5"]
    with trio.fail_after(150):
        async with process_cluster(tmp_path, len(NODES), snapshots) as cluster:
            chaos = Chaos(cluster, seed)
            for n in NODES:
                await chaos.call(n, "create_groups", groups=GROUPS, replicas=list(NODES))
            for g in GROUPS:
                await chaos.call(g % 3 + 1, "campaign", group=g)
            async with trio.open_nursery() as nursery:
                for c in range(1, 9):
                    nursery.start_soon(chaos.client, c)
                await chaos.faults_loop(rng)
                chaos.stop.set()
            for n in NODES:
                if not cluster[n].running:
                    await cluster[n].start()
                await chaos.call(n, "unblock", nodes=[m for m in NODES if m != n])
            await chaos.converge(40)
            await chaos.final_reads()
    kills = sum(1 for f in chaos.faults if f.startswith("SIGKILL"))
    cuts = len(chaos.faults) - kills
    result = check_history(chaos.history.operations)
    print(
        f"chaos seed {seed}: {kills} kills, {cuts} cuts, {len(chaos.history.operations)} "
        f"operations checked ({chaos.acknowledged} acknowledged writes, "
        f"{chaos.history.unknown_count} unknown outcomes)"
    )
    assert chaos.faults, chaos.context()
    assert chaos.acknowledged > 50, chaos.context()
    failures = "\n".join(k.describe() for k in result.failures())
    assert result.ok, f"{chaos.context()}\n{failures}"
