"""A self-checking KV workload: concurrent workers, each owning its own keys.

Worker ``w`` only touches keys ending in ``.<w>``, so it knows exactly what each
of its keys must hold and checks every read, compare-and-set and scan against
that, while all workers together spread writes uniformly over the key space
(keys start with random hex digits), which makes ranges grow and split
everywhere. Mismatches are collected, not raised, so a run reports all of them.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import attrs
import trio

from examples.rangekv.client import AmbiguousWriteError, RangeClient

__all__ = ["Workload", "WorkloadCounts"]


@attrs.define
class WorkloadCounts:
    """Operations completed, by kind."""

    puts: int = 0
    gets: int = 0
    deletes: int = 0
    cas: int = 0
    scans: int = 0

    @property
    def total(self) -> int:
        """All operations."""
        return self.puts + self.gets + self.deletes + self.cas + self.scans


class Workload:
    """Runs ``workers`` concurrent workers against ``client`` until :meth:`stop`.

    Stopping lets each worker finish its operation in flight, so that what the
    workload expects is exactly what the store was told.
    """

    def __init__(
        self, client: RangeClient, *, workers: int = 64, seed: int = 0, value_bytes: int = 16
    ) -> None:
        self.client = client
        self.workers = workers
        self.seed = seed
        self.value_bytes = value_bytes
        self.counts = WorkloadCounts()
        #: Descriptions of every check that failed.
        self.mismatches: list[str] = []
        self._owned: list[dict[bytes, bytes]] = [{} for _ in range(workers)]
        self._stopping = False

    def expected(self) -> dict[bytes, bytes]:
        """What the store must hold now: every worker's keys."""
        out: dict[bytes, bytes] = {}
        for owned in self._owned:
            out.update(owned)
        return out

    def stop(self) -> None:
        """Ask every worker to stop after its current operation (``run`` then returns)."""
        self._stopping = True

    async def run(self) -> None:
        """Run every worker until :meth:`stop` is called."""
        async with trio.open_nursery() as nursery:
            for w in range(self.workers):
                nursery.start_soon(self._worker, w)

    async def _worker(self, w: int) -> None:
        rng = random.Random(self.seed * 100_003 + w)
        owned = self._owned[w]
        keys: list[bytes] = []
        suffix = f".{w:03d}".encode()
        while not self._stopping:
            r = rng.random()
            if r < 0.75 or not keys:
                key = f"{rng.getrandbits(36):09x}".encode() + suffix
                keys.append(key)
                await self._put(owned, key, rng)
                continue
            key = keys[rng.randrange(len(keys))]
            if r < 0.83:
                await self._put(owned, key, rng)
            elif r < 0.90:
                got = await self.client.get(key)
                self.counts.gets += 1
                self._check(got == owned.get(key), f"get {key!r}: {got!r}, want {owned.get(key)!r}")
            elif r < 0.93:
                await self._alone(self.client.delete, key)
                owned.pop(key, None)
                self.counts.deletes += 1
            elif r < 0.98:
                await self._compare_and_set(owned, key, rng)
            else:
                await self._scan(owned, key, suffix)

    def _value(self, rng: random.Random) -> bytes:
        return rng.randbytes(self.value_bytes // 2).hex().encode()

    async def _put(self, owned: dict[bytes, bytes], key: bytes, rng: random.Random) -> None:
        value = self._value(rng)
        await self._alone(self.client.put, key, value)
        owned[key] = value
        self.counts.puts += 1

    async def _alone(self, write: Callable[..., Awaitable[None]], *args: bytes) -> None:
        """Run ``write`` until its outcome is known (within the client's timeout):
        this worker alone writes its keys, so resending a write whose outcome was
        lost cannot undo anyone else's."""
        deadline = trio.current_time() + self.client.timeout
        while True:
            try:
                await write(*args)
                return
            except AmbiguousWriteError:
                if trio.current_time() > deadline:
                    raise

    async def _compare_and_set(
        self, owned: dict[bytes, bytes], key: bytes, rng: random.Random
    ) -> None:
        current = owned.get(key)
        expected = current if rng.random() < 0.75 else b"not-the-value"
        new = self._value(rng)
        try:
            outcome = await self.client.compare_and_set(key, expected, new)
        except AmbiguousWriteError:
            outcome = None
        self.counts.cas += 1
        if outcome is None:
            actual = await self.client.get(key)  # only this worker writes the key
        else:
            want_success = expected == current
            self._check(
                outcome.succeeded == want_success,
                f"cas {key!r}: succeeded={outcome.succeeded}, want {want_success}",
            )
            actual = new if outcome.succeeded else current
            self._check(outcome.current == actual, f"cas {key!r}: current {outcome.current!r}")
        if actual is None:
            owned.pop(key, None)
        else:
            owned[key] = actual

    async def _scan(self, owned: dict[bytes, bytes], start: bytes, suffix: bytes) -> None:
        items = await self.client.scan(start, None, 10)
        self.counts.scans += 1
        keys = [k for k, _ in items]
        self._check(keys == sorted(set(keys)), f"scan from {start!r}: keys out of order")
        if not items:
            return
        last = keys[-1]
        mine = {k: v for k, v in items if k.endswith(suffix)}
        want = {k: v for k, v in owned.items() if start <= k <= last}
        self._check(mine == want, f"scan from {start!r} to {last!r}: {mine!r}, want {want!r}")

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            self.mismatches.append(what)
