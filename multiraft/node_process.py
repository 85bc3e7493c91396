"""``multiraft node``: one node as an operating-system process, over TCP.

::

    multiraft node --id 1 --listen 127.0.0.1:7001 \\
        --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003 \\
        --data-dir /var/lib/multiraft/1 [--cluster-id X] [--admin 127.0.0.1:8001] \\
        [--tls-cert node.pem --tls-key node.key --tls-ca ca.pem]

The node keeps its logs in the durable engine under ``--data-dir`` and hosts
:class:`multiraft.kv.KVStateMachine` groups, created and used through the admin
port (:mod:`multiraft.admin`). Once listening it prints one JSON line on stdout,
``{"event": "ready", "node": 1, "listen": [host, port], "admin": [host, port]}``
(ports resolved when given as 0). SIGTERM or SIGINT stop it cleanly (exit 0);
started again with the same data directory it recovers every group and rejoins.
The data directory remembers the node id and cluster id it was created with; a
mismatch refuses to start (exit 2). The process runs with the interpreter
settings of :func:`multiraft.interpreter_settings.tune_for_node_process`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from multiraft.config import NodeConfig
from multiraft.interpreter_settings import freeze_start_up_objects, tune_for_node_process
from multiraft.kv import KVStateMachine
from multiraft.task_cpu import TaskCpuMeter

if TYPE_CHECKING:
    from storage.engine import DurableLogEngine
    from transport.tcp import TcpTransportConfig

__all__ = ["main", "parse_address"]

log = logging.getLogger("multiraft.node_process")


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) as a (host, port) pair; ValueError if malformed."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return host, port


def _peer(text: str) -> tuple[int, tuple[str, int]]:
    node_text, sep, address = text.partition("=")
    if not sep or not node_text.isdigit() or int(node_text) < 1:
        raise argparse.ArgumentTypeError(f"expected ID=HOST:PORT, got {text!r}")
    try:
        return int(node_text), parse_address(address)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multiraft node", description="run one node over TCP")
    p.add_argument("--id", type=int, required=True, help="this node's id (>= 1)")
    p.add_argument("--listen", type=_address, required=True, help="HOST:PORT for peers")
    p.add_argument(
        "--peer", type=_peer, action="append", default=[], help="ID=HOST:PORT, repeatable"
    )
    p.add_argument("--data-dir", required=True, help="directory of the durable log")
    p.add_argument("--cluster-id", default="multiraft", help="peers must agree on it")
    p.add_argument(
        "--admin", type=_address, default=("127.0.0.1", 0), help="HOST:PORT of the admin port"
    )
    p.add_argument("--tls-cert", help="this node's certificate chain (PEM)")
    p.add_argument("--tls-key", help="this node's private key (PEM)")
    p.add_argument("--tls-ca", help="the cluster CA certificate (PEM)")
    p.add_argument("--tick-interval", type=float, default=0.1, help="seconds per raft tick")
    p.add_argument("--election-ticks", type=int, default=10, help="election timeout in ticks")
    p.add_argument(
        "--proposal-timeout", type=float, default=10.0, help="seconds a proposal may take"
    )
    p.add_argument(
        "--snapshot-entries",
        type=int,
        default=10_000,
        help="snapshot and compact a group after this many applied entries",
    )
    p.add_argument(
        "--snapshot-keep-entries",
        type=int,
        default=100,
        help="entries kept in the log behind a snapshot",
    )
    p.add_argument(
        "--task-cpu",
        action="store_true",
        help="meter the CPU of each trio task (admin stats: task_cpu); costs a little CPU",
    )
    p.add_argument("--log-level", default="INFO", help="logging level (stderr)")
    return p


def _transport_config(args: argparse.Namespace) -> TcpTransportConfig:
    from transport.tcp import TcpTransportConfig
    from transport.tls import TlsConfig

    tls_args = (args.tls_cert, args.tls_key, args.tls_ca)
    if any(tls_args) and not all(tls_args):
        raise ValueError("--tls-cert, --tls-key and --tls-ca go together")
    tls = TlsConfig(args.tls_cert, args.tls_key, args.tls_ca) if all(tls_args) else None
    spool = os.path.join(args.data_dir, "snapshot-spool")
    os.makedirs(spool, exist_ok=True)
    return TcpTransportConfig(
        node_id=args.id,
        cluster_id=args.cluster_id,
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        peers=dict(args.peer),
        tls=tls,
        snapshot_spool_dir=spool,
    )


def _open_engine(args: argparse.Namespace) -> DurableLogEngine:
    """The durable engine, checked to belong to this node and cluster."""
    from storage.engine import DurableLogEngine

    os.makedirs(args.data_dir, exist_ok=True)
    engine = DurableLogEngine.open(args.data_dir)
    try:
        meta = engine.metadata
        if meta.node_id is None:
            meta.node_id = args.id
            meta.cluster_id = args.cluster_id
        elif meta.node_id != args.id or meta.cluster_id != args.cluster_id:
            raise ValueError(
                f"data directory {args.data_dir} belongs to node {meta.node_id} of cluster "
                f"{meta.cluster_id!r}, not node {args.id} of cluster {args.cluster_id!r}"
            )
    except BaseException:
        engine.close()
        raise
    return engine


async def _run(args: argparse.Namespace) -> None:
    from multiraft.admin import AdminServer
    from multiraft.node import open_node
    from transport.tcp import open_tcp_transport

    transport_config = _transport_config(args)
    engine = _open_engine(args)
    state_machines: dict[int, KVStateMachine] = {}

    def recovered(group_id: int) -> KVStateMachine:
        sm = state_machines[group_id] = KVStateMachine()
        return sm

    node_config = NodeConfig(
        args.id,
        tick_interval=args.tick_interval,
        election_ticks=args.election_ticks,
        proposal_timeout=args.proposal_timeout,
        snapshot_entries=args.snapshot_entries,
        snapshot_keep_entries=args.snapshot_keep_entries,
        state_machine_factory=recovered,
    )
    try:
        admin_listeners = await trio.open_tcp_listeners(args.admin[1], host=args.admin[0])
        async with (
            open_tcp_transport(transport_config) as transport,
            open_node(node_config, transport=transport, log_engine=engine) as node,
            trio.open_nursery() as nursery,
        ):
            meter = None
            if args.task_cpu:
                meter = TaskCpuMeter()
                trio.lowlevel.add_instrument(meter)
            admin = AdminServer(node, transport, state_machines, meter)
            nursery.start_soon(admin.serve, admin_listeners)
            # Everything alive now (imports, recovered groups) lives until exit.
            freeze_start_up_objects()
            admin_address = admin_listeners[0].socket.getsockname()[:2]
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                ready: dict[str, Any] = {
                    "event": "ready",
                    "node": args.id,
                    "listen": list(transport.listen_address),
                    "admin": list(admin_address),
                    "groups": len(node.group_ids()),
                }
                print(json.dumps(ready), flush=True)
                log.info(
                    "node %d ready: peers on %s:%d, admin on %s:%d, %d groups recovered",
                    args.id,
                    *transport.listen_address,
                    *admin_address,
                    len(node.group_ids()),
                )
                async for signum in signals:
                    log.info("node %d stopping on %s", args.id, signal.Signals(signum).name)
                    break
            nursery.cancel_scope.cancel()
    finally:
        engine.close()


def main(argv: Sequence[str]) -> int:
    """Run the node until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad arguments."""
    args = _parser().parse_args(list(argv))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s node{args.id} %(levelname)s %(name)s: %(message)s",
    )
    tune_for_node_process()
    try:
        trio.run(_run, args)
    except (ValueError, OSError) as exc:
        print(f"multiraft node: {exc}", file=sys.stderr)
        return 2
    return 0
