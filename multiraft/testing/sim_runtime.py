"""One deterministic trio run: a seeded scheduler, a mock clock and simulated worker threads.

Three things would make two runs of one simulation differ, and this module
removes each of them for the duration of :func:`run_deterministic`:

* **trio's scheduler.** Each scheduling batch of runnable tasks is put in an
  order drawn from the module-level generator ``trio._core._run._r``, which is
  seeded from the OS at import. We seed it with the run's seed and turn on
  trio's own deterministic mode (``_ALLOW_DETERMINISTIC_SCHEDULING``, the switch
  its Hypothesis plugin uses): the batch is first sorted by task creation order
  and then shuffled with ``_r``. Sorting also removes the other source of order
  trio leaves to memory addresses: ties between equal deadlines are broken by
  ``id(cancel_scope)``, which decides the order tasks become runnable, and
  cancellation walks a set of tasks; both only affect the order inside a batch.
  The previous generator state and flag are restored afterwards.
* **Time.** The run uses :class:`trio.testing.MockClock` with
  ``autojump_threshold=0``: time advances only when every task waits, straight
  to the next deadline.
* **Worker threads.** The coordinator runs log engine writes and blocking state
  machines through ``trio.to_thread.run_sync``. A real thread finishes after a
  real-time delay, unrelated to the mock clock. While the run lasts,
  ``trio.to_thread.run_sync`` is replaced by :class:`SimulatedThreads`, which
  runs the function on the event loop and then lets simulated time pass: before
  the call for work that declares a delay up front (a :class:`DelayedWork`
  owner, such as a slow disk: a crash during the delay loses the write), after
  the call for work that reports a cost while it runs (:meth:`CostMeter.add`,
  such as a slow state machine).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import trio
import trio.testing

__all__ = ["CostMeter", "DelayedWork", "SimulatedThreads", "run_deterministic"]

T = TypeVar("T")


class CostMeter:
    """Simulated seconds that synchronous work reported while it ran."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = 0.0

    def add(self, seconds: float) -> None:
        """Charge ``seconds`` of simulated time to the work now running."""
        self._pending += seconds

    def take(self) -> float:
        """The seconds charged since the last call, resetting the count."""
        pending = self._pending
        self._pending = 0.0
        return pending


@runtime_checkable
class DelayedWork(Protocol):
    """An object whose methods, run in a simulated thread, take time before they act."""

    def simulated_delay(self) -> float:
        """Seconds of simulated time the next call spends before it takes effect."""
        ...

    def interrupted(self, method: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """The run was cancelled (a crash) during the delay of ``method(*args)``."""
        ...


class SimulatedThreads:
    """A stand-in for ``trio.to_thread.run_sync`` that runs work on the event loop."""

    __slots__ = ("calls", "meter")

    def __init__(self, meter: CostMeter) -> None:
        self.meter = meter
        self.calls = 0

    async def run_sync(
        self,
        fn: Callable[..., T],
        *args: Any,
        thread_name: str | None = None,
        abandon_on_cancel: bool = False,
        limiter: trio.CapacityLimiter | None = None,
    ) -> T:
        """Run ``fn(*args)``, letting its simulated duration pass on the mock clock."""
        self.calls += 1
        if limiter is None:
            return await self._run(fn, args)
        async with limiter:
            return await self._run(fn, args)

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, DelayedWork):
            delay = owner.simulated_delay()
            try:
                await trio.sleep(delay)
            except trio.Cancelled:
                owner.interrupted(fn, args)
                raise
            return fn(*args)
        self.meter.take()
        result = fn(*args)
        cost = self.meter.take()
        await trio.sleep(cost)
        return result


def run_deterministic(
    main: Callable[[], Awaitable[T]], *, seed: int, threads: SimulatedThreads
) -> T:
    """``trio.run(main)`` on a mock clock with trio's scheduler seeded by ``seed``.

    Not reentrant: it must not be called from inside a trio run.
    """
    from trio._core import _run as trio_run_module

    generator: random.Random = trio_run_module._r
    saved_state = generator.getstate()
    flag_name = "_ALLOW_DETERMINISTIC_SCHEDULING"
    saved_flag = getattr(trio_run_module, flag_name)
    saved_run_sync = trio.to_thread.run_sync
    generator.seed(seed)
    setattr(trio_run_module, flag_name, True)
    setattr(trio.to_thread, "run_sync", threads.run_sync)  # noqa: B010 (typed differently)
    try:
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        setattr(trio.to_thread, "run_sync", saved_run_sync)  # noqa: B010
        setattr(trio_run_module, flag_name, saved_flag)
        generator.setstate(saved_state)
