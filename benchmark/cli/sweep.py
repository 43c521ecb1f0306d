"""`oodbench sweep`: every combination of methods x shots x seeds, one Parquet file per run, in this process or
as a Slurm job array (benchmark/cluster.py); `--status` shows where every run stands."""

from __future__ import annotations

import os
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
    ImagePipelineOpt,
    MethodFileOpt,
    PrecisionOpt,
    ProgressOpt,
    SaveScoresOpt,
    SaveWeightsOpt,
    ScoresOpt,
    SuiteOpt,
    WorkersOpt,
    console,
    load_method_file,
    parse_config_grid,
    progress,
    split_csv,
)
from benchmark.cluster import CLUSTER_ENV, DONE, ClusterOptions
from benchmark.config import Execution
from benchmark.errors import OodbenchError

EXECUTORS = ("local", "slurm")
DEFAULT_LOG_DIR = Path("oodbench-jobs")
SLURM = "Slurm (--executor slurm)"


def parse_minutes(text: str) -> int:
    from benchmark.cluster import parse_minutes as parse

    return parse(text)


def _pairs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OodbenchError(f"--slurm-arg takes key=value (got {pair!r}), for example --slurm-arg qos=high.")
        out[key.strip()] = value.strip()
    return out


def _run_label(key) -> str:
    return f"{key.method} shots={key.shots} seed={key.seed}"


