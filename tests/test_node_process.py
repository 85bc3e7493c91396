"""``multiraft node`` as real processes on 127.0.0.1: replication, kill -9, partitions, refusals.

Nodes run with mutual TLS (throwaway certificates from ``trustme``) unless a
test says otherwise, with 50 ms ticks so elections take about half a second.
"""

from __future__ import annotations

import itertools
import random
import signal
import ssl
from pathlib import Path

import pytest
import trio
import trustme

from multiraft.admin import AdminError
from multiraft.interpreter_settings import GIL_SWITCH_INTERVAL, NODE_GC_THRESHOLDS
from multiraft.node_launcher import NodeProcess
from tests.process_cluster import ProcessCluster, process_cluster, retry_call

GROUPS = list(range(1, 101))


@pytest.fixture(scope="module")
def tls_args(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    """Command-line TLS options per node id: 1..4 certified by the cluster CA, 5 by another."""
    root = tmp_path_factory.mktemp("proc-pki")
    ca, foreign = trustme.CA(), trustme.CA()
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    out = {}
    for node_id in range(1, 6):
        cert = (ca if node_id < 5 else foreign).issue_cert("127.0.0.1")
        cert_file, key_file = root / f"n{node_id}.crt", root / f"n{node_id}.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        out[node_id] = [
            "--tls-cert", str(cert_file), "--tls-key", str(key_file), "--tls-ca", str(ca_file),
        ]  # fmt: skip
    out[0] = [str(ca_file)]
    return out


async def _create_and_campaign(cluster: ProcessCluster, groups: list[int]) -> None:
    for node_id in (1, 2, 3):
        result = await cluster[node_id].call("create_groups", groups=groups, replicas=[1, 2, 3])
        assert result == {"created": len(groups), "existed": 0}
    # Spread the leaders: group g campaigns on node (g % 3) + 1.
    for g in groups:
        await cluster[g % 3 + 1].call("campaign", group=g)


async def _dumps_agree(cluster: ProcessCluster, nodes: list[int], groups: list[int]) -> bool:
    for g in groups:
        dumps = [await cluster[n].call("dump", group=g) for n in nodes]
        if any(d != dumps[0] for d in dumps[1:]):
            return False
    return True


async def _wait_converged(
    cluster: ProcessCluster, nodes: list[int], groups: list[int], timeout: float
) -> None:
    with trio.fail_after(timeout):
        while not await _dumps_agree(cluster, nodes, groups):
            await trio.sleep(0.1)


async def test_three_processes_replicate_100_groups_through_every_node(
    tmp_path: Path, tls_args: dict[int, list[str]]
) -> None:
    # Node 1 meters its tasks' CPU as well (multiraft node --task-cpu).
    node_args = tls_args | {1: [*tls_args[1], "--task-cpu"]}
    async with process_cluster(tmp_path, node_args=node_args) as cluster:
        await _create_and_campaign(cluster, GROUPS)
        expected: dict[int, dict[bytes, bytes]] = {g: {} for g in GROUPS}
        async with trio.open_nursery() as nursery:
            for g in GROUPS:
                for i in range(3):
                    # Command i of group g goes through node i + 1: leader or follower.
                    key, value = f"k{i}".encode(), f"g{g}-v{i}".encode()
                    expected[g][key] = value
                    nursery.start_soon(
                        lambda g=g, i=i, k=key, v=value: retry_call(
                            cluster[i + 1], "put", group=g, key=k, value=v
                        )
                    )
        await _wait_converged(cluster, [1, 2, 3], GROUPS, 20.0)
        for g in GROUPS:
            dump = await cluster[1].call("dump", group=g)
            assert dict(dump["data"]) == expected[g], g
        leaders = await cluster[1].call("leaders", groups=GROUPS)
        assert {leader for _, leader in leaders} <= {1, 2, 3}
        assert all(leader for _, leader in leaders)
        # One connection per direction and peer carried all 100 groups.
        for node_id in (1, 2, 3):
            stats = (await cluster[node_id].call("stats"))["transport"]
            assert stats["connections_opened"] == 2
            assert stats["peers_connected"] == 2
            assert stats["connections_closed_on_error"] == 0
        # The node process runs with the interpreter settings for a node.
        interpreter = (await cluster[1].call("stats"))["interpreter"]
        assert interpreter["switch_interval"] == GIL_SWITCH_INTERVAL
        assert tuple(interpreter["gc_thresholds"]) == NODE_GC_THRESHOLDS
        assert interpreter["gc_frozen_objects"] > 10_000
        assert interpreter["scheduling_policy"] == "batch"
        # Every durable write of the node is in its write-duration histograms.
        stats1 = await cluster[1].call("stats")
        writes = stats1["write_durations"]
        assert writes["waited"]["count"] == stats1["node"]["storage_syncs"] > 0
        assert writes["in_engine"]["count"] == stats1["node"]["storage_syncs"]
        driver = stats1["task_cpu"]["tasks"]["multiraft.node.Node._run_driver"]
        assert driver["steps"] > 0 and driver["cpu_seconds"] > 0
        assert stats1["task_cpu"]["io_wait"]["waits"] > 0
        assert "task_cpu" not in await cluster[2].call("stats")
        for node_id in (1, 2, 3):
            assert await cluster[node_id].terminate() == 0


