"""Printing and saving benchmark figures, with the machine they were measured on."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BenchReport", "bench_parser", "machine_info", "machine_line", "run_main"]


def machine_info() -> dict[str, Any]:
    """CPU count, Python version and platform of this machine."""
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def machine_line() -> str:
    """One comment line naming the machine, printed above every set of figures."""
    info = machine_info()
    return (
        f"# machine: {info['cpus']} CPUs, {info['implementation']} {info['python']}, "
        f"{info['platform']}"
    )


def bench_parser(name: str, description: str | None) -> argparse.ArgumentParser:
    """The argument parser every benchmark starts from: ``--quick``, ``--tiny``, ``--json``."""
    parser = argparse.ArgumentParser(prog=f"multiraft bench {name}", description=description)
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="smallest sizes, only to check the benchmark runs (figures are not meaningful)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return parser


class BenchReport:
    """An ordered list of named figures for one benchmark.

    ``details`` holds any extra JSON-ready data saved alongside the figures.
    """

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.figures: list[tuple[str, float, str]] = []
        self.details: dict[str, Any] = {}
        self.started = time.time()

    def add(self, label: str, value: float, unit: str) -> None:
        """Record one figure."""
        self.figures.append((label, value, unit))

    def print(self) -> None:
        """Print the machine, then one line per figure."""
        print(f"# multiraft bench {self.name}: {self.description}")
        print(machine_line())
        width = max((len(label) for label, _, _ in self.figures), default=0)
        for label, value, unit in self.figures:
            shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3f}"
            print(f"{label:<{width}}  {shown:>14} {unit}")

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        out = {
            "benchmark": self.name,
            "description": self.description,
            "machine": machine_info(),
            "started": self.started,
            "figures": [{"label": lb, "value": v, "unit": u} for lb, v, u in self.figures],
        }
        if self.details:
            out["details"] = self.details
        return out

    def write_json(self, path: str) -> None:
        """Write the report to ``path`` as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=2)
            f.write("\n")


def run_main(
    measure: Callable[[argparse.Namespace], BenchReport],
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
) -> int:
    """Parse ``argv``, measure, print the figures and write them as JSON if asked."""
    args = parser.parse_args(list(argv))
    report = measure(args)
    report.print()
    if args.json:
        report.write_json(args.json)
    return 0