def _print_status(runs, *, results_dir: Path, options: ClusterOptions, title: str) -> None:
    from benchmark.cluster import FAILED, NOT_SUBMITTED, PENDING, RUNNING, UNKNOWN, sweep_status
    from benchmark.tables import TextTable

    statuses = sweep_status(runs, results_dir=results_dir, options=options)
    counts = {s: sum(x.state == s for x in statuses) for s in (DONE, RUNNING, PENDING, UNKNOWN, FAILED, NOT_SUBMITTED)}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n or state in (DONE, FAILED))
    table = TextTable(title=f"sweep {title}: {len(statuses)} runs")
    for c in ("run", "state", "job", "scheduler"):
        table.add_column(c, overflow="fold")
    order = (FAILED, RUNNING, PENDING, UNKNOWN, NOT_SUBMITTED)
    for s in sorted((x for x in statuses if x.state != DONE), key=lambda x: order.index(x.state)):
        table.add_row(_run_label(s.key), s.state, s.job_id, s.detail if s.state != FAILED else "")
    if table.row_count:
        console.print(table)
    for s in (x for x in statuses if x.state == FAILED):
        console.print(
            f"failed: {_run_label(s.key)} (job {s.job_id}): {s.detail}\n  log: {s.logs[1] if s.logs else '-'}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    console.print(f"{summary}; state in {options.state_path}", highlight=False, markup=False, soft_wrap=True)


def _submit(
    runs, *, execution: Execution, results_dir: Path, options: ClusterOptions, method_file: Path | None
) -> None:
    from benchmark.cluster import FAILED, LIVE, NOT_SUBMITTED, submit_sweep

    report = submit_sweep(runs, execution=execution, results_dir=results_dir, options=options, method_file=method_file)
    for s in report.statuses:
        if s.state == FAILED:
            log = s.logs[1] if s.logs else "-"
            console.print(
                f"resubmitting {_run_label(s.key)} (job {s.job_id} failed: {s.detail}; log {log})",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    live = sum(s.state in LIVE for s in report.statuses)
    skipped = f"{report.count(DONE)} already done, {live} queued or running"
    if not report.submitted:
        console.print(f"nothing to submit: {skipped}.", highlight=False, markup=False)
        return
    after = f" after features job {report.features_job}" if report.features_job else ""
    after += " (which has finished)" if report.features_waited else ""
    new = sum(s.state == NOT_SUBMITTED for s in report.statuses)
    console.print(
        f"submitted {len(report.submitted)} runs ({new} new, {len(report.submitted) - new} failed before) as "
        f"job array {report.array_id}{after}; {skipped}. Logs in {options.log_dir}; "
        f"`oodbench sweep ... --status` shows progress.",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


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
    image_pipeline: ImagePipelineOpt = DEFAULT.image_pipeline,
    cache_dir: CacheOpt = None,
    data_root: DataRootOpt = None,
    save_scores: SaveScoresOpt = DEFAULT.save_scores,
    save_weights: SaveWeightsOpt = DEFAULT.save_weights,
    progress_bars: ProgressOpt = True,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="local: run here, one run after another; slurm: submit one job array through submitit "
            "(runs already done, queued or running are skipped; failed ones are submitted again).",
        ),
    ] = "local",
    status: Annotated[
        bool,
        typer.Option(
            "--status", help="Show which runs of this sweep are done, running, pending or failed (with logs)."
        ),
    ] = False,
    log_dir: Annotated[
        Path,
        typer.Option(
            "--log-dir",
            help="Job logs and the sweep's state file (sweep-state.json); on a filesystem the compute nodes share.",
            rich_help_panel=SLURM,
        ),
    ] = DEFAULT_LOG_DIR,
    partition: Annotated[
        str | None, typer.Option("--partition", help="Slurm partition.", rich_help_panel=SLURM)
    ] = None,
    account: Annotated[
        str | None, typer.Option("--account", help="Slurm account to charge.", rich_help_panel=SLURM)
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", min=0, help="GPUs per run.", rich_help_panel=SLURM)] = (
        ClusterOptions.gpus
    ),
    cpus: Annotated[
        int,
        typer.Option(
            "--cpus", min=1, help="CPUs per run (decoding threads; see --num-workers).", rich_help_panel=SLURM
        ),
    ] = ClusterOptions.cpus,
    mem_gb: Annotated[
        float | None,
        typer.Option("--mem-gb", help="Memory per run in GB (default: the partition's).", rich_help_panel=SLURM),
    ] = None,
    time_limit: Annotated[
        str, typer.Option("--time", help="Time limit per run: minutes or D-HH:MM:SS.", rich_help_panel=SLURM)
    ] = "4:00:00",
    array_parallelism: Annotated[
        int,
        typer.Option("--array-parallelism", min=1, help="Runs of the array at most at once.", rich_help_panel=SLURM),
    ] = ClusterOptions.array_parallelism,
    prefetch: Annotated[
        bool,
        typer.Option(
            "--prefetch/--no-prefetch",
            help="First one job encodes the features all runs share; the array starts after it succeeded.",
            rich_help_panel=SLURM,
        ),
    ] = ClusterOptions.prefetch,
    slurm_setup: Annotated[
        list[str],
        typer.Option(
            "--slurm-setup",
            help="Shell line run before each job, e.g. 'source ~/venv/bin/activate' (repeatable).",
            rich_help_panel=SLURM,
        ),
    ] = [],  # noqa: B006 - typer reads the default
    slurm_arg: Annotated[
        list[str],
        typer.Option(
            "--slurm-arg", help="Further sbatch option key=value, e.g. qos=high (repeatable).", rich_help_panel=SLURM
        ),
    ] = [],  # noqa: B006
) -> None:
    """Run every method x shots x seed (zero-shot once), skip runs already written, print mean ± std over seeds.
    --config key=value applies to every listed method that has the key; a key repeated with several values
    (--config alpha=0 --config alpha=0.5) runs each value. With --executor slurm the runs become one Slurm job
    array; run the same command again to resubmit what failed, or add --status to see where it stands."""
    from benchmark.report import print_table, seed_summary_table
    from benchmark.sweep import plan, run_sweep

    if executor not in EXECUTORS:
        raise OodbenchError(f"--executor takes {' or '.join(EXECUTORS)} (got {executor!r}).")
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
        image_pipeline=image_pipeline,
        cache_dir=cache_dir,
        data_root=data_root,
        save_scores=save_scores,
        save_weights=save_weights,
    )
    single, grid = parse_config_grid(config)
    grid_args = dict(  # what plan() and run_sweep() both take: the runs of the sweep
        suite=suite,
        backbone=backbone,
        methods=split_csv(methods) or [],
        shots=_ints(shots, "--shots"),
        seeds=_ints(seeds, "--seeds"),
        scores=split_csv(scores),
        config=single,
        grid=grid,
    )
    if executor == "slurm" or status:
        options = ClusterOptions(
            log_dir=log_dir,
            partition=partition,
            account=account,
            gpus=gpus,
            cpus=cpus,
            mem_gb=mem_gb,
            time_min=parse_minutes(time_limit),
            array_parallelism=array_parallelism,
            setup=tuple(slurm_setup),
            extra=_pairs(slurm_arg),
            prefetch=prefetch,
            cluster=os.environ.get(CLUSTER_ENV, "slurm"),
        )
        runs = plan(**grid_args)
        if status:
            _print_status(runs, results_dir=results_dir, options=options, title=f"{suite} on {backbone}")
        else:
            _submit(runs, execution=exe, results_dir=results_dir, options=options, method_file=method_file)
        return
    result = run_sweep(
        **grid_args,
        results_dir=results_dir,
        execution=exe,
        progress=progress(progress_bars),
        on_run=report,
    )
    rows = result.rows()
    if not rows.empty:
        print_table(console, seed_summary_table(rows, title=f"{suite} on {backbone}"))
    console.print(f"{len(result.ran)} runs written, {len(result.skipped)} already present; {result.seconds:.1f}s")
