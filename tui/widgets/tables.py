"""Data tables: filling one with columns sized to their content, and a table with vim keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable


def fill_table(
    table: DataTable[str],
    labels: Sequence[str],
    rows: Sequence[Sequence[str]],
    keys: Sequence[str] | None = None,
    max_widths: Mapping[str, int] | None = None,
) -> None:
    """Replace the columns and rows of ``table``, each column as wide as its widest cell or label.

    Cells are Rich markup. ``max_widths`` caps the width of the columns it names, by label, and
    longer cells in them end with an ellipsis. Fixed widths avoid a race in DataTable's auto
    width: a frame drawn between ``add_row`` and the table's next idle pass is cached with the
    old widths and stays on screen.
    """
    max_widths = max_widths or {}
    table.clear(columns=True)
    widths: list[int] = []
    for index, label in enumerate(labels):
        width = max([Text.from_markup(label).cell_len, *(Text.from_markup(row[index]).cell_len for row in rows)])
        if label in max_widths:
            width = min(width, max_widths[label])
        widths.append(width)
        table.add_column(label, width=width)
    for position, row in enumerate(rows):
        cells = [_fitted(cell, width) for cell, width in zip(row, widths, strict=True)]
        table.add_row(*cells, key=None if keys is None else keys[position])


def _fitted(cell: str, width: int) -> str | Text:
    """Return ``cell`` unchanged when it fits in ``width`` cells, else as Text cut to ``width`` with an ellipsis."""
    text = Text.from_markup(cell)
    if text.cell_len <= width:
        return cell
    text.truncate(width, overflow="ellipsis")
    return text


class KeyTable(DataTable[str]):
    """Data table whose cursor also moves with the vim keys j and k, as in the Files tree and the Runs table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]
