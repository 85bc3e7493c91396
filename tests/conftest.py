"""Shared pytest configuration: tests marked ``slow`` run only when asked.

``pytest --runslow`` runs them with the rest; ``pytest -m slow`` (as the marker's
description in pyproject.toml says) runs only them.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = config.getoption("markexpr") or ""
    if config.getoption("--runslow") or ("slow" in markexpr and "not slow" not in markexpr):
        return
    skip_slow = pytest.mark.skip(reason="slow soak test: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
