"""One table printer for the GPU checks: rows of equal keys, floats to 3 significant digits, the table last."""

from __future__ import annotations


def print_rows(title: str, rows: list[dict], width: int = 140) -> None:
    """Print ``rows`` (dicts with the same keys, in column order) as a rich table titled ``title``, at least
    ``width`` characters wide and as wide as its cells need: a check with many columns is printed whole (rich
    cuts cells to fit a fixed width, and those cut cells were the figures a check is read for)."""
    from rich.console import Console
    from rich.table import Table

    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()] for row in rows]
    table = Table(title=title)
    need = 1
    for i, col in enumerate(rows[0]):
        table.add_column(col, justify="right")
        need += 3 + max(len(col), *(len(r[i]) for r in cells))
    for r in cells:
        table.add_row(*r)
    Console(width=max(width, need)).print(table)
