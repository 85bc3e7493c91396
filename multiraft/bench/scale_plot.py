"""``multiraft bench groups --plot FILE.png``: cost per group as the group count grows.

Needs the optional ``matplotlib`` package (``pip install '.[plot]'``).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = ["ScalePoint", "draw_cost_per_group", "plotting_available"]


@attrs.frozen
class ScalePoint:
    """What hosting ``groups`` groups on 3 in-process nodes cost."""

    groups: int
    #: create + elect wall time, divided by the group count
    create_ms_per_group: float
    #: RSS growth per group replica once quiesced
    rss_bytes_per_replica: float
    #: idle CPU of the whole process (3 nodes), per 1,000 quiesced groups
    idle_cpu_percent_per_1000: float


def plotting_available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw_cost_per_group(points: Sequence[ScalePoint], path: str, title: str) -> None:
    """Draw the three costs per group against the group count (log scale) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p.groups for p in points]
    series = (
        ("create + elect, ms per group", [p.create_ms_per_group for p in points]),
        ("RSS per group replica, bytes", [p.rss_bytes_per_replica for p in points]),
        ("idle CPU, % of a core per 1,000 groups", [p.idle_cpu_percent_per_1000 for p in points]),
    )
    fig, axes = plt.subplots(len(series), 1, sharex=True, figsize=(7, 8))
    for ax, (label, ys) in zip(axes, series, strict=True):
        ax.plot(xs, ys, marker="o")
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xscale("log")
    axes[-1].set_xlabel("groups on 3 in-process nodes")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
