"""The typing and lint gates run with the suite, so CI enforces them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["multiraft", "storage", "transport"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_strict_is_clean_on_library_packages() -> None:
    result = _run("mypy", "--no-incremental")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_is_clean() -> None:
    result = _run("ruff", "check", "--no-cache", *PACKAGES, "tests", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean_on_library_packages() -> None:
    result = _run("ruff", "format", "--check", "--no-cache", *PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr
