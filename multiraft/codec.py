"""The one codec of the project: attrs classes to msgpack bytes and back.

Wire frames, disk records and conf change entries all go through this module,
so an encoding decision is made once. It uses cattrs' msgpack converter;
nothing here (or anywhere in the project) unpickles bytes.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack
from cattrs.preconf.msgpack import make_converter

__all__ = ["CodecError", "converter", "decode", "encode"]

T = TypeVar("T")

#: The shared cattrs converter. Adapters may register hooks for their own types.
converter = make_converter()


class CodecError(ValueError):
    """Bytes that do not decode to the expected type."""


def encode(value: Any) -> bytes:
    """Encode an attrs value (or plain data) as msgpack bytes."""
    out: bytes = msgpack.packb(converter.unstructure(value), use_bin_type=True)
    return out


def decode(data: bytes, cls: type[T]) -> T:
    """Decode bytes produced by :func:`encode` into ``cls``.

    Raises :class:`CodecError` for anything malformed, whatever the underlying failure.
    """
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
        return converter.structure(raw, cls)
    except Exception as exc:  # any malformed input maps to one error type
        raise CodecError(f"cannot decode {cls.__name__}: {exc}") from exc
