"""Handshake of the TCP transport: refusals naming what did not match, and mutual TLS."""

from __future__ import annotations

import ssl

import attrs
import pytest
import trio
import trustme

from tests.tcp_support import (
    RawPeer,
    app_frame,
    cluster,
    quick_config,
    receive_frame,
    transport_logs,
    wait_until,
)
from transport.framing import Kind
from transport.peer import LinkState
from transport.tcp import TcpTransport, open_tcp_transport
from transport.tls import TlsConfig
from transport.wire import Refusal, Welcome, decode_wire


def _nothing_received(t: TcpTransport) -> bool:
    return t.stats()["frames_received"] == 0 and t.stats()["inbox_items"] == 0


async def test_peer_from_another_cluster_is_refused_with_the_mismatch_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster(quick_config(1, cluster_id="alpha"), connect=False) as (a,):
        a.set_peer(2, "127.0.0.1", 1)  # node 2 may connect; a never reaches it
        cfg_b = quick_config(2, cluster_id="beta", peers={1: a.listen_address})
        async with open_tcp_transport(cfg_b) as b:
            await wait_until(lambda: b.stats()["dial_failures"] >= 1, 5.0, "refusal")
            assert b.peer_state(1) is LinkState.DOWN
            assert b.send(1, app_frame(2, 1)) is False
            assert a.stats()["handshakes_refused"] >= 1
            assert a.stats()["connections_accepted"] == 0
            assert _nothing_received(a)
    reason = "cluster id mismatch: peer is in cluster 'beta', this node is in 'alpha'"
    logs = transport_logs(caplog)
    assert any(m.startswith("refused a connection from 127.0.0.1:") and reason in m for m in logs)
    assert any(f"refused the connection: {reason}" in m for m in logs)


async def test_dialing_the_wrong_node_id_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async with cluster(quick_config(1, peers={2: ("127.0.0.1", 1)}), connect=False) as (a,):
        # Node 2 believes node 3 listens at node 1's address.
        b_config = quick_config(2, peers={3: a.listen_address})
        async with open_tcp_transport(b_config) as b:
            await wait_until(lambda: a.stats()["handshakes_refused"] >= 1, 5.0, "refusal")
            assert b.peer_state(3) is LinkState.DOWN
            assert a.stats()["connections_accepted"] == 0
    reason = "node id mismatch: peer dialed node 3, this is node 1"
    assert any(reason in m for m in transport_logs(caplog))


async def test_node_that_is_not_a_configured_peer_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster(quick_config(1, peers={2: ("127.0.0.1", 1)}), connect=False) as (a,):
        stranger = quick_config(9, peers={1: a.listen_address})
        async with open_tcp_transport(stranger) as b:
            await wait_until(lambda: a.stats()["handshakes_refused"] >= 1, 5.0, "refusal")
            assert b.peer_state(1) is LinkState.DOWN
    reason = "unexpected node id: node 9 is not a peer of node 1"
    assert any(reason in m for m in transport_logs(caplog))


async def test_unsupported_protocol_version_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async with cluster(quick_config(1, peers={2: ("127.0.0.1", 1)}), connect=False) as (a,):
        raw = await RawPeer.connect(a.listen_port)
        kind, payload = await raw.hello(2, 1, version=7)
        assert kind is Kind.REFUSE
        reason = "unsupported protocol version 7 (this node speaks [1])"
        assert decode_wire(payload, Refusal).reason == reason
        assert await raw.closed_by_peer()
        await raw.aclose()
    assert any(
        "refused a connection from 127.0.0.1:" in m and reason in m for m in transport_logs(caplog)
    )


async def test_accepted_hello_is_answered_with_this_nodes_identity() -> None:
    async with cluster(quick_config(1, peers={2: ("127.0.0.1", 1)}), connect=False) as (a,):
        raw = await RawPeer.connect(a.listen_port)
        kind, payload = await raw.hello(2, 1)
        assert kind is Kind.WELCOME
        assert decode_wire(payload, Welcome) == Welcome(1, "test-cluster", 1)
        await raw.aclose()


