"""``multiraft bench cycle``: a follower's ready cycles with no event loop and no thread."""

from __future__ import annotations

import pytest

from multiraft.bench import BENCHMARKS
from multiraft.bench.cycle_bench import measure, parser, run, run_in_trio


def test_every_command_goes_through_decode_step_write_and_apply() -> None:
    # 5 warm-up frames and 4 measured ones of 3 puts each: entries 4..30. Each
    # frame commits up to where the one before ended, so the follower applied 27.
    got = run(per_frame=3, cycles=4)
    assert got["applied"] == 27
    assert got["cpu_us"] > 0 and got["wall_us"] > 0
    assert got["cpu_us_per_entry"] == pytest.approx(got["cpu_us"] / 3)
    unsynced = run(per_frame=1, cycles=2, sync=False)
    assert unsynced["applied"] == 3 + 7 - 1


def test_the_trio_built_cycle_answers_every_frame_and_applies_the_same() -> None:
    # The leader thread waits for each answer before the next frame: 9 frames of
    # 3 puts, the last one committing 27, exactly as without the event loop.
    got = run_in_trio(per_frame=3, cycles=4)
    assert got["applied"] == 27
    assert got["cpu_us"] > 0 and got["wall_us"] > 0
    one_task = run_in_trio(per_frame=3, cycles=4, one_task=True)
    assert one_task["applied"] == 27


def test_the_report_has_each_size_synced_one_unsynced_and_three_in_trio() -> None:
    assert BENCHMARKS["cycle"] == "multiraft.bench.cycle_bench"
    report = measure(parser().parse_args(["--tiny"]))
    labels = [label for label, _, _ in report.figures]
    assert labels == [
        "1-entry cycle, CPU",
        "1-entry cycle, wall (fdatasync included)",
        "1-entry cycle, CPU per entry",
        "10-entry cycle, CPU",
        "10-entry cycle, wall (fdatasync included)",
        "10-entry cycle, CPU per entry",
        "150-entry cycle, CPU",
        "150-entry cycle, wall (fdatasync included)",
        "150-entry cycle, CPU per entry",
        "1-entry cycle without fdatasync, CPU",
        "1-entry cycle in trio, reader and driver tasks, to_thread write, CPU",
        "1-entry cycle in trio, reader and driver tasks, to_thread write, wall",
        "150-entry cycle in trio, reader and driver tasks, to_thread write, CPU",
        "150-entry cycle in trio, reader and driver tasks, to_thread write, wall",
        "1-entry cycle in one trio task, write on the event loop, CPU",
        "1-entry cycle in one trio task, write on the event loop, wall",
    ]
    assert all(value > 0 for _, value, _ in report.figures)
    # 50 measured cycles after 5 warm-up ones, each frame committing the one before.
    assert report.details["150 synced"]["applied"] == 3 + 54 * 150
    assert report.details["150 in trio"]["applied"] == 3 + 54 * 150
    assert report.details["1 in one trio task"]["applied"] == 3 + 54
