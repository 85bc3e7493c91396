"""``multiraft bench <name>``: one benchmark per module, each printing its figures.

Every benchmark module has ``main(argv) -> int``, prints the machine it ran on,
accepts ``--quick``, ``--tiny`` and ``--json FILE``; the measuring ones also have
``parser()`` and ``measure(args) -> BenchReport``, which ``all`` uses.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

__all__ = ["BENCHMARKS", "main"]

#: benchmark name -> module
BENCHMARKS: dict[str, str] = {
    "raft": "multiraft.bench.raft_bench",
    "storage": "multiraft.bench.storage_bench",
    "groups": "multiraft.bench.groups_bench",
    "cluster": "multiraft.bench.cluster_bench",
    "cycle": "multiraft.bench.cycle_bench",
    "compare": "multiraft.bench.compare_bench",
    "all": "multiraft.bench.all_bench",
}


def main(argv: Sequence[str]) -> int:
    """Run the benchmark named by ``argv[0]``."""
    args = list(argv)
    if not args or args[0] not in BENCHMARKS:
        names = ", ".join(BENCHMARKS)
        print(f"usage: multiraft bench <{names}> [--quick] [--json FILE]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[args[0]])
    run = cast(Callable[[list[str]], int], module.main)
    return run(args[1:])
