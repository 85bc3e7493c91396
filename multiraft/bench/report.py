"""Printing and saving benchmark figures, with the machine they were measured on."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any

__all__ = ["BenchReport", "machine_info"]


def machine_info() -> dict[str, Any]:
    """CPU count, Python version and platform of this machine."""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


class BenchReport:
    """An ordered list of named figures for one benchmark."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.figures: list[tuple[str, float, str]] = []
        self.started = time.time()

    def add(self, label: str, value: float, unit: str) -> None:
        """Record one figure."""
        self.figures.append((label, value, unit))

    def print(self) -> None:
        """Print the machine, then one line per figure."""
        info = machine_info()
        print(f"# multiraft bench {self.name}: {self.description}")
        print(
            f"# machine: {info['cpus']} CPUs, {info['implementation']} {info['python']}, "
            f"{info['platform']}"
        )
        width = max((len(label) for label, _, _ in self.figures), default=0)
        for label, value, unit in self.figures:
            shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3f}"
            print(f"{label:<{width}}  {shown:>14} {unit}")

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "benchmark": self.name,
            "description": self.description,
            "machine": machine_info(),
            "started": self.started,
            "figures": [{"label": lb, "value": v, "unit": u} for lb, v, u in self.figures],
        }

    def write_json(self, path: str) -> None:
        """Write the report to ``path`` as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=2)
            f.write("\n")
