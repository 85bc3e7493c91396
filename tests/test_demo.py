"""``multiraft demo`` at a reduced size: it splits the key space, verifies it, and exits 0."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(module: str, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    """``python -m module args`` from the checkout, with pipes for stdout and stderr."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _demo(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    process = _start("multiraft.cli", "demo", *args)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


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


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def test_sigterm_stops_the_demo_and_every_node_process_with_exit_130(
    tmp_path: pathlib.Path,
) -> None:
    data_dir = str(tmp_path / "demo")
    demo = _start("multiraft.cli", "demo", "--ranges", "100000", "--data-dir", data_dir)
    try:
        assert demo.stdout is not None
        demo.stdout.readline()  # "starting 3 nodes"
        assert "ranges" in demo.stdout.readline()  # the first progress line: nodes are up
        assert len(_processes_mentioning(data_dir + "/node")) == 3
        demo.send_signal(signal.SIGTERM)
        _, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, err
    assert f"multiraft demo: interrupted (data kept in {data_dir})" in err
    assert _processes_mentioning(data_dir + "/node") == []


def test_a_node_process_stops_cleanly_when_its_parent_pipe_closes(tmp_path: pathlib.Path) -> None:
    node = _start(
        "examples.rangekv.server",
        *("--id", "1", "--data-dir", str(tmp_path / "n1"), "--stop-on-stdin-eof"),
        stdin=subprocess.PIPE,
    )
    try:
        assert node.stdout is not None and node.stdin is not None
        ready = node.stdout.readline()
        assert '"event": "ready"' in ready
        node.stdin.close()
        node.wait(timeout=30)
    finally:
        if node.poll() is None:
            node.kill()
    assert node.returncode == 0
