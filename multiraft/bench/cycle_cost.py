"""What a node's CPU goes to: a fixed cost per ready cycle and a cost per commit.

A node pays for every ready cycle whatever it carries (waking its tasks,
receiving and sending a frame per peer, handing a write to the storage thread
and taking the answer back, one ``fdatasync``), and for every command on top
(decoding, stepping, encoding, applying). Over runs of the same cluster at
different loads, each node's CPU seconds are close to

    cpu = per_commit * commits + per_cycle * ready_cycles

and :func:`fit_cycle_cost` finds the two costs by least squares. Deep closed
loops put thousands of commits in a cycle and measure ``per_commit``; light
open loops put a few in each and measure ``per_cycle``; the bench's peak
search and its open-loop fractions provide both kinds of run.

Why the split matters for latency: the peak is reached with large batches,
where the fixed cost hardly counts, but half of that rate in an open loop runs
with cycles of a hundred or so commits, where it does. A cluster whose cost
at the peak is ``per_commit`` per commit is, at half of it with ``b`` commits
per cycle, busy for about ``1/2 + per_cycle / (2 * b * per_commit)`` of what
it can give, and queueing delays grow as that nears 1.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["CycleCost", "fit_cycle_cost"]


@attrs.frozen
class CycleCost:
    """One node's CPU cost model fitted over several runs."""

    #: CPU seconds per ready cycle, whatever it carries.
    per_cycle: float
    #: CPU seconds per committed command, on top.
    per_commit: float
    #: Runs the fit used.
    runs: int
    #: The largest gap between a run's CPU seconds and the model's, as a
    #: fraction of that run's CPU seconds (how well two numbers explain it).
    worst_relative_error: float

    def commits_per_cycle_break_even(self) -> float:
        """Commits per cycle at which both parts cost the same (inf if commits are free)."""
        if self.per_commit <= 0:
            return float("inf")
        return self.per_cycle / self.per_commit


def fit_cycle_cost(runs: Iterable[tuple[float, int, int]]) -> CycleCost | None:
    """Fit ``cpu = per_commit * commits + per_cycle * cycles`` over ``runs`` of
    ``(cpu_seconds, commits, ready_cycles)`` by least squares (no constant term).

    Returns None with fewer than two usable runs (at least one commit and one
    cycle) or when their commits and cycles are proportional, which leaves the
    two costs undetermined. Negative values may come back from noisy runs; they
    are returned as fitted, not clamped.
    """
    usable = [(float(cpu), float(n), float(k)) for cpu, n, k in runs if n > 0 and k > 0]
    if len(usable) < 2:
        return None
    snn = sum(n * n for _, n, _ in usable)
    skk = sum(k * k for _, _, k in usable)
    snk = sum(n * k for _, n, k in usable)
    sn_cpu = sum(n * cpu for cpu, n, _ in usable)
    sk_cpu = sum(k * cpu for cpu, _, k in usable)
    det = snn * skk - snk * snk
    # Proportional runs make the normal equations singular (det is 0 up to rounding).
    if det <= 1e-9 * snn * skk:
        return None
    per_commit = (sn_cpu * skk - sk_cpu * snk) / det
    per_cycle = (sk_cpu * snn - sn_cpu * snk) / det
    worst = 0.0
    for cpu, n, k in usable:
        if cpu > 0:
            worst = max(worst, abs(per_commit * n + per_cycle * k - cpu) / cpu)
    return CycleCost(per_cycle, per_commit, len(usable), worst)
