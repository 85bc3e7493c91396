"""Helpers for the range KV example's end-to-end tests (one process, memory network)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from examples.rangekv.descriptor import RangeDescriptor, check_tiling
from examples.rangekv.host import RangeHost, RangeSettings
from examples.rangekv.local import LocalCluster, open_local_cluster
from multiraft import NodeConfig
from multiraft.ports import LogEngine

__all__ = ["assert_every_key_in_its_range", "kv_cluster", "wait_for"]


@asynccontextmanager
async def kv_cluster(
    node_ids: Sequence[int] = (1, 2, 3),
    *,
    replicas: Sequence[int] | None = None,
    split_keys: int = 0,
    host_factory: Callable[[int, RangeSettings | None], RangeHost] = RangeHost,
    engines: dict[int, LogEngine] | None = None,
    bootstrap: bool = True,
    **node_options: Any,
) -> AsyncIterator[LocalCluster]:
    """A bootstrapped cluster whose nodes never block the event loop (mock clock safe)."""

    def config_for(node_id: int) -> NodeConfig:
        return NodeConfig(node_id, write_in_thread=False, seed=11, **node_options)

    async with open_local_cluster(
        node_ids,
        settings=RangeSettings(split_keys=split_keys),
        config_for=config_for,
        engines=engines,
        host_factory=host_factory,
    ) as cluster:
        if bootstrap:
            await cluster.bootstrap(replicas)
        yield cluster


async def wait_for(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``cond`` every 10 ms (of mock time) until true, or fail naming ``what``."""
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"{what} not reached within {timeout}s")


def assert_every_key_in_its_range(cluster: LocalCluster, expected: dict[bytes, bytes]) -> None:
    """Each key lives, with its value, in the directory's range for it on every replica only.

    Also checks that the directory tiles the key space and that every replica of
    every range agrees with the directory on the range's bounds and generation.
    """
    directory = cluster.hosts[1].directory
    ranges = directory.descriptors()
    check_tiling(ranges)
    for desc in ranges:
        for node_id in desc.replicas:
            sm = cluster.hosts[node_id].ranges[desc.range_id]
            assert sm.descriptor is not None, (node_id, desc)
            assert _bounds(sm.descriptor) == _bounds(desc), (node_id, sm.descriptor, desc)
            held = dict(sm.data)
            want = {k: v for k, v in expected.items() if desc.contains(k)}
            assert held == want, (node_id, desc.describe(), len(held), len(want))


def _bounds(desc: RangeDescriptor) -> tuple[bytes, bytes | None, int, tuple[int, ...]]:
    return desc.start, desc.end, desc.generation, desc.replicas
