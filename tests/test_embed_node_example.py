"""``examples/embed_node.py`` (the README's embedding example) runs and prints what it claims."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_embedding_example_elects_proposes_reads_and_exits_cleanly() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "examples.embed_node"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Group 99 got one command (99) from its leader, node 1; group 42's read index is
    # the index of that command (bootstrap 1-3, the leader's empty entry 4, command 5).
    assert lines[0] == "proposed: group 99 total 99, leader 1"
    assert lines[1] == "read index of group 42 on node 2: 5"
    # A second command (1) to every group, submitted with propose_nowait.
    assert lines[2] == "submitted without waiting: group 99 total 100"
    assert lines[3].startswith("node 1: 100 groups, ")
    assert lines[4:] == ["ok"]
    assert result.stderr == ""
