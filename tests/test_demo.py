"""``multiraft demo`` at a reduced size: it splits the key space, verifies it, and exits 0."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "multiraft.cli", "demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ranges_reached(stdout: str) -> int:
    match = re.search(r"^\s+ranges\s+([\d,]+)\s+\(target", stdout, re.MULTILINE)
    assert match is not None, stdout
    return int(match.group(1).replace(",", ""))


@pytest.mark.parametrize("mode", [["--in-process"], []], ids=["in-process", "tcp-processes"])
def test_demo_splits_into_the_requested_ranges_verifies_and_exits_0(mode: list[str]) -> None:
    result = _demo("--ranges", "50", *mode)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "multiraft demo: all checks passed" in result.stdout
    assert _ranges_reached(result.stdout) >= 50
    assert "the directory tiles the key space" in result.stdout
    node_rows = re.findall(r"^\s+([123])\s+[\d,]+\s+[\d,]+\s+[\d,]+", result.stdout, re.MULTILINE)
    assert node_rows == ["1", "2", "3"], result.stdout


def test_demo_exits_1_naming_the_check_that_failed(tmp_path: pathlib.Path) -> None:
    data_dir = str(tmp_path / "demo")
    result = _demo(
        "--in-process", "--ranges", "100000", "--time-limit", "1", "--data-dir", data_dir
    )
    assert result.returncode == 1
    assert "multiraft demo FAILED: only" in result.stderr
    assert "of 100000 ranges after 1s" in result.stderr
    assert "all checks passed" not in result.stdout
    assert f"(data kept in {data_dir})" in result.stderr
    assert sorted(os.listdir(data_dir)) == ["node1", "node2", "node3"]


def test_demo_refuses_bad_arguments_with_exit_2() -> None:
    result = _demo("--ranges", "0")
    assert result.returncode == 2
    assert "--ranges and --workers must be >= 1" in result.stderr
