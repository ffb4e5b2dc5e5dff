"""Fill a DataTable with columns sized to their content."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable


def fill_table(
    table: DataTable[str],
    labels: Sequence[str],
    rows: Sequence[Sequence[str]],
    keys: Sequence[str] | None = None,
) -> None:
    """Replace the columns and rows of ``table``, each column as wide as its widest cell or label.

    Cells are Rich markup. Fixed widths avoid a race in DataTable's auto width: a frame drawn
    between ``add_row`` and the table's next idle pass is cached with the old widths and stays
    on screen.
    """
    table.clear(columns=True)
    for index, label in enumerate(labels):
        width = max([Text.from_markup(label).cell_len, *(Text.from_markup(row[index]).cell_len for row in rows)])
        table.add_column(label, width=width)
    for position, row in enumerate(rows):
        table.add_row(*row, key=None if keys is None else keys[position])
