"""The GPU checks' table printer (tools/tables.py) prints every cell whole, however many columns there are."""

from __future__ import annotations

from tools.tables import print_rows


def test_a_wide_table_keeps_every_cell(capsys):
    rows = [{f"column {i}": 0.123456 * (i + 1) for i in range(19)} | {"shape": "1x8192"}]
    print_rows("wide", rows)
    out = capsys.readouterr().out
    assert "1x8192" in out and all(f"column {i}" in out for i in range(19))
    assert all(f"{0.123456 * (i + 1):.3g}" in out for i in range(19))
    assert "…" not in out
