"""`oodbench rescore`: recompute every metric and interval from the stored per-sample scores (no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.options import console

MAX_SHOWN = 50  # differences printed per file; the count is always given


def rescore(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Result Parquet files or folders (searched recursively; sidecars are read with their file)."
        ),
    ],
) -> None:
    """Recompute every metric and 95% interval of every row from the file's per-sample scores, without loading a
    model, and report each value that differs from the stored one; exit 1 if any does. Files are never rewritten."""
    from benchmark.rescore import CHECKED, DIFFERENT, NOT_CHECKED, TOLERANCE, rescore_paths

    outcomes = rescore_paths(paths)
    failed = 0
    for o in outcomes:
        name = str(o.path)
        if o.status == CHECKED:
            console.print(
                f"ok           {name}: {o.rows} rows, {o.values} values recomputed, none differs",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        elif o.status == NOT_CHECKED:
            console.print(f"not checked  {name}: {o.reason}", highlight=False, markup=False, soft_wrap=True)
        elif o.status == DIFFERENT:
            failed += 1
            console.print(
                f"different    {name}: {len(o.differences)} of {o.values} values differ by more than {TOLERANCE:g}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            for d in o.differences[:MAX_SHOWN]:
                console.print(
                    f"  - run {d.run_id}, {d.score} {d.score_config} / {d.ood_dataset}, {d.column}: stored "
                    f"{d.stored!r}, recomputed {d.recomputed!r} (difference {d.abs_diff:.3g})",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
            if len(o.differences) > MAX_SHOWN:
                console.print(
                    f"  ... and {len(o.differences) - MAX_SHOWN} more", highlight=False, markup=False, soft_wrap=True
                )
        else:
            failed += 1
            console.print(f"cannot check {name}: {o.reason}", highlight=False, markup=False, soft_wrap=True)
    checked = sum(o.status in (CHECKED, DIFFERENT) for o in outcomes)
    skipped = sum(o.status == NOT_CHECKED for o in outcomes)
    console.print(
        f"{checked} file(s) recomputed, {failed} with differences or unreadable scores, {skipped} without "
        f"per-sample scores (not checked).",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if failed:
        raise typer.Exit(1)
