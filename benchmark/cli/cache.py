"""`oodbench cache verify`: re-read every byte of a cache folder and remove what is damaged."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from benchmark.cli.options import CacheOpt, console

cache_app = typer.Typer(help="Check the feature, text and output caches.", no_args_is_help=True)
KeepOpt = Annotated[bool, typer.Option("--keep", help="Only report damaged entries; remove nothing.")]


def verify(cache_dir: CacheOpt = None, keep: KeepOpt = False) -> None:
    """Re-hash every cached feature file against its meta.json and read back every other cache entry; remove
    what is damaged (the next run rebuilds it). Exit 1 if anything was damaged.

    A run's load of a feature file checks its size and shape, and its sha256 only when its modification time
    changed (re-hashing tens of GB on every run would cost minutes): run this after a disk or copy problem."""
    from benchmark.config import default_cache_dir
    from benchmark.features import verify_cache

    folder = cache_dir or default_cache_dir()
    if not folder.is_dir():
        console.print(f"No cache folder at {escape(str(folder))}; nothing to check.", highlight=False, soft_wrap=True)
        return
    entries = verify_cache(folder, repair=not keep)
    bad = [e for e in entries if not e.ok]
    for e in bad:
        action = "removed" if e.removed else "kept (--keep)"
        console.print(
            f"[red]damaged[/red] {e.kind} {escape(str(e.path))}: {escape(e.detail)}; {action}",
            highlight=False,
            soft_wrap=True,
        )
    kinds: dict[str, int] = {}
    for e in entries:
        if e.ok:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
    intact = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing"
    console.print(
        f"checked {folder}: intact {intact}; {len(bad)} damaged"
        + (" (removed: the next run rebuilds them)" if bad and not keep else "")
        + ".",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if bad:
        raise typer.Exit(1)
