"""Progress bars for long work (rich), silent when disabled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress


class _Task:
    def __init__(self, bar: _RichProgress | None, task_id) -> None:
        self._bar, self._id = bar, task_id

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._id, n)


class Progress:
    """`with progress.task("encode x", total=n) as t: t.advance(k)`; a no-op when disabled."""

    def __init__(self, *, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)

    def advance(self, n: int = 1) -> None:  # lets a disabled Progress stand in for a task
        pass

    @contextmanager
    def task(self, description: str, *, total: int, completed: int = 0) -> Iterator[_Task]:
        if not self.enabled:
            yield _Task(None, None)
            return
        bar = _RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        with bar:
            yield _Task(bar, bar.add_task(description, total=total, completed=completed))
