"""Proposal ids inside log entries, and the waiters that receive their outcome.

Every command a node proposes is prefixed by a 16-byte header: the proposing
node's id and a per-node sequence number. When any replica applies the entry,
the node whose id is in the header finds its waiter by the sequence number and
hands it the state machine's result; no other node has such a waiter. The
same header prefixes a conf change's context.

Sequence numbers must not repeat across a node's runs: a restarted node may
apply entries its earlier run proposed (committed while it was down, or applied
again from its log), and one with the number of a new proposal would answer
that proposal's waiter with another command's result. Each run therefore
starts at its own point (``NodeConfig.first_proposal_id``, random by default).
"""

from __future__ import annotations

import struct

import trio

__all__ = ["HEADER_SIZE", "Completions", "Proposal", "Waiter", "decode_header", "encode_header"]

_HEADER = struct.Struct(">QQ")
#: Bytes of the proposal header.
HEADER_SIZE = _HEADER.size

_reschedule = trio.lowlevel.reschedule
_checkpoint = trio.lowlevel.checkpoint
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_ABORT_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED


def encode_header(node_id: int, seq: int) -> bytes:
    """The header naming proposal ``seq`` of ``node_id``."""
    return _HEADER.pack(node_id, seq)


def decode_header(data: bytes) -> tuple[int, int]:
    """``(node_id, seq)`` of a prefixed payload; ``(0, 0)`` when it has no header."""
    if len(data) < HEADER_SIZE:
        return 0, 0
    node_id, seq = _HEADER.unpack_from(data)
    return node_id, seq


class Waiter:
    """A one-shot slot for the outcome of one request.

    Either one task waits for it (:meth:`wait`, what ``Node.propose`` does), or
    it was made by ``Node.propose_nowait`` for a :class:`Completions` queue, to
    which it reports itself once the outcome is in; :meth:`result` then reads
    the outcome without waiting. Built on trio's low-level parking rather than
    a ``trio.Event``: every proposal makes one, so it keeps to a few slots and
    no further objects.
    """

    __slots__ = ("_completions", "_done", "_error", "_task", "_value", "tag")

    def __init__(self, completions: Completions | None = None, tag: object = None) -> None:
        self._done = False
        self._value: object = None
        self._error: BaseException | None = None
        self._task: trio.lowlevel.Task | None = None
        self._completions = completions
        #: What the submitter attached to the request (``propose_nowait``'s ``tag``).
        self.tag = tag

    @property
    def done(self) -> bool:
        """Whether the outcome is in."""
        return self._done

    def set_result(self, value: object) -> None:
        """Deliver a value (ignored if an outcome was already delivered)."""
        if not self._done:
            self._value = value
            self._release()

    def set_error(self, error: BaseException) -> None:
        """Deliver an exception (ignored if an outcome was already delivered)."""
        if not self._done:
            self._error = error
            self._release()

    def result(self) -> object:
        """The outcome without waiting: the value, or the exception raised.

        Raises ``RuntimeError`` while the outcome is not in yet.
        """
        if not self._done:
            raise RuntimeError("the outcome is not in yet")
        if self._error is not None:
            raise self._error
        return self._value

    @property
    def error(self) -> BaseException | None:
        """The exception delivered, or None (no outcome yet, or a value)."""
        return self._error

    def _release(self) -> None:
        self._done = True
        task = self._task
        if task is not None:
            self._task = None
            _reschedule(task)
        completions = self._completions
        if completions is not None:
            completions._finished(self)

    async def wait(self) -> object:
        """Wait for the outcome: return the value or raise the exception.

        Always a checkpoint, like ``trio.Event.wait``; one task at a time may wait.
        """
        if self._done:
            await _checkpoint()
        else:
            if self._task is not None:
                raise RuntimeError("another task is already waiting for this outcome")
            self._task = _current_task()
            await _wait_task_rescheduled(self._abort)
        if self._error is not None:
            raise self._error
        return self._value

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        # The waiting task was cancelled: it no longer expects a reschedule.
        self._task = None
        return _ABORT_SUCCEEDED


class Completions:
    """The requests submitted without waiting whose outcome is in, for one task to collect.

    ``Node.propose_nowait`` hands each request's :class:`Waiter` to a queue of
    this kind; the waiter joins the queue, in the order outcomes arrive, as soon
    as its outcome is in (a result, the state machine's exception, a refusal, a
    timeout, or the node closing: every request submitted reports exactly once).
    One task collects them with :meth:`wait`, which returns all that finished
    since its last call: a ready cycle that answers a thousand requests wakes
    that task once, where a thousand waiting tasks would each be woken.
    """

    __slots__ = ("_ready", "_task")

    def __init__(self) -> None:
        self._ready: list[Waiter] = []
        self._task: trio.lowlevel.Task | None = None

    def __len__(self) -> int:
        """Finished requests not collected yet."""
        return len(self._ready)

    def take_nowait(self) -> list[Waiter]:
        """The finished requests not collected yet (possibly none), oldest first."""
        ready = self._ready
        if not ready:
            return []
        self._ready = []
        return ready

    async def wait(self) -> list[Waiter]:
        """The finished requests not collected yet, oldest first, waiting for one if none.

        Always a checkpoint; one task at a time may wait.
        """
        if self._ready:
            await _checkpoint()
        else:
            if self._task is not None:
                raise RuntimeError("another task is already waiting for these completions")
            self._task = _current_task()
            await _wait_task_rescheduled(self._abort)
        return self.take_nowait()

    def _finished(self, waiter: Waiter) -> None:
        self._ready.append(waiter)
        task = self._task
        if task is not None:
            self._task = None
            _reschedule(task)

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self._task = None
        return _ABORT_SUCCEEDED


class Proposal:
    """A command queued for the driver: its payload (header included) and its waiter."""

    __slots__ = ("data", "seq", "waiter")

    def __init__(self, data: bytes, seq: int, waiter: Waiter) -> None:
        self.data = data
        self.seq = seq
        self.waiter = waiter