async def test_kill_9_under_load_then_restart_catches_up_and_loses_no_acknowledged_command(
    tmp_path: Path,
) -> None:
    groups = list(range(1, 41))
    # Frequent snapshots: node 3 comes back behind the leaders' compacted logs for
    # busy groups and has to catch up by snapshot over TCP.
    snapshots = ["--snapshot-entries", "20", "--snapshot-keep-entries", "5"]
    async with process_cluster(tmp_path, 3, snapshots) as cluster:
        await _create_and_campaign(cluster, groups)
        acked: dict[int, dict[bytes, bytes]] = {g: {} for g in groups}
        counter = itertools.count()
        rng = random.Random(5)
        served_after_kill: set[int] = set()
        killed = trio.Event()
        stop = trio.Event()

        async def client(via: int) -> None:
            while not stop.is_set():
                g = 1 if rng.random() < 0.3 else rng.choice(groups)
                n = next(counter)
                key, value = f"k{n}".encode(), f"v{n}".encode()
                try:
                    await cluster[via].call("put", group=g, key=key, value=value)
                except AdminError:
                    continue  # not acknowledged: may or may not have been applied
                acked[g][key] = value
                if killed.is_set():
                    served_after_kill.add(g)

        async with trio.open_nursery() as nursery:
            for via in (1, 2, 1, 2, 1, 2, 1, 2):
                nursery.start_soon(client, via)
            await trio.sleep(1.0)
            await cluster[3].kill()
            killed.set()
            with trio.fail_after(20):
                while served_after_kill != set(groups):
                    await trio.sleep(0.1)
            group1_before = len(acked[1])
            with trio.fail_after(20):
                while len(acked[1]) < group1_before + 60:
                    await trio.sleep(0.05)
            leaders = dict(await cluster[1].call("leaders", groups=groups))
            assert set(leaders.values()) <= {1, 2}
            await cluster[3].start()
            assert cluster[3].ready["groups"] == len(groups)
            await trio.sleep(1.0)
            stop.set()
        await _wait_converged(cluster, [1, 2, 3], groups, 30.0)
        for g in groups:
            data = dict((await cluster[3].call("dump", group=g))["data"])
            missing = {k: v for k, v in acked[g].items() if data.get(k) != v}
            assert not missing, (g, list(missing)[:5])
        stats3 = (await cluster[3].call("stats"))["transport"]
        assert stats3["snapshots_received"] >= 1


async def test_partitioned_node_loses_leadership_and_rejoins_after_heal(tmp_path: Path) -> None:
    groups = list(range(1, 31))
    async with process_cluster(tmp_path) as cluster:
        await _create_and_campaign(cluster, groups)
        # Node 3 campaigned for every third group; under load another node may win one
        # of those elections, so the groups it leads are read back, not assumed.
        with trio.fail_after(30):
            while True:
                leaders = dict(await cluster[3].call("leaders", groups=groups))
                if all(leaders.values()):
                    break
                await trio.sleep(0.05)
        led_by_3 = [g for g in groups if leaders[g] == 3]
        assert led_by_3, f"node 3 leads none of the groups it campaigned for: {leaders}"
        # Node 3 refuses (and drops) every connection to and from the others.
        await cluster[3].call("block", nodes=[1, 2])
        async with trio.open_nursery() as nursery:
            for g in led_by_3:
                nursery.start_soon(
                    lambda g=g: retry_call(
                        cluster[1], "put", group=g, key=b"during", value=b"partition"
                    )
                )
        leaders = dict(await cluster[1].call("leaders", groups=led_by_3))
        assert set(leaders.values()) <= {1, 2}
        with pytest.raises(AdminError) as refused:
            await cluster[3].call("put", group=led_by_3[0], key=b"x", value=b"y")
        assert refused.value.error in ("NotLeaderError", "ProposalTimeoutError")
        stats3 = (await cluster[3].call("stats"))["transport"]
        assert stats3["peers_connected"] == 0
        await cluster[3].call("unblock", nodes=[1, 2])
        await _wait_converged(cluster, [1, 2, 3], groups, 20.0)
        for g in led_by_3:
            assert await cluster[3].call("get", group=g, key=b"during") == b"partition"
        assert "node 1 is blocked by node 3" in cluster[3].log_text()


