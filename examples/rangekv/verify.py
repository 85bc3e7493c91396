"""End-of-run checks of a whole store: tiling, every replica's keys, linearizable reads."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import trio
from sortedcontainers import SortedDict

from examples.rangekv.client import HostLink, RangeClient
from examples.rangekv.descriptor import RangeDescriptor, TilingError, check_tiling
from examples.rangekv.protocol import DumpReply, DumpRequest, RangeDump

__all__ = ["VerificationError", "VerifyReport", "verify_store"]


class VerificationError(Exception):
    """The store does not hold what it must; the message lists what differs."""


@attrs.frozen
class VerifyReport:
    """What was checked."""

    ranges: int
    keys: int
    replicas_checked: int
    reads: int
    seconds_to_converge: float


async def _dumps(link: HostLink) -> dict[int, dict[int, RangeDump]]:
    out: dict[int, dict[int, RangeDump]] = {}
    for node_id in link.node_ids:
        reply = await link.call(node_id, DumpRequest())
        if not isinstance(reply, DumpReply):
            raise VerificationError(f"node {node_id} answered a dump with {reply!r}")
        out[node_id] = {d.range_id: d for d in reply.ranges}
    return out


def _replica_problems(
    ranges: Iterable[RangeDescriptor],
    dumps: dict[int, dict[int, RangeDump]],
    expected: SortedDict,
) -> tuple[list[str], int]:
    problems: list[str] = []
    checked = 0
    for r in ranges:
        want = {k: expected[k] for k in expected.irange(r.start, r.end, inclusive=(True, False))}
        for node_id in r.replicas:
            checked += 1
            dump = dumps.get(node_id, {}).get(r.range_id)
            if dump is None:
                problems.append(f"node {node_id} does not host {r.describe()}")
                continue
            d = dump.descriptor
            if d is None:
                problems.append(f"node {node_id} has not initialized {r.describe()}")
                continue
            if (d.start, d.end, d.generation) != (r.start, r.end, r.generation):
                problems.append(f"node {node_id} holds {d.describe()}, directory {r.describe()}")
                continue
            got = dict(dump.items)
            if got != want:
                missing = sorted(set(want) - set(got))
                extra = sorted(set(got) - set(want))
                wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])
                problems.append(
                    f"node {node_id} {r.describe()}: {len(missing)} keys missing {missing[:3]},"
                    f" {len(extra)} unexpected {extra[:3]}, {len(wrong)} wrong {wrong[:3]}"
                )
    return problems, checked


async def _read_back(
    client: RangeClient, ranges: list[RangeDescriptor], want: SortedDict, readers: int
) -> tuple[int, list[str]]:
    """Scan every range through its leader (linearizable) and compare with ``want``."""
    wrong: list[str] = []
    read = 0

    async def reader(chunk: list[RangeDescriptor]) -> None:
        nonlocal read
        for r in chunk:
            got = await client.scan(r.start, r.end)
            expected = [(k, want[k]) for k in want.irange(r.start, r.end, inclusive=(True, False))]
            read += len(got)
            if got != expected:
                missing = sorted(set(expected) - set(got))
                extra = sorted(set(got) - set(expected))
                wrong.append(
                    f"scan of {r.describe()}: {len(missing)} items missing {missing[:3]},"
                    f" {len(extra)} unexpected {extra[:3]}"
                )

    async with trio.open_nursery() as nursery:
        for i in range(readers):
            nursery.start_soon(reader, ranges[i::readers])
    return read, wrong


async def verify_store(
    link: HostLink,
    client: RangeClient,
    expected: dict[bytes, bytes],
    *,
    timeout: float = 60.0,
    readers: int = 64,
) -> VerifyReport:
    """Check the store holds exactly ``expected`` on every replica, and reads it back.

    Waits up to ``timeout`` seconds for replicas to catch up (and pending splits
    to finish), then checks: the directory tiles the key space; every replica
    of every range is initialized with the directory's bounds and exactly the
    expected keys of its range; a linearizable scan of every range (through its
    leader) returns exactly its expected items, so every key reads back and no
    deleted key does. Raises :class:`VerificationError`.
    """
    started = trio.current_time()
    want = SortedDict(expected)
    delay = 0.05
    while True:
        ranges = await client.ranges()
        try:
            check_tiling(ranges)
        except TilingError as exc:
            raise VerificationError(f"the directory does not tile the key space: {exc}") from exc
        problems, checked = _replica_problems(ranges, await _dumps(link), want)
        if not problems:
            break
        if trio.current_time() - started > timeout:
            shown = "\n  ".join(problems[:10])
            raise VerificationError(
                f"{len(problems)} replica problems after {timeout}s, e.g.:\n  {shown}"
            )
        await trio.sleep(delay)
        delay = min(delay * 2, 1.0)
    converged = trio.current_time() - started
    read, wrong = await _read_back(client, ranges, want, readers)
    if wrong:
        shown = "\n  ".join(wrong[:10])
        raise VerificationError(f"{len(wrong)} ranges read back wrong, e.g.:\n  {shown}")
    return VerifyReport(len(ranges), len(expected), checked, read, round(converged, 3))
