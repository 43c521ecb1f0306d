"""`oodbench sweep`: every combination of methods x shots x seeds, one Parquet file per run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli import (
    BackboneOpt,
    CacheOpt,
    DataRootOpt,
    DeviceOpt,
    ProgressOpt,
    ScoresOpt,
    SuiteOpt,
    _progress,
    _split,
    app,
    console,
)
from benchmark.errors import OodbenchError


def _ints(csv: str, option: str) -> list[int]:
    try:
        return [int(x) for x in _split(csv) or []]
    except ValueError:
        raise OodbenchError(
            f"{option} takes comma-separated integers, for example {option} 1,2,4 (got {csv!r})."
        ) from None


@app.command()
def sweep(
    suite: SuiteOpt,
    backbone: BackboneOpt,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated methods (`oodbench list methods`).")],
    shots: Annotated[str, typer.Option("--shots", help="Comma-separated shots for methods that train.")] = "1,2,4,8,16",
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds.")] = "1,2,3",
    scores: ScoresOpt = None,
    results_dir: Annotated[
        Path, typer.Option("--results-dir", help="One Parquet file per run goes here; runs already there are skipped.")
    ] = Path("results"),
    cache_dir: CacheOpt = None,
    data_root: DataRootOpt = None,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = True,
) -> None:
    """Run every method x shots x seed (zero-shot once), skip runs already written, print mean ± std over seeds."""
    from benchmark.report import seed_summary_table
    from benchmark.sweep import run_sweep

    def report(run, status: str, seconds: float) -> None:
        what = f"{run.method} shots={run.shots} seed={run.seed}"
        console.print(
            f"[dim]skip[/dim] {what} (already in {results_dir})"
            if status == "skipped"
            else f"ran  {what} in {seconds:.1f}s",
            highlight=False,
        )

    result = run_sweep(
        suite=suite,
        backbone=backbone,
        methods=_split(methods) or [],
        shots=_ints(shots, "--shots"),
        seeds=_ints(seeds, "--seeds"),
        scores=_split(scores),
        results_dir=results_dir,
        cache_dir=cache_dir,
        data_root=data_root,
        device=device,
        progress=_progress(progress),
        on_run=report,
    )
    rows = result.rows()
    wanted = set(_split(scores) or rows["score"].unique())
    console.print(seed_summary_table(rows[rows["score"].isin(wanted)], title=f"{suite} on {backbone}"))
    console.print(f"{len(result.ran)} runs written, {len(result.skipped)} already present; {result.seconds:.1f}s")