async def test_wrong_cluster_id_wrong_node_id_and_missing_client_cert_are_refused(
    tmp_path: Path, tls_args: dict[int, list[str]]
) -> None:
    async with process_cluster(tmp_path, node_args=tls_args) as cluster:
        intruders: list[NodeProcess] = []

        def intruder(
            name: str, node_id: int, tls: list[str], peers: list[str] | None = None
        ) -> None:
            args = cluster.node_args(
                node_id, **{"--data-dir": str(tmp_path / name), "--listen": "127.0.0.1:0"}
            )
            if peers is not None:
                args = _replace_peers(args, peers)
            intruders.append(cluster.extra_process(args + tls, name))

        await _create_and_campaign(cluster, [1, 2, 3])
        intruder("other-cluster", 3, tls_args[4])
        cluster_id = intruders[-1].args.index("--cluster-id")
        intruders[-1].args[cluster_id + 1] = "other"
        # Node 4 believes node 2 listens at node 1's address.
        intruder("wrong-node", 4, tls_args[4], peers=[f"2={cluster.address(1)}"])
        intruder("foreign-ca", 3, tls_args[5])
        intruder("plain-tcp", 3, [])
        async with trio.open_nursery() as nursery:
            for proc in intruders:
                nursery.start_soon(proc.start)
        # A TLS client that presents no certificate at all.
        ctx = ssl.create_default_context(cafile=tls_args[0][0])
        tcp = await trio.open_tcp_stream("127.0.0.1", int(cluster.address(1).split(":")[1]))
        stream = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await stream.do_handshake()
            await stream.send_all(b"\x00\x00\x00\x00\x05")
            await stream.receive_some(100)
        await trio.aclose_forcefully(stream)
        await trio.sleep(1.0)
        log1 = cluster[1].log_text()
        for needle in (
            "cluster id mismatch: peer is in cluster 'other', this node is in 'proc-test'",
            "node id mismatch: peer dialed node 2, this is node 1",
            "PEER_DID_NOT_RETURN_A_CERTIFICATE",
            "CERTIFICATE_VERIFY_FAILED",
        ):
            assert needle in log1, needle
        for proc in intruders:
            stats = (await proc.call("stats"))["transport"]
            assert stats["connections_opened"] == 0, proc.log_path
            assert stats["peers_connected"] == 0
            assert stats["frames_received"] == 0
        # The cluster is unaffected: same connections, every group still serves.
        for g in (1, 2, 3):
            await retry_call(cluster[g], "put", group=g, key=b"still", value=b"fine")
        await _wait_converged(cluster, [1, 2, 3], [1, 2, 3], 10.0)
        for node_id in (1, 2, 3):
            stats = (await cluster[node_id].call("stats"))["transport"]
            assert stats["connections_opened"] == 2
            assert stats["connections_accepted"] == 2


def _replace_peers(args: list[str], peers: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--peer":
            skip = True
            continue
        out.append(a)
    for p in peers:
        out += ["--peer", p]
    return out


def _replace_listen(args: list[str], listen: str) -> list[str]:
    i = args.index("--listen")
    return [*args[: i + 1], listen, *args[i + 2 :]]


async def test_sigterm_stops_cleanly_and_a_data_dir_of_another_node_is_refused(
    tmp_path: Path,
) -> None:
    async with process_cluster(tmp_path, 1) as cluster:
        node = cluster[1]
        await node.call("create_groups", groups=[1], replicas=[1], campaign=True)
        assert await retry_call(node, "put", group=1, key=b"a", value=b"1") is None
        assert await node.terminate() == 0
        assert "node 1 stopping on SIGTERM" in node.log_text()
        # Restart on the same data dir: the group is recovered with its data.
        await node.start()
        assert node.ready["groups"] == 1
        assert await retry_call(node, "get", group=1, key=b"a") == b"1"
        await node.kill()
        stranger = cluster.extra_process(cluster.node_args(1, **{"--id": "2"}), "stranger")
        with pytest.raises(AssertionError, match="node exited before it was ready"):
            await stranger.start()
        assert await stranger.wait_exit() == 2
        assert "belongs to node 1 of cluster 'proc-test', not node 2" in stranger.log_text()


async def test_kill_cancelled_before_it_signals_still_kills_and_reaps_the_node(
    tmp_path: Path,
) -> None:
    # A cancellation arriving inside kill() used to leave the node running with
    # its admin client already dropped, unreachable by the caller.
    async with process_cluster(tmp_path, 1) as cluster:
        node = cluster[1]
        with trio.CancelScope() as scope:
            scope.cancel()
            await node.kill()
        assert not node.running
        assert node.process is not None
        assert node.process.returncode == -signal.SIGKILL
        assert node.admin is None
