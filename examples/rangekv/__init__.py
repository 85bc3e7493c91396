"""A sharded, replicated key-value store on multiraft: the range-splitting example.

The key space is cut into ranges ``[start, end)``; each range is one raft group
replicated on three nodes, and a directory (its own group, like a meta range)
maps keys to ranges. Ranges split when they grow; the directory always tiles
the key space. Start here:

* :func:`~examples.rangekv.host.open_range_host` runs one node's share
  (:class:`~examples.rangekv.host.RangeHost`);
* :class:`~examples.rangekv.client.RangeClient` puts, gets, deletes,
  compares-and-sets and scans, routing through a cached directory;
* :mod:`~examples.rangekv.placement` keeps each range's replicas where the
  directory says: it carries out replica moves (finishing interrupted ones),
  hosts the ranges placed on a node and removes replicas moved away;
* :func:`~examples.rangekv.local.open_local_cluster` runs a cluster in one
  process, :func:`~examples.rangekv.processes.open_process_cluster` one process
  per node over TCP.
"""

from examples.rangekv.client import RangeClient
from examples.rangekv.descriptor import RangeDescriptor, check_tiling
from examples.rangekv.host import RangeHost, RangeSettings, open_range_host

__all__ = [
    "RangeClient",
    "RangeDescriptor",
    "RangeHost",
    "RangeSettings",
    "check_tiling",
    "open_range_host",
]
