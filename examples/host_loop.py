"""Embedding multiraft in a trio application: the structured-concurrency host loop.

Run it (a one-node store; add nodes the way ``examples.rangekv.server`` does)::

    python -m examples.host_loop --data-dir /tmp/kv-node1 [--port 7400]

It prints ``{"event": "ready", "port": N}`` and answers lines on that port:
``PUT key value`` -> ``OK``, ``GET key`` -> ``VALUE value`` or ``NONE``,
``DEL key`` -> ``OK``; a request the store could not carry out gets ``ERR``
and the reason (for a write whose outcome was lost: it may still apply).
Every few seconds it logs the node's counters to stderr.

The shape is the point. Everything lives in one task tree:

* ``open_range_host`` opens the durable log engine, the node and the store's
  background tasks; leaving its block stops them and closes the storage;
* one nursery inside it owns the request server and the stats reporter;
* SIGINT/SIGTERM end the loop: the server stops reading new requests, lets
  the requests in flight finish (each was acknowledged only once applied,
  hence durable), then the nursery's scope is cancelled and every block
  unwinds in order. Nothing acknowledged is lost; restart with the same
  ``--data-dir`` and the node recovers its groups from the log.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal

import trio

from examples.rangekv import RangeClient, RangeHost, RangeSettings, open_range_host
from examples.rangekv.client import RangeKVError
from examples.rangekv.local import LocalLink
from multiraft import NodeConfig
from transport.tcp import TcpTransportConfig, open_tcp_transport

log = logging.getLogger("host_loop")

#: Seconds requests in flight may take to finish once a stop signal arrived.
DRAIN_SECONDS = 5.0


class LineServer:
    """Serves ``PUT``/``GET``/``DEL`` lines; :meth:`stop` lets requests in flight finish."""

    def __init__(self, client: RangeClient) -> None:
        self.client = client
        self.served = 0
        self.stopping = False
        #: Connections still open.
        self.connections = 0
        self._reads: set[trio.CancelScope] = set()

    async def handle(self, stream: trio.SocketStream) -> None:
        """One connection: read a line, answer it, until EOF or :meth:`stop`."""
        self.connections += 1
        buffer = b""
        try:
            while not self.stopping:
                with trio.CancelScope() as reading:  # stop() cancels waiting for input only
                    self._reads.add(reading)
                    try:
                        while b"\n" not in buffer:
                            data = await stream.receive_some(4096)
                            if not data:
                                return
                            buffer += data
                    finally:
                        self._reads.discard(reading)
                if reading.cancelled_caught:
                    return
                line, _, buffer = buffer.partition(b"\n")
                reply = await self.execute(line.decode(errors="replace").split())
                await stream.send_all(reply.encode() + b"\n")
                self.served += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    async def execute(self, words: list[str]) -> str:
        """The answer to one request line."""
        try:
            return await self._execute(words)
        except RangeKVError as exc:
            return f"ERR {type(exc).__name__}: {exc}"

    async def _execute(self, words: list[str]) -> str:
        match words:
            case ["PUT", key, value]:
                await self.client.put(key.encode(), value.encode())
                return "OK"
            case ["GET", key]:
                got = await self.client.get(key.encode())
                return "NONE" if got is None else f"VALUE {got.decode()}"
            case ["DEL", key]:
                await self.client.delete(key.encode())
                return "OK"
        return "ERR expected PUT key value, GET key or DEL key"

    def stop(self) -> None:
        """Stop reading requests; requests being executed still get their answer."""
        self.stopping = True
        for reading in self._reads:
            reading.cancel()


async def report_stats(host: RangeHost, interval: float) -> None:
    """Log the node's counters every ``interval`` seconds, until cancelled."""
    while True:
        await trio.sleep(interval)
        s = host.stats()
        log.info(
            "groups %d (%d quiesced), leaders %d, commands applied %d, storage syncs %d",
            s["groups"],
            s["quiesced_groups"],
            s["leaders"],
            s["commands_applied"],
            s["storage_syncs"],
        )


async def run(data_dir: str, port: int, stats_interval: float) -> None:
    """The host loop: returns once a signal stopped everything cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_tcp_transport(TcpTransportConfig(node_id=1)) as transport,
            open_range_host(
                NodeConfig(1),
                transport=transport,
                data_dir=data_dir,
                settings=RangeSettings(split_keys=32),
            ) as host,
        ):
            if not host.node.group_ids():  # a new data directory: create the store
                await host.bootstrap((1,))
            await host.wait_ready()
            link = LocalLink()
            link.hosts[1] = host
            server = LineServer(RangeClient(link))
            listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
            accepting = trio.CancelScope()

            async def accept(nursery: trio.Nursery) -> None:
                with accepting:  # connections are handled in ``nursery``, outside this scope
                    await trio.serve_listeners(server.handle, listeners, handler_nursery=nursery)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(accept, nursery)
                nursery.start_soon(report_stats, host, stats_interval)
                bound = listeners[0].socket.getsockname()[1]
                print(json.dumps({"event": "ready", "port": bound}), flush=True)
                async for signum in signals:
                    log.info("%s: stopping", signal.Signals(signum).name)
                    break
                accepting.cancel()  # no new connections
                server.stop()  # no new requests; those in flight finish
                with trio.move_on_after(DRAIN_SECONDS):
                    while server.connections:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            log.info("served %d requests; closing the node and its storage", server.served)
    print(json.dumps({"event": "stopped"}), flush=True)


def main() -> int:
    """Parse arguments and run the host loop until SIGINT/SIGTERM."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="where the node keeps its durable log")
    p.add_argument("--port", type=int, default=0, help="request port on 127.0.0.1 (0: any)")
    p.add_argument("--stats-interval", type=float, default=5.0, help="seconds between reports")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    trio.run(run, args.data_dir, args.port, args.stats_interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
