"""`oodbench sweep`: every combination of methods x shots x seeds, one Parquet file per run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.options import (
    DEFAULT,
    BackboneOpt,
    BatchOpt,
    CacheOpt,
    ConfigOpt,
    DataRootOpt,
    DeviceOpt,
    MethodFileOpt,
    PrecisionOpt,
    ProgressOpt,
    SaveScoresOpt,
    ScoresOpt,
    SuiteOpt,
    WorkersOpt,
    console,
    load_method_file,
    parse_config,
    progress,
    split_csv,
)
from benchmark.config import Execution
from benchmark.errors import OodbenchError


def _ints(csv: str, option: str) -> list[int]:
    try:
        return [int(x) for x in split_csv(csv) or []]
    except ValueError:
        raise OodbenchError(
            f"{option} takes comma-separated integers, for example {option} 1,2,4 (got {csv!r})."
        ) from None


def sweep(
    suite: SuiteOpt,
    backbone: BackboneOpt,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated methods (`oodbench list methods`).")],
    shots: Annotated[str, typer.Option("--shots", help="Comma-separated shots for few-shot methods.")] = "1,2,4,8,16",
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds.")] = "1,2,3",
    scores: ScoresOpt = None,
    config: ConfigOpt = [],  # noqa: B006 - typer reads the default
    method_file: MethodFileOpt = None,
    results_dir: Annotated[
        Path, typer.Option("--results-dir", help="One Parquet file per run goes here; runs already there are skipped.")
    ] = Path("results"),
    device: DeviceOpt = DEFAULT.device,
    precision: PrecisionOpt = DEFAULT.precision,
    batch_size: BatchOpt = DEFAULT.batch_size,
    num_workers: WorkersOpt = DEFAULT.num_workers,
    cache_dir: CacheOpt = None,
    data_root: DataRootOpt = None,
    save_scores: SaveScoresOpt = DEFAULT.save_scores,
    progress_bars: ProgressOpt = True,
) -> None:
    """Run every method x shots x seed (zero-shot once), skip runs already written, print mean ± std over seeds.
    --config key=value applies to every listed method that has the key."""
    from benchmark.report import print_table, seed_summary_table
    from benchmark.sweep import run_sweep

    load_method_file(method_file)

    def report(run, status: str, seconds: float) -> None:
        what = f"{run.method} shots={run.shots} seed={run.seed}"
        console.print(
            f"[dim]skip[/dim] {what} (already in {results_dir})"
            if status == "skipped"
            else f"ran  {what} in {seconds:.1f}s",
            highlight=False,
        )

    exe = Execution(
        device=device,
        precision=precision,
        batch_size=batch_size,
        num_workers=num_workers,
        cache_dir=cache_dir,
        data_root=data_root,
        save_scores=save_scores,
    )
    result = run_sweep(
        suite=suite,
        backbone=backbone,
        methods=split_csv(methods) or [],
        shots=_ints(shots, "--shots"),
        seeds=_ints(seeds, "--seeds"),
        scores=split_csv(scores),
        config=parse_config(config),
        results_dir=results_dir,
        execution=exe,
        progress=progress(progress_bars),
        on_run=report,
    )
    rows = result.rows()
    if not rows.empty:
        print_table(console, seed_summary_table(rows, title=f"{suite} on {backbone}"))
    console.print(f"{len(result.ran)} runs written, {len(result.skipped)} already present; {result.seconds:.1f}s")
