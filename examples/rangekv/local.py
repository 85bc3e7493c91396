"""The store on several nodes inside one trio run, over the in-memory network.

For tests, ``multiraft demo --in-process`` and experiments: every node is a
:class:`~examples.rangekv.host.RangeHost` in this process, and clients reach
them through a :class:`LocalLink` (requests passed as objects, no encoding).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from examples.rangekv.client import LinkError, RangeClient
from examples.rangekv.host import RangeHost, RangeSettings, open_range_host
from multiraft import NodeConfig
from multiraft.ports import LogEngine
from transport.memory import MemoryNetwork

__all__ = ["LocalCluster", "LocalLink", "open_local_cluster"]


class LocalLink:
    """Reaches the hosts of this process directly (implements ``HostLink``)."""

    def __init__(self) -> None:
        self.hosts: dict[int, RangeHost] = {}

    @property
    def node_ids(self) -> Sequence[int]:
        """The nodes currently running."""
        return sorted(self.hosts)

    async def call(self, node_id: int, request: object) -> object:
        """``request`` handled by ``node_id``'s host; :class:`LinkError` if it is not running."""
        host = self.hosts.get(node_id)
        if host is None:
            raise LinkError(node_id, "not running")
        # Like a network hop, a call always lets other tasks run, even when the
        # host answers at once (a redirect) and the caller retries in a loop.
        await trio.lowlevel.checkpoint()
        return await host.handle(request)


class LocalCluster:
    """Running hosts by node id, the network between them, and a link to reach them."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network
        self.link = LocalLink()

    @property
    def hosts(self) -> dict[int, RangeHost]:
        """The running hosts by node id."""
        return self.link.hosts

    async def bootstrap(self, replicas: Sequence[int] | None = None) -> None:
        """Create the directory and first range on ``replicas`` (default: every node)."""
        members = tuple(sorted(replicas or self.hosts))
        for node_id in members:
            await self.hosts[node_id].bootstrap(members)
        for node_id in members:
            await self.hosts[node_id].wait_ready()

    def client(self, **options: float) -> RangeClient:
        """A new client of this cluster (``timeout``, ``retry_delay``)."""
        return RangeClient(self.link, **options)


@asynccontextmanager
async def open_local_cluster(
    node_ids: Iterable[int],
    *,
    settings: RangeSettings | None = None,
    config_for: Callable[[int], NodeConfig] = NodeConfig,
    data_root: str | None = None,
    engines: dict[int, LogEngine] | None = None,
    network: MemoryNetwork | None = None,
    host_factory: Callable[[int, RangeSettings | None], RangeHost] = RangeHost,
) -> AsyncIterator[LocalCluster]:
    """Run a host per node id until the block ends.

    Node ``i`` keeps its logs in the durable engine under ``data_root/node<i>``
    when ``data_root`` is given, else in ``engines[i]`` when given, else in memory.
    ``host_factory`` is passed to :func:`~examples.rangekv.host.open_range_host`.
    """
    cluster = LocalCluster(network or MemoryNetwork())
    async with AsyncExitStack() as stack:
        for node_id in node_ids:
            data_dir = None if data_root is None else os.path.join(data_root, f"node{node_id}")
            host = await stack.enter_async_context(
                open_range_host(
                    config_for(node_id),
                    transport=cluster.network.transport(node_id),
                    data_dir=data_dir,
                    log_engine=None if engines is None else engines.get(node_id),
                    settings=settings,
                    host_factory=host_factory,
                    peers=cluster.link,
                )
            )
            cluster.hosts[node_id] = host
        try:
            yield cluster
        finally:
            cluster.hosts.clear()
