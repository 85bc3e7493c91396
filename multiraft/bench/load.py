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
from multiraft.proposals import Completions

if TYPE_CHECKING:
    from multiraft.node import Node

__all__ = ["REFUSED", "latency_summary", "percentile", "run_load"]

#: Refusals a put may meet: counted as errors (the closed loop retries them, the
#: open loop's schedule moves on).
REFUSED = (NotLeaderError, ProposalDroppedError, ProposalTimeoutError)


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
    keys_per_group: int = 256,
) -> dict[str, Any]:
    """Keep ``outstanding`` KV puts in flight per group for ``seconds``.

    Slot ``k`` of a group writes key ``k % keys_per_group`` (as the open loop
    writes at most ``keys_per_group`` keys per group): the state machines stay
    the same size whatever the depth, and so do their snapshots, taken on the
    event loop every ``snapshot_entries``: ``KVStateMachine.snapshot`` takes
    0.6 ms with 256 keys, 8.4 ms with 4,096 and 40 ms with 16,384, and a
    closed loop with a key per slot left later runs stalling that long. When a put's
    outcome is in, the slot's next put leaves at once (after a refusal, 10 ms
    later). Puts are submitted with ``Node.propose_nowait`` and their outcomes
    collected by one task, as the open loop (:mod:`multiraft.bench.open_loop`)
    does, so the peak it finds and the open loop's load cost the node the same
    per request.

    Returns ``commits`` (acknowledged puts), ``errors`` (refused or timed-out
    proposals, retried), ``elapsed`` seconds, and the latencies of acknowledged
    puts as :func:`latency_summary` gives them.
    """
    latencies: list[float] = []
    errors = 0
    value = b"v" * value_size
    commands = [
        KVCommand("put", b"key-%d" % (slot % keys_per_group), value).to_bytes()
        for slot in range(outstanding)
    ]
    clock = time.perf_counter
    submit = node.propose_nowait
    completions = Completions()
    in_flight = 0
    retries: list[tuple[int, int]] = []
    failure: BaseException | None = None
    began = clock()
    deadline = began + seconds

    def send(group_id: int, slot: int) -> None:
        nonlocal errors, in_flight
        try:
            submit(group_id, commands[slot], completions, (group_id, slot, clock()))
        except REFUSED:
            errors += 1
            retries.append((group_id, slot))
        else:
            in_flight += 1

    async def retry_later() -> None:
        while True:
            await trio.sleep(0.01)
            if clock() >= deadline:
                retries.clear()
            again = retries[:]
            retries.clear()
            for group_id, slot in again:
                send(group_id, slot)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(retry_later)
        for group_id in groups:
            for slot in range(outstanding):
                send(group_id, slot)
        while True:
            if not in_flight:
                if not retries or clock() >= deadline:
                    break
                # Every put was refused at once: retry_later sends them again.
                await trio.sleep(0.01)
                continue
            finished = await completions.wait()
            now = clock()
            in_flight -= len(finished)
            for waiter in finished:
                tag = waiter.tag
                assert isinstance(tag, tuple)
                group_id, slot, start = tag
                error = waiter.error
                if error is None:
                    latencies.append(now - start)
                elif isinstance(error, REFUSED):
                    errors += 1
                    retries.append((group_id, slot))
                    continue
                else:
                    # The state machine raised: not a load the figures can describe.
                    failure = error
                    break
                if now < deadline:
                    send(group_id, slot)
            if failure is not None:
                break
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    elapsed = clock() - began
    out: dict[str, Any] = {"commits": len(latencies), "errors": errors, "elapsed": elapsed}
    out.update(latency_summary(latencies, samples))
    return out
