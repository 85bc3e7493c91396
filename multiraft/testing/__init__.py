"""Deterministic simulation and fault testing of multiraft.

:func:`~multiraft.testing.simulator.run_seed` runs a whole cluster (real
coordinator, real raft, memory network, crash-aware simulated disks) in one
deterministic trio run under a fault schedule, checks Raft's safety properties
throughout (:mod:`~multiraft.testing.safety`), liveness once faults heal, and
the linearizability of its KV clients' history
(:mod:`~multiraft.testing.linearizability`). ``multiraft sim`` is its command
line (:mod:`~multiraft.testing.sim_cli`).

Importing this package imports nothing else; import the modules you use.
"""
