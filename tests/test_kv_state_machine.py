"""The small KV state machine of ``multiraft node`` and its command-line parsing."""

from __future__ import annotations

import pytest

from multiraft.codec import CodecError
from multiraft.kv import KVCommand, KVStateMachine
from multiraft.node_process import main, parse_address


def test_put_returns_the_previous_value_and_delete_removes_the_key() -> None:
    sm = KVStateMachine()
    assert sm.apply(5, KVCommand("put", b"a", b"1").to_bytes()) is None
    assert sm.apply(6, KVCommand("put", b"a", b"2").to_bytes()) == b"1"
    assert sm.apply(7, KVCommand("put", b"b", b"3").to_bytes()) is None
    assert sm.apply(8, KVCommand("delete", b"a").to_bytes()) == b"2"
    assert sm.apply(9, KVCommand("delete", b"zz").to_bytes()) is None
    assert sm.data == {b"b": b"3"}
    assert sm.get(b"b") == b"3"
    assert sm.get(b"a") is None
    assert sm.applied_index == 9


def test_snapshot_restores_the_same_pairs_and_index_into_a_fresh_replica() -> None:
    sm = KVStateMachine()
    for i in range(20):
        sm.apply(i + 1, KVCommand("put", f"k{i}".encode(), bytes([i])).to_bytes())
    other = KVStateMachine()
    other.apply(1, KVCommand("put", b"stale", b"x").to_bytes())
    other.restore(sm.snapshot())
    assert other.data == sm.data
    assert other.applied_index == 20


def test_unknown_operation_and_malformed_command_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown KV operation 'merge'"):
        KVCommand("merge", b"k")
    sm = KVStateMachine()
    with pytest.raises(CodecError):
        sm.apply(1, b"\xc1 not msgpack")
    assert sm.data == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:7001", ("127.0.0.1", 7001)), ("[::1]:0", ("::1", 0)), ("h:65535", ("h", 65535))],
)
def test_addresses_parse_with_ipv6_brackets(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["7001", ":7001", "h:", "h:x", "h:65536"])
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_node_command_refuses_partial_tls_options(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--id", "1", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), "--tls-cert", "x"]
    )
    assert code == 2
    assert "--tls-cert, --tls-key and --tls-ca go together" in capsys.readouterr().err


def test_node_command_refuses_a_bad_peer_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--id", "1", "--listen", "127.0.0.1:0", "--data-dir", "d", "--peer", "2@h:1"])
    assert exited.value.code == 2
    assert "expected ID=HOST:PORT, got '2@h:1'" in capsys.readouterr().err
