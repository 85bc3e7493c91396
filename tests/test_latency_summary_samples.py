"""``latency_summary`` never returns more latency samples than asked for."""

from __future__ import annotations

from multiraft.bench.load import latency_summary


def test_samples_are_evenly_spaced_and_never_more_than_asked() -> None:
    # 119 latencies, 50 samples: every third one (a step of two would give 60).
    result = latency_summary([i / 1000 for i in range(119)], 50)
    assert result["samples_ms"] == [float(i) for i in range(0, 119, 3)]
    assert len(result["samples_ms"]) == 40
    assert len(latency_summary([i / 1000 for i in range(100)], 50)["samples_ms"]) == 50
