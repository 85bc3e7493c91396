"""``multiraft sim``: one seed with its trace, a sweep with progress and table, exit codes."""

from __future__ import annotations

import pytest

from multiraft.node import Node
from multiraft.testing import sim_cli
from sim_bugs import read_without_barrier


def test_one_seed_with_trace_prints_readable_events_and_the_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sim_cli.main(["--seed", "3", "--groups", "4", "--steps", "3", "--trace"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(" start " in line and "node 1 incarnation 1" in line for line in lines)
    assert any(" leader " in line and "group 1 term" in line for line in lines)
    assert any(" fault " in line for line in lines)
    assert any(line.startswith("seed 3: trace hash ") for line in lines)
    assert "violations                0" in out
    # Frames and writes are hashed but only shown with --verbose.
    assert not any(" frame " in line for line in lines)


def test_sweep_shows_progress_on_one_line_and_a_final_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sim_cli.main(["--seeds", "2", "--start-seed", "5", "--groups", "4", "--steps", "2"]) == 0
    captured = capsys.readouterr()
    # One line redrawn in place: carriage returns, a single final newline.
    assert captured.err.count("\n") == 1
    updates = captured.err.rstrip("\n").split("\r")[1:]
    assert [u.split("]")[1].split("seeds")[0].strip() for u in updates] == ["1/2", "2/2"]
    assert updates[-1].startswith("[" + "#" * 30 + "] 2/2 seeds  0 failing")
    table = dict(
        (line[:24].strip(), line[24:].strip()) for line in captured.out.splitlines() if line
    )
    assert table["seeds run"].startswith("2 (")
    assert table["violations"] == "0"
    assert int(table["operations checked"]) == int(table["KV (linearizability)"]) + int(
        table["acknowledged proposals"]
    )
    assert "isolate-leaders" in table


def test_sweep_with_a_planted_bug_exits_non_zero_and_prints_the_replay_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Node, "read", read_without_barrier)
    assert sim_cli.main(["--seeds", "3", "--groups", "10", "--steps", "10"]) == 1
    out = capsys.readouterr().out
    assert "linearizability: group" in out
    assert "replay: multiraft sim --seed " in out and "--groups 10 --steps 10 --trace" in out
    assert "failing seeds" in out


def test_invalid_arguments_exit_with_status_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--seed", "1", "--nodes", "2"]) == 2
    assert "nodes must be between 3 and 9" in capsys.readouterr().err
    assert sim_cli.main(["--seeds", "0"]) == 2
