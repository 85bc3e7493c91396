"""Mutual TLS 1.3 between nodes, trusting only the cluster's certificate authority.

Both ends present a certificate and accept the other's only if the cluster CA
signed it (no system trust store). With TLS 1.3 the client finishes its
handshake before the server has judged the client's certificate: a rejected
client learns it only on its next read, which may hang. The transport therefore
puts a deadline on every read and counts a peer as connected only after its own
HELLO/WELCOME round trip inside the TLS session.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import attrs
import trio

__all__ = ["TlsConfig", "client_context", "server_context", "wrap_client", "wrap_server"]


@attrs.frozen
class TlsConfig:
    """Paths of this node's certificate chain and key, and of the cluster CA.

    ``check_hostname``: a dialer also requires the peer's certificate to name
    the host it dialed (an IP address or DNS name from the peer table).
    """

    cert_file: str = attrs.field(converter=str)
    key_file: str = attrs.field(converter=str)
    ca_file: str = attrs.field(converter=str)
    check_hostname: bool = True

    def __attrs_post_init__(self) -> None:
        for name in ("cert_file", "key_file", "ca_file"):
            path = getattr(self, name)
            if not Path(path).is_file():
                raise ValueError(f"{name} {path!r} is not a readable file")


def _base_context(tls: TlsConfig, purpose: ssl.Purpose) -> ssl.SSLContext:
    ctx = ssl.SSLContext(
        ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=tls.ca_file)
    ctx.load_cert_chain(certfile=tls.cert_file, keyfile=tls.key_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """The acceptor's context: requires a client certificate signed by the cluster CA."""
    return _base_context(tls, ssl.Purpose.CLIENT_AUTH)


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """The dialer's context: presents this node's certificate, trusts only the cluster CA."""
    ctx = _base_context(tls, ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = tls.check_hostname
    return ctx


async def wrap_server(
    stream: trio.abc.Stream, ctx: ssl.SSLContext
) -> trio.SSLStream[trio.abc.Stream]:
    """Run the server side of the TLS handshake on ``stream`` (the caller sets the deadline)."""
    tls_stream = trio.SSLStream(stream, ctx, server_side=True)
    await tls_stream.do_handshake()
    return tls_stream


async def wrap_client(
    stream: trio.abc.Stream, ctx: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.abc.Stream]:
    """Run the client side of the TLS handshake on ``stream`` (the caller sets the deadline)."""
    tls_stream = trio.SSLStream(stream, ctx, server_hostname=host)
    await tls_stream.do_handshake()
    return tls_stream
