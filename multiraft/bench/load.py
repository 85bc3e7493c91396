"""Proposal load on one node's groups, measuring commits and latency.

The same generator drives the in-process and the multi-process runs of
``multiraft bench cluster`` (in a node process it runs behind the admin op
``load``), so the two differ only in how nodes reach each other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from multiraft.errors import NotLeaderError, ProposalDroppedError, ProposalTimeoutError
from multiraft.kv import KVCommand

if TYPE_CHECKING:
    from multiraft.node import Node

__all__ = ["latency_summary", "percentile", "run_load"]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``sorted_values`` lie (nearest rank); 0 if empty."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_summary(latencies: list[float], samples: int) -> dict[str, Any]:
    """Percentiles of ``latencies`` (seconds, sorted in place) in milliseconds.

    ``p50_ms``, ``p99_ms``, ``p999_ms``, and ``samples_ms``: up to ``samples``
    latencies evenly spaced over the sorted ones (to merge several nodes' figures).
    """
    latencies.sort()
    # Rounded up: a step rounded down would yield up to twice ``samples`` values.
    step = max(1, -(-len(latencies) // samples)) if samples else 0
    return {
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "p999_ms": percentile(latencies, 0.999) * 1000,
        "samples_ms": [x * 1000 for x in latencies[::step]] if step else [],
    }


async def run_load(
    node: Node,
    groups: Sequence[int],
    seconds: float,
    outstanding: int,
    value_size: int = 100,
    samples: int = 0,
) -> dict[str, Any]:
    """Keep ``outstanding`` KV puts in flight per group for ``seconds``.

    Returns ``commits`` (acknowledged puts), ``errors`` (refused or timed-out
    proposals, retried), ``elapsed`` seconds, and the latencies of acknowledged
    puts as :func:`latency_summary` gives them.
    """
    latencies: list[float] = []
    errors = 0
    value = b"v" * value_size
    deadline = time.perf_counter() + seconds

    async def proposer(group_id: int, slot: int) -> None:
        nonlocal errors
        command = KVCommand("put", b"key-%d" % slot, value).to_bytes()
        propose = node.propose
        clock = time.perf_counter
        while clock() < deadline:
            start = clock()
            try:
                await propose(group_id, command)
            except (NotLeaderError, ProposalDroppedError, ProposalTimeoutError):
                errors += 1
                await trio.sleep(0.01)
                continue
            latencies.append(clock() - start)

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for group_id in groups:
            for slot in range(outstanding):
                nursery.start_soon(proposer, group_id, slot)
    elapsed = time.perf_counter() - began
    out: dict[str, Any] = {"commits": len(latencies), "errors": errors, "elapsed": elapsed}
    out.update(latency_summary(latencies, samples))
    return out
