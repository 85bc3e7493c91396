"""Embedding multiraft: three nodes in one process, 100 groups, a command per group.

Run with ``python -m examples.embed_node``. Each node would normally be its own
process with a TCP transport (``transport.tcp``) and a data directory; here the
in-memory network connects them. Prints one line per step and ``ok`` at the end.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from multiraft import Completions, GroupSpec, NodeConfig, open_node
from transport import MemoryNetwork


class Counter:
    """A state machine: adds each command's number to a total, returns the new total."""

    def __init__(self) -> None:
        self.total = 0

    def apply(self, index: int, command: bytes) -> object:
        self.total += int(command)
        return self.total

    def snapshot(self) -> bytes:
        return str(self.total).encode()

    def restore(self, data: bytes) -> None:
        self.total = int(data)


async def main() -> None:
    """Start three nodes, create and elect 100 groups, propose and read, then submit
    a command to every group without waiting."""
    net = MemoryNetwork()
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(open_node(NodeConfig(i), transport=net.transport(i)))
            for i in (1, 2, 3)
        ]
        for node in nodes:  # every member creates each group; one of them campaigns
            await node.create_groups(
                GroupSpec(g, [1, 2, 3], Counter(), campaign=(g % 3 + 1 == node.node_id))
                for g in range(100)
            )
        totals = [await nodes[g % 3].propose(g, b"%d" % g) for g in range(100)]
        print(f"proposed: group 99 total {totals[99]}, leader {nodes[0].leader_of(99)}")
        index = await nodes[1].read(42)  # linearizable read barrier on a follower
        print(f"read index of group 42 on node 2: {index}")
        # Many requests in flight without a task each (a server's way): submit them,
        # then collect the outcomes as they come in, a whole ready cycle's at a time.
        completions = Completions()
        for g in range(100):
            nodes[g % 3].propose_nowait(g, b"1", completions, tag=g)
        new_totals: dict[object, object] = {}
        while len(new_totals) < 100:
            for waiter in await completions.wait():
                new_totals[waiter.tag] = waiter.result()  # raises what propose would
        print(f"submitted without waiting: group 99 total {new_totals[99]}")
        stats = nodes[0].stats()
        print(f"node 1: {stats['groups']} groups, {stats['frames_sent']} frames sent")
    print("ok")


if __name__ == "__main__":
    trio.run(main)
