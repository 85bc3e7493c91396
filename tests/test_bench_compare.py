"""``multiraft bench compare`` without its optional PySyncObj dependency."""

from __future__ import annotations

import sys

import pytest

from multiraft.bench import compare_bench


def test_compare_exits_2_naming_the_extra_when_pysyncobj_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A None entry makes ``import pysyncobj`` raise ImportError.
    monkeypatch.setitem(sys.modules, "pysyncobj", None)
    assert compare_bench.main(["--tiny"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "pip install 'multiraft[compare]'" in captured.err
