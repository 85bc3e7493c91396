"""The ``multiraft`` command: demo, node, sim and bench subcommands.

Each subcommand lives in its own module with a ``main(argv) -> int`` function,
imported only when that subcommand runs, so starting one does not pay for the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

__all__ = ["main"]

#: subcommand -> (module, help line)
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("multiraft.demo", "run a local cluster with the range-splitting KV store"),
    "node": ("multiraft.node_process", "run one node as a process over TCP"),
    "sim": ("multiraft.testing.sim_cli", "run the deterministic fault simulator"),
    "bench": ("multiraft.bench", "benchmarks: raft, storage, groups, cluster, all"),
}


def _usage() -> str:
    lines = ["usage: multiraft <command> [options]", "", "commands:"]
    lines += [f"  {name:<6} {help_}" for name, (_, help_) in _COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in _COMMANDS:
        print(f"multiraft: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = _COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"multiraft: command {name!r} is not available in this build", file=sys.stderr)
        return 2
    run = cast(Callable[[list[str]], int], module.main)
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
