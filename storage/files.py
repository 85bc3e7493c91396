"""The file operations the log engine needs, and their real implementation.

The engine never calls ``os`` directly for its segment files: it goes through a
:class:`FileLayer`, so tests can swap in a simulated disk that loses unsynced
writes at a crash (see :mod:`storage.simulated_disk`).
"""

from __future__ import annotations

import os
from typing import Protocol

__all__ = ["FileLayer", "LogFile", "OsFileLayer", "OsLogFile", "SEGMENT_SUFFIX"]

#: File name suffix of segment files.
SEGMENT_SUFFIX = ".seg"


class LogFile(Protocol):
    """An open segment file."""

    def pwrite(self, data: bytes, offset: int) -> None:
        """Write all of ``data`` at ``offset``."""
        ...

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (fewer at the end of the file)."""
        ...

    def sync(self) -> None:
        """Make the written data durable (``fdatasync``)."""
        ...

    def truncate(self, size: int) -> None:
        """Cut the file at ``size`` bytes."""
        ...

    def allocate(self, size: int) -> None:
        """Reserve space so the file reads as at least ``size`` bytes (zeros past the data)."""
        ...

    def size(self) -> int:
        """Current length in bytes."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class FileLayer(Protocol):
    """The directory holding the segment files."""

    def list_names(self) -> list[str]:
        """Names of the segment files present."""
        ...

    def open(self, name: str, *, create: bool) -> LogFile:
        """Open a segment file, creating it (empty) when ``create`` is true."""
        ...

    def remove(self, name: str) -> None:
        """Delete a segment file."""
        ...

    def sync_dir(self) -> None:
        """Make creations and deletions of files durable."""
        ...


class OsLogFile:
    """A segment file on the real file system."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def pwrite(self, data: bytes, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (looping over short writes)."""
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes from ``offset``."""
        return os.pread(self._fd, size, offset)

    def sync(self) -> None:
        """``fdatasync`` the file."""
        os.fdatasync(self._fd)

    def truncate(self, size: int) -> None:
        """``ftruncate`` the file."""
        os.ftruncate(self._fd, size)

    def allocate(self, size: int) -> None:
        """``posix_fallocate`` up to ``size`` (the extents read as zeros)."""
        current = os.fstat(self._fd).st_size
        if size > current:
            os.posix_fallocate(self._fd, current, size - current)

    def size(self) -> int:
        """Length from ``fstat``."""
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self._fd)


class OsFileLayer:
    """Segment files in one directory of the real file system."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def list_names(self) -> list[str]:
        """Names ending in :data:`SEGMENT_SUFFIX`."""
        return [n for n in os.listdir(self.path) if n.endswith(SEGMENT_SUFFIX)]

    def open(self, name: str, *, create: bool) -> OsLogFile:
        """Open read-write, creating the file when asked (it must not exist then)."""
        flags = os.O_RDWR | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        return OsLogFile(os.open(os.path.join(self.path, name), flags, 0o644))

    def remove(self, name: str) -> None:
        """Unlink the file."""
        os.unlink(os.path.join(self.path, name))

    def sync_dir(self) -> None:
        """``fsync`` the directory."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
