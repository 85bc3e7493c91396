"""Tagged binary encoding of the store's commands, requests and replies.

A message is one opcode byte followed by the msgpack body that
:mod:`multiraft.codec` makes of the attrs value. The opcode names the class, so
a receiver decodes any registered message without knowing its type in advance,
and a host can check what kind of command a client sent by reading one byte.
No pickle: only registered attrs classes are ever built from bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from multiraft.codec import CodecError, decode, encode

__all__ = ["CodecError", "message", "opcode_of", "pack", "unpack"]

T = TypeVar("T")

_CLASS_BY_CODE: dict[int, type[Any]] = {}
_CODE_BY_CLASS: dict[type[Any], int] = {}


def message(code: int) -> Callable[[type[T]], type[T]]:
    """Register an attrs class under the opcode ``code`` (1..255, unique)."""

    def register(cls: type[T]) -> type[T]:
        if not 0 < code < 256:
            raise ValueError(f"opcode {code} out of range 1..255")
        if code in _CLASS_BY_CODE:
            raise ValueError(f"opcode {code} already names {_CLASS_BY_CODE[code].__name__}")
        _CLASS_BY_CODE[code] = cls
        _CODE_BY_CLASS[cls] = code
        return cls

    return register


def pack(value: object) -> bytes:
    """The opcode of ``value``'s class followed by its msgpack body."""
    code = _CODE_BY_CLASS.get(type(value))
    if code is None:
        raise TypeError(f"{type(value).__name__} is not a registered message")
    return bytes((code,)) + encode(value)


def opcode_of(data: bytes) -> int:
    """The opcode of packed ``data`` (0 for empty data)."""
    return data[0] if data else 0


def unpack(data: bytes) -> object:
    """The value :func:`pack` encoded; ``CodecError`` for anything else."""
    cls = _CLASS_BY_CODE.get(opcode_of(data))
    if cls is None:
        raise CodecError(f"unknown message opcode {opcode_of(data)}")
    value: object = decode(data[1:], cls)
    return value
