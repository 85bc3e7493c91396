"""One node of the range store as an operating-system process, over TCP.

::

    python -m examples.rangekv.server --id 1 --data-dir /tmp/kv/1 \\
        [--listen 127.0.0.1:0] [--rpc 127.0.0.1:0] [--peer 2=127.0.0.1:7002 ...] \\
        [--split-keys 16] [--tick-interval 0.1]

Peers are dialed over the TCP transport (:mod:`transport.tcp`); clients and
the demo talk to the host through the RPC port (:mod:`examples.rangekv.rpc`),
which also accepts ``SetPeersRequest`` so that nodes started on port 0 can be
introduced to each other (their transport and their RPC addresses: a host
reads the directory through the hosts that hold it). Once listening the
process prints one JSON line on stdout: ``{"event": "ready", "node": 1,
"listen": [host, port], "rpc": [host, port]}``. SIGTERM or SIGINT stop it
cleanly (exit 0), and so does the end of stdin with ``--stop-on-stdin-eof``
(so nodes started by a program that dies do not outlive it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import trio

from examples.rangekv.host import RangeHost, RangeSettings, open_range_host
from examples.rangekv.protocol import Ok, SetPeersRequest
from examples.rangekv.rpc import DialingLink, serve_rpc
from multiraft import NodeConfig
from multiraft.interpreter_settings import freeze_start_up_objects, tune_for_node_process

if TYPE_CHECKING:
    from transport.tcp import TcpTransport

__all__ = ["main"]

_log = logging.getLogger("examples.rangekv.server")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _peer(text: str) -> tuple[int, tuple[str, int]]:
    node, sep, address = text.partition("=")
    if not sep or not node.isdigit():
        raise argparse.ArgumentTypeError(f"expected ID=HOST:PORT, got {text!r}")
    return int(node), _address(address)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m examples.rangekv.server", description="run one range store node"
    )
    p.add_argument("--id", type=int, required=True, help="this node's id (>= 1)")
    p.add_argument("--data-dir", required=True, help="directory of the durable log")
    p.add_argument("--listen", type=_address, default=("127.0.0.1", 0), help="peer HOST:PORT")
    p.add_argument("--rpc", type=_address, default=("127.0.0.1", 0), help="client HOST:PORT")
    p.add_argument("--peer", type=_peer, action="append", default=[], help="ID=HOST:PORT")
    p.add_argument("--cluster-id", default="rangekv", help="peers must agree on it")
    p.add_argument("--split-keys", type=int, default=0, help="split ranges above this many keys")
    p.add_argument("--split-bytes", type=int, default=0, help="split ranges above this size")
    p.add_argument(
        "--balance-leaders", action="store_true", help="spread new ranges' leaders over nodes"
    )
    p.add_argument("--tick-interval", type=float, default=0.1, help="seconds per raft tick")
    p.add_argument(
        "--stop-on-stdin-eof",
        action="store_true",
        help="stop cleanly when stdin closes (the parent process exited)",
    )
    p.add_argument("--log-level", default="WARNING", help="logging level (stderr)")
    return p


async def _run(args: argparse.Namespace) -> None:
    from transport.tcp import TcpTransportConfig, open_tcp_transport

    transport_config = TcpTransportConfig(
        node_id=args.id,
        cluster_id=args.cluster_id,
        listen_host=args.listen[0],
        listen_port=args.listen[1],
        peers=dict(args.peer),
    )
    settings = RangeSettings(
        split_keys=args.split_keys,
        split_bytes=args.split_bytes,
        balance_leaders=args.balance_leaders,
    )
    config = NodeConfig(args.id, tick_interval=args.tick_interval)
    rpc_listeners = await trio.open_tcp_listeners(args.rpc[1], host=args.rpc[0])
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with (
            open_tcp_transport(transport_config) as transport,
            trio.open_nursery() as connections,
        ):
            hosts = DialingLink(connections)
            try:
                await _serve(args, transport, hosts, settings, config, rpc_listeners, signals)
            finally:
                connections.cancel_scope.cancel()


async def _serve(
    args: argparse.Namespace,
    transport: TcpTransport,
    hosts: DialingLink,
    settings: RangeSettings,
    config: NodeConfig,
    rpc_listeners: list[trio.SocketListener],
    signals: AsyncIterator[int],
) -> None:
    async with (
        open_range_host(
            config, transport=transport, data_dir=args.data_dir, settings=settings, peers=hosts
        ) as host,
        trio.open_nursery() as nursery,
    ):

        async def handle(request: object) -> object:
            if isinstance(request, SetPeersRequest):
                for node_id, peer_host, port in request.peers:
                    if node_id != args.id:
                        transport.set_peer(node_id, peer_host, port)
                for node_id, peer_host, port in request.rpc_peers:
                    if node_id != args.id:
                        hosts.addresses[node_id] = (peer_host, port)
                return Ok()
            return await host.handle(request)

        nursery.start_soon(serve_rpc, handle, rpc_listeners)
        stop = trio.Event()
        nursery.start_soon(_stop_on_signal, signals, stop)
        if args.stop_on_stdin_eof:
            nursery.start_soon(_stop_on_stdin_eof, stop)
        _announce(host, transport.listen_address, rpc_listeners)
        await stop.wait()
        _log.info("node %d stopping", args.id)
        nursery.cancel_scope.cancel()


async def _stop_on_signal(signals: AsyncIterator[int], stop: trio.Event) -> None:
    async for signum in signals:
        _log.info("received %s", signal.Signals(signum).name)
        stop.set()
        return


async def _stop_on_stdin_eof(stop: trio.Event) -> None:
    """Stop once stdin closes: the process that started this node is gone."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        while await stdin.receive_some(4096):
            pass
    _log.info("stdin closed")
    stop.set()


def _announce(
    host: RangeHost, listen: tuple[str, int], rpc_listeners: list[trio.SocketListener]
) -> None:
    rpc = rpc_listeners[0].socket.getsockname()[:2]
    # Everything alive now (imports, recovered ranges) lives until exit.
    freeze_start_up_objects()
    ready = {"event": "ready", "node": host.node_id, "listen": list(listen), "rpc": list(rpc)}
    print(json.dumps(ready), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node until SIGTERM/SIGINT; 0 on a clean stop, 2 on bad arguments."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s node{args.id} %(levelname)s %(name)s: %(message)s",
    )
    tune_for_node_process()
    try:
        trio.run(_run, args)
    except (ValueError, OSError) as exc:
        print(f"rangekv node: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
