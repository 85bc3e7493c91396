"""The KV command codec: the project codec's bytes, read without its converter."""

from __future__ import annotations

import msgpack
import pytest

from multiraft.codec import CodecError, encode
from multiraft.kv import KVCommand, KVStateMachine, decode_command

COMMANDS = [
    KVCommand("put", b"k", b"v"),
    KVCommand("put", b"", b""),
    KVCommand("delete", b"key-7"),
    KVCommand("put", b"\x00" * 300, bytes(range(256)) * 300),
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: f"{c.op}-{len(c.key)}-{len(c.value)}")
def test_commands_encode_to_the_project_codec_bytes_and_decode_back(cmd: KVCommand) -> None:
    # Logs written before the codec moved here hold encode(cmd): same bytes both ways.
    data = cmd.to_bytes()
    assert data == encode(cmd)
    assert KVCommand.from_bytes(data) == cmd
    assert decode_command(data) == (cmd.op, cmd.key, cmd.value)


def test_a_missing_value_decodes_as_empty_and_extra_fields_are_ignored() -> None:
    assert decode_command(msgpack.packb({"op": "delete", "key": b"a"})) == ("delete", b"a", b"")
    data = msgpack.packb({"op": "put", "key": b"a", "value": b"1", "ttl": 5})
    assert decode_command(data) == ("put", b"a", b"1")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([b"put", b"k", b"v"], "expected a map, got list"),
        ({"op": "merge", "key": b"k"}, "unknown KV operation 'merge'"),
        ({"op": 1, "key": b"k"}, "unknown KV operation 1"),
        ({"op": ["put"], "key": b"k"}, r"unknown KV operation \['put'\]"),
        ({"key": b"k", "value": b"v"}, "unknown KV operation None"),
        ({"op": "put", "key": "k", "value": b"v"}, "key must be bytes, got str"),
        ({"op": "put", "value": b"v"}, "key must be bytes, got NoneType"),
        ({"op": "put", "key": 5, "value": b"v"}, "key must be bytes, got int"),
        ({"op": "put", "key": b"k", "value": 5}, "value must be bytes, got int"),
    ],
)
def test_malformed_commands_raise_a_codec_error_naming_the_fault(raw: object, message: str) -> None:
    data = msgpack.packb(raw, use_bin_type=True)
    with pytest.raises(CodecError, match="^cannot decode KVCommand: " + message):
        decode_command(data)
    with pytest.raises(CodecError, match=message):
        KVCommand.from_bytes(data)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x83\xa2op", b"\x93\x01\x02\x03trailing"])
def test_bytes_that_are_not_one_msgpack_value_raise_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError, match=r"^cannot decode KVCommand: "):
        decode_command(data)


def test_a_malformed_command_leaves_the_state_machine_unchanged() -> None:
    sm = KVStateMachine()
    sm.apply(1, KVCommand("put", b"a", b"1").to_bytes())
    with pytest.raises(CodecError, match="key must be bytes"):
        sm.apply(2, msgpack.packb({"op": "delete", "key": "a"}))
    assert sm.data == {b"a": b"1"}
