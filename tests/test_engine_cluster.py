"""Three nodes in one process on durable engines: write, stop all, reopen, carry on."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import trio

from multiraft import Node, NodeConfig, open_node
from node_cluster import RecordingStateMachine, wait_until
from transport import MemoryNetwork

_IDS = (1, 2, 3)
_GROUPS = range(1, 13)


async def _start(
    stack: AsyncExitStack, tmp_path: Path, seed: int
) -> tuple[dict[int, Node], dict[tuple[int, int], RecordingStateMachine]]:
    net = MemoryNetwork(seed=seed)
    nodes = {}
    for i in _IDS:
        nodes[i] = await stack.enter_async_context(
            open_node(
                NodeConfig(i, write_in_thread=False, seed=7),
                transport=net.transport(i),
                data_dir=str(tmp_path / f"node{i}"),
            )
        )
    sms = {(g, i): RecordingStateMachine() for g in _GROUPS for i in _IDS}
    return nodes, sms


async def test_three_durable_nodes_keep_everything_across_a_full_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        nodes, sms = await _start(stack, tmp_path, seed=1)
        for g in _GROUPS:
            for i in _IDS:
                await nodes[i].create_group(
                    g, list(_IDS), state_machine=sms[(g, i)], campaign=(i == g % 3 + 1)
                )
        await wait_until(
            lambda: all(nodes[1].leader_of(g) == g % 3 + 1 for g in _GROUPS), 10, "leaders"
        )
        for g in _GROUPS:
            for k in range(3):
                await nodes[g % 3 + 1].propose(g, b"before-%d-%d" % (g, k))
        await wait_until(
            lambda: all(len(sms[(g, i)].applied) == 3 for g in _GROUPS for i in _IDS),
            10,
            "apply everywhere",
        )
        before = {g: list(sms[(g, 1)].applied) for g in _GROUPS}
    # Every node stopped; their engines are closed. Start them all again.
    for i in _IDS:
        names = {p.name for p in (tmp_path / f"node{i}").iterdir()}
        assert "meta.sqlite3" in names and "0000000000000001.seg" in names
    async with AsyncExitStack() as stack:
        nodes, sms = await _start(stack, tmp_path, seed=2)
        for g in _GROUPS:
            for i in _IDS:
                await nodes[i].create_group(g, list(_IDS), state_machine=sms[(g, i)])
        # The committed commands come back from the logs, in order, on every node.
        await wait_until(
            lambda: all(sms[(g, i)].applied == before[g] for g in _GROUPS for i in _IDS),
            30,
            "replay of the durable logs",
        )

        def one_leader(g: int) -> bool:
            seen = {nodes[i].leader_of(g) for i in _IDS}
            return len(seen) == 1 and None not in seen

        await wait_until(lambda: all(one_leader(g) for g in _GROUPS), 30, "elections")
        for g in _GROUPS:
            leader = nodes[1].leader_of(g)
            assert leader is not None
            index, cmd = await nodes[leader].propose(g, b"after-%d" % g)  # type: ignore[misc]
            assert cmd == b"after-%d" % g
            assert index > before[g][-1][0]
        await wait_until(
            lambda: all(
                sms[(g, i)].applied[-1][1] == b"after-%d" % g for g in _GROUPS for i in _IDS
            ),
            10,
            "apply after the restart",
        )
        for g in _GROUPS:
            assert sms[(g, 1)].applied == sms[(g, 2)].applied == sms[(g, 3)].applied
            assert sms[(g, 1)].applied[:3] == before[g]
