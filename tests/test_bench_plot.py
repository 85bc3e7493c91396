"""``multiraft bench groups --plot``: the cost-per-group picture and its optional dependency."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from multiraft.bench import groups_bench
from multiraft.bench.scale_plot import ScalePoint, draw_cost_per_group


def test_cost_per_group_plot_is_written_as_a_png(tmp_path: Path) -> None:
    out = tmp_path / "cost.png"
    points = [ScalePoint(100, 0.9, 6000.0, 0.5), ScalePoint(1000, 0.8, 5000.0, 0.2)]
    draw_cost_per_group(points, str(out), "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_groups_plot_exits_2_naming_the_extra_when_matplotlib_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert groups_bench.main(["--tiny", "--plot", str(tmp_path / "x.png")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "pip install 'multiraft[plot]'" in captured.err
    assert not (tmp_path / "x.png").exists()


def test_sweep_counts_end_at_each_modes_largest_group_count() -> None:
    assert groups_bench._sweep_counts(quick=False, tiny=True) == (10, 20, 30)
    assert groups_bench._sweep_counts(quick=True, tiny=False) == (100, 300, 1_000)
    assert groups_bench._sweep_counts(quick=False, tiny=False) == (1_000, 3_000, 10_000)