async def test_blocked_node_is_refused_and_unblocking_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        a.block(2)
        await wait_until(lambda: b.peer_state(1) is LinkState.DOWN, 5.0, "b cut off")
        assert a.send(2, app_frame(1, 2)) is False
        assert b.send(1, app_frame(2, 1)) is False
        await wait_until(lambda: a.stats()["handshakes_refused"] >= 1, 5.0, "b refused")
        a.unblock(2)
        await wait_until(lambda: b.peer_state(1) is LinkState.CONNECTED, 5.0, "b back")
        await wait_until(lambda: a.peer_state(2) is LinkState.CONNECTED, 5.0, "a back")
        assert b.send(1, app_frame(2, 1)) is True
        assert await receive_frame(a) == app_frame(2, 1)
    assert any("node 2 is blocked by node 1" in m for m in transport_logs(caplog))


# ----------------------------------------------------------------------- TLS


@attrs.frozen
class Pki:
    """TLS settings of nodes 1 and 2 (cluster CA) and an impostor (another CA)."""

    node1: TlsConfig
    node2: TlsConfig
    impostor: TlsConfig
    ca_file: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def issue(name: str, authority: trustme.CA) -> TlsConfig:
        cert = authority.issue_cert("127.0.0.1", "localhost")
        cert_file, key_file = root / f"{name}.crt", root / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(str(cert_file), append=True)
        cert.private_key_pem.write_to_path(str(key_file))
        return TlsConfig(cert_file, key_file, ca_file)

    # The impostor trusts the cluster CA (so it would accept node 1's certificate)
    # but presents a certificate from another CA.
    return Pki(
        issue("node1", ca), issue("node2", ca), issue("impostor", trustme.CA()), str(ca_file)
    )


async def test_mutual_tls_nodes_with_cluster_certificates_exchange_frames(
    pki: Pki,
) -> None:
    cfg_a = quick_config(1, tls=pki.node1)
    cfg_b = quick_config(2, tls=pki.node2)
    async with cluster(cfg_a, cfg_b) as (a, b):
        assert a.send(2, app_frame(1, 2)) is True
        assert await receive_frame(b) == app_frame(1, 2)
        assert b.send(1, app_frame(2, 1)) is True
        assert await receive_frame(a) == app_frame(2, 1)


async def test_tls_peer_with_a_certificate_from_another_ca_is_never_connected(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster(quick_config(1, tls=pki.node1), connect=False) as (a,):
        a.set_peer(2, "127.0.0.1", 1)
        cfg = quick_config(2, tls=pki.impostor, peers={1: a.listen_address})
        async with open_tcp_transport(cfg) as impostor:
            await wait_until(lambda: impostor.stats()["dial_failures"] >= 2, 8.0, "failures")
            # Its own TLS handshake may have completed (TLS 1.3), but without the
            # WELCOME round trip it never counts as connected and sends nothing.
            assert impostor.stats()["connections_opened"] == 0
            assert impostor.peer_state(1) is LinkState.DOWN
            assert impostor.send(1, app_frame(2, 1)) is False
        assert a.stats()["connections_accepted"] == 0
        assert _nothing_received(a)
    assert any(
        m.startswith("closing the connection from 127.0.0.1:") for m in transport_logs(caplog)
    )


async def test_tls_client_without_a_certificate_is_refused(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    node1 = quick_config(1, tls=pki.node1, peers={2: ("127.0.0.1", 1)})
    async with cluster(node1, connect=False) as (a,):
        ctx = ssl.create_default_context(cafile=pki.ca_file)
        tcp = await trio.open_tcp_stream("127.0.0.1", a.listen_port)
        stream = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            # Under TLS 1.3 the client's handshake may return normally before the
            # server has judged the missing certificate; the HELLO round trip fails.
            await stream.do_handshake()
            await RawPeer(stream).hello(2, 1)
        await trio.aclose_forcefully(stream)
        assert a.stats()["connections_accepted"] == 0
        assert a.stats()["connections_closed_on_error"] == 1
    assert any(
        m.startswith("closing the connection from 127.0.0.1:")
        and "PEER_DID_NOT_RETURN_A_CERTIFICATE" in m
        for m in transport_logs(caplog)
    )


async def test_plain_tcp_node_cannot_talk_to_a_tls_node(pki: Pki) -> None:
    async with cluster(quick_config(1, tls=pki.node1), connect=False) as (a,):
        a.set_peer(2, "127.0.0.1", 1)
        async with open_tcp_transport(quick_config(2, peers={1: a.listen_address})) as plain:
            await wait_until(lambda: plain.stats()["dial_failures"] >= 1, 8.0, "failure")
            assert plain.peer_state(1) is LinkState.DOWN
        assert a.stats()["connections_accepted"] == 0
