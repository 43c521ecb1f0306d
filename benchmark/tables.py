"""Terminal tables whose strings are text, never Rich markup.

Table cells, headers and titles often come from files (score and dataset names in a result file, paths in a
user's copy). Rich reads a plain `str` as markup, so a name such as `mcm[/]` raises MarkupError and
`[red]x[/red]` changes the style. `TextTable` turns every `str` into `rich.text.Text`; a cell that should be
styled is passed as a `Text` with its style.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text


def as_text(value: Any) -> Any:
    """A `str` as literal `Text`; anything else (a `Text`, another renderable, None) unchanged."""
    return Text(value) if isinstance(value, str) else value


class TextTable(Table):
    """A `rich.table.Table` that never parses markup in the strings it is given."""

    def __init__(self, *headers: Any, title: Any = None, caption: Any = None, **kwargs: Any) -> None:
        super().__init__(*map(as_text, headers), title=as_text(title), caption=as_text(caption), **kwargs)

    def add_column(self, header: Any = "", footer: Any = "", **kwargs: Any) -> None:
        super().add_column(as_text(header), as_text(footer), **kwargs)

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*map(as_text, renderables), **kwargs)
