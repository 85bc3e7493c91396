"""A simulated disk that loses what was not synced when it "loses power".

It implements :class:`storage.files.FileLayer` in memory. Every mutating call
(write, sync, truncate, allocate, create, remove, directory sync) counts as one
operation; with ``crash_at=n`` the ``n``-th operation raises
:class:`SimulatedCrash` (a write is applied to the page cache first, so the
crash catches it in flight). :meth:`SimulatedDisk.after_crash` then builds the
disk as a power loss could leave it:

* data written since a file's last ``sync`` survives completely, not at all,
  as a prefix, or as a random subset of its 512-byte sectors;
* bytes of an unsynced extension that were not written read as zeros, and the
  file may keep its longer size or fall back to its synced one;
* an unsynced truncation or allocation may or may not have happened;
* files created or removed since the last directory sync may or may not exist.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["SimulatedCrash", "SimulatedDisk", "SimulatedFile"]

_SECTOR = 512


class SimulatedCrash(Exception):
    """The simulated power loss: raised by the operation it interrupts."""


class _FileState:
    __slots__ = ("data", "durable", "pending")

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.durable = bytes(data)
        # Unsynced changes in order: ("w", offset, bytes) or ("t"/"a", size, b"").
        self.pending: list[tuple[str, int, bytes]] = []


class SimulatedFile:
    """An open file of a :class:`SimulatedDisk`."""

    __slots__ = ("_disk", "_state")

    def __init__(self, disk: SimulatedDisk, state: _FileState) -> None:
        self._disk = disk
        self._state = state

    def pwrite(self, data: bytes, offset: int) -> None:
        """Write into the page cache (lost at a crash unless synced)."""
        st = self._state
        end = offset + len(data)
        if end > len(st.data):
            st.data.extend(bytes(end - len(st.data)))
        st.data[offset:end] = data
        st.pending.append(("w", offset, bytes(data)))
        self._disk.tick()

    def pread(self, size: int, offset: int) -> bytes:
        """Read from the page cache."""
        return bytes(self._state.data[offset : offset + size])

    def sync(self) -> None:
        """Make everything written so far durable."""
        self._disk.tick()
        st = self._state
        st.durable = bytes(st.data)
        st.pending.clear()

    def truncate(self, size: int) -> None:
        """Cut the file (durable at the next sync)."""
        self._disk.tick()
        st = self._state
        del st.data[size:]
        st.pending.append(("t", size, b""))

    def allocate(self, size: int) -> None:
        """Extend with zeros up to ``size`` (durable at the next sync)."""
        self._disk.tick()
        st = self._state
        if size > len(st.data):
            st.data.extend(bytes(size - len(st.data)))
            st.pending.append(("a", size, b""))

    def size(self) -> int:
        """Current length."""
        return len(self._state.data)

    def close(self) -> None:
        """Nothing to release."""


class SimulatedDisk:
    """An in-memory :class:`storage.files.FileLayer` with power-loss simulation."""

    def __init__(self, *, crash_at: int | None = None) -> None:
        self._files: dict[str, _FileState] = {}
        self._durable_names: dict[str, _FileState] = {}
        self.ops = 0
        self.crash_at = crash_at

    def tick(self) -> None:
        """Count one operation; raise :class:`SimulatedCrash` at ``crash_at``."""
        self.ops += 1
        if self.crash_at is not None and self.ops >= self.crash_at:
            self.crash_at = None
            raise SimulatedCrash(f"power lost at operation {self.ops}")

    def list_names(self) -> list[str]:
        """Files currently present."""
        return list(self._files)

    def open(self, name: str, *, create: bool) -> SimulatedFile:
        """Open (or create) a file."""
        if create:
            if name in self._files:
                raise FileExistsError(name)
            state = self._files[name] = _FileState()
            self.tick()
        else:
            try:
                state = self._files[name]
            except KeyError:
                raise FileNotFoundError(name) from None
        return SimulatedFile(self, state)

    def remove(self, name: str) -> None:
        """Delete a file (durable at the next directory sync)."""
        del self._files[name]
        self.tick()

    def sync_dir(self) -> None:
        """Make creations and deletions durable."""
        self.tick()
        self._durable_names = dict(self._files)

    def contents(self, name: str) -> bytes:
        """The current bytes of a file (for tests that damage files on purpose)."""
        return bytes(self._files[name].data)

    def replace_contents(self, name: str, data: bytes) -> None:
        """Overwrite a file durably (for tests that damage files on purpose)."""
        self._files[name] = self._durable_names[name] = _FileState(data)

    def after_crash(self, rng: random.Random) -> SimulatedDisk:
        """The disk as a power loss now could leave it, chosen with ``rng``."""
        disk = SimulatedDisk()
        names = set(self._durable_names)
        for name in set(self._files) ^ set(self._durable_names):
            if rng.random() < 0.5:
                names ^= {name}
        for name in sorted(names):
            state = self._files.get(name) or self._durable_names[name]
            data = _surviving_bytes(state, rng)
            disk._files[name] = disk._durable_names[name] = _FileState(data)
        return disk


def _surviving_bytes(state: _FileState, rng: random.Random) -> bytes:
    out = bytearray(state.durable)
    for kind, arg, data in state.pending:
        if kind == "t":
            if rng.random() < 0.5:
                del out[arg:]
            continue
        if kind == "a":
            if rng.random() < 0.5 and arg > len(out):
                out.extend(bytes(arg - len(out)))
            continue
        mode = rng.randrange(4)
        if mode == 0:
            continue
        n_sectors = (len(data) + _SECTOR - 1) // _SECTOR
        keep: Sequence[int]
        if mode == 1:
            keep = range(n_sectors)
        elif mode == 2:
            keep = range(rng.randrange(n_sectors + 1))
        else:
            keep = [k for k in range(n_sectors) if rng.random() < 0.5]
        for k in keep:
            lo = k * _SECTOR
            chunk = data[lo : lo + _SECTOR]
            start = arg + lo
            if start + len(chunk) > len(out):
                out.extend(bytes(start + len(chunk) - len(out)))
            out[start : start + len(chunk)] = chunk
    if len(state.data) > len(out) and rng.random() < 0.5:
        out.extend(bytes(len(state.data) - len(out)))
    return bytes(out)
