"""``multiraft bench <name>``: one benchmark per module, each printing its figures.

Every benchmark module has ``main(argv) -> int``, prints the machine it ran on,
accepts ``--quick`` and ``--json FILE``.
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
