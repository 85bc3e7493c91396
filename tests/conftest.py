"""Shared pytest configuration: soak tests marked ``slow`` are a separate command.

The default run (CI) deselects them, so they are neither run nor reported as
skipped. ``pytest --runslow`` runs them with the rest; ``pytest -m slow`` runs
only them (for example the 10,000-trial power-loss soak of the log engine).
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
    kept = [item for item in items if "slow" not in item.keywords]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if "slow" in i.keywords])
        items[:] = kept
