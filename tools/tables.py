"""One table printer for the GPU checks: rows of equal keys, floats to 3 significant digits, the table last."""

from __future__ import annotations


def print_rows(title: str, rows: list[dict], width: int = 140) -> None:
    """Print ``rows`` (dicts with the same keys, in column order) as a rich table titled ``title``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(width=width).print(table)
