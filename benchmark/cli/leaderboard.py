"""`oodbench leaderboard build`, `oodbench validate`, `oodbench reproduce`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from benchmark.cli.options import (
    DEFAULT,
    BatchOpt,
    CacheOpt,
    DataRootOpt,
    DeviceOpt,
    ImagePipelineOpt,
    MethodFileOpt,
    ProgressOpt,
    WorkersOpt,
    console,
    err_console,
    load_method_file,
    progress,
)
from benchmark.config import DEFAULT_RECORD_DIR, DEFAULT_TOLERANCE, Execution
from benchmark.errors import OodbenchError

leaderboard_app = typer.Typer(help="Build the static leaderboard site from results/.", no_args_is_help=True)

VALIDATABLE = (".parquet", ".csv")
SITE = Path("site")
ResultsOpt = Annotated[
    Path,
    typer.Option(
        "--results",
        help="Folder of entries (Parquet, searched recursively), reported/ numbers and verifications/ records.",
    ),
]
ToleranceOpt = Annotated[
    float,
    typer.Option(
        "--tolerance",
        help="Largest allowed absolute difference of each metric (fractions: 0.005 is half a percentage point).",
    ),
]
RecordDirOpt = Annotated[
    Path, typer.Option("--record-dir", help="Where the verification records <file sha256[:16]>-<run_id>.json go.")
]
SignersOpt = Annotated[
    Path | None,
    typer.Option(
        "--allowed-signers",
        help="Reviewers whose signed verification records earn the verified mark (default: RESULTS/allowed_signers).",
    ),
]
SiteCacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Cache folder for parsed result files (default: $OODBENCH_CACHE or ~/.cache/oodbench; files are keyed "
        "by their sha256).",
    ),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Parse every result file again; write no cache.")]
SiteOpt = Annotated[Path, typer.Option("--out", help="Folder for the site (replaced if it holds an earlier build).")]


def build(
    results: ResultsOpt = Path("results"),
    out: SiteOpt = SITE,
    allowed_signers: SignersOpt = None,
    cache_dir: SiteCacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Validate every result file and write the static site (works from file:// and any static host). Parsed
    files, changes against zero-shot (tested from the per-sample scores) and curves are cached under the cache
    folder's site/."""
    from benchmark.config import default_cache_dir
    from leaderboard.build import build_site

    cache = None if no_cache else (cache_dir or default_cache_dir())
    report = build_site(results_dir=results, out=out, allowed_signers=allowed_signers, cache_dir=cache)
    for w in report.warnings:
        err_console.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False, soft_wrap=True)
    for s in report.skipped:
        err_console.print(
            f"[yellow]skipped[/yellow] {escape(s.path)}: {escape('; '.join(s.reasons))}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"built {out} from {report.n_files} result file(s): {report.n_entries} entries on {report.n_suites} "
        f"suite page(s), {len(report.skipped)} file(s) skipped, {report.n_compared} change(s) against zero-shot "
        f"tested ({report.n_cached} from the cache), in {report.seconds:.1f}s. "
        f"Open {out / 'index.html'}.",
        highlight=False,
        soft_wrap=True,
    )


def _expand(paths: list[Path]) -> list[Path]:
    """Files to validate: the given files, and every result file and reported CSV under given folders
    (a per-sample scores sidecar is checked with its result file, not on its own)."""
    from benchmark.results import is_scores_file

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = (f for f in p.rglob("*") if f.suffix in VALIDATABLE and f.is_file())
            files += sorted(f for f in found if not is_scores_file(f))
        else:
            files.append(p)
    return files


def validate(
    files: Annotated[
        list[Path],
        typer.Argument(help="Result Parquet files, reported-numbers CSV files, or folders (searched recursively)."),
    ],
) -> None:
    """Check result files (schema, types, ranges, NaNs, duplicate keys, provenance, suite and version);
    exit 1 if any file has a problem."""
    import numpy as np
    import pandas as pd

    from benchmark.results import registered_scores, registered_suites, validate_files
    from leaderboard.reported import validate_reported_file

    suites = registered_suites()
    expanded = list({f.resolve(): f for f in reversed(_expand(files))}.values())[::-1]  # each file once
    if not expanded:
        raise OodbenchError(f"No .parquet or .csv files in {', '.join(map(str, files))}.")
    for f in expanded:
        if f.exists() and f.suffix not in VALIDATABLE:
            raise OodbenchError(f"{f} is neither a result file (.parquet) nor reported numbers (.csv).")
    parquet = [f for f in expanded if f.suffix != ".csv"]
    # result files are validated together: one pass over all rows, and copies of a run across files are found
    batch = validate_files(parquet, suites=suites, scores=registered_scores())
    index = {f: i for i, f in enumerate(parquet)}
    rows = np.bincount(batch.owner, minlength=len(parquet))
    runs = (
        pd.DataFrame({"file": batch.owner, "run": batch.table.column("run_id").to_pandas()})
        .groupby("file")["run"]
        .nunique()
        .to_dict()
    )
    bad = 0
    for f in expanded:
        if f.suffix == ".csv":
            check = validate_reported_file(f, suites=suites)
            n, n_runs = (len(check.rows) if check.rows is not None else 0), 0
        else:
            i = index[f]
            check, n, n_runs = batch.checks[i], int(rows[i]), runs.get(i, 0)
        if check.ok:
            console.print(
                f"[green]ok[/green]      {escape(str(f))} ({n} rows" + (f", {n_runs} run(s))" if n_runs else ")"),
                highlight=False,
                soft_wrap=True,
            )
        else:
            bad += 1
            console.print(f"[red]invalid[/red] {escape(str(f))}", highlight=False, soft_wrap=True)
            for p in check.problems:
                console.print(f"  - {p}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"{len(expanded) - bad} of {len(expanded)} file(s) valid.", highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


def reproduce(
    file: Annotated[Path, typer.Argument(help="The entry's result Parquet file.")],
    tolerance: ToleranceOpt = DEFAULT_TOLERANCE,
    record_dir: RecordDirOpt = DEFAULT_RECORD_DIR,
    method_file: MethodFileOpt = None,
    device: DeviceOpt = DEFAULT.device,
    batch_size: BatchOpt = DEFAULT.batch_size,
    num_workers: WorkersOpt = DEFAULT.num_workers,
    image_pipeline: ImagePipelineOpt = DEFAULT.image_pipeline,
    cache_dir: CacheOpt = None,
    data_root: DataRootOpt = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            help="Evaluate these tuned weights instead of refitting (encoder-tuning entries); their sha256 must "
            "equal the entry's tuned_weights_sha256.",
        ),
    ] = None,
    shipped_weights: Annotated[
        bool,
        typer.Option(
            "--shipped-weights",
            help="Evaluate the tuned weights shipped beside the entry (<entry>.weights.safetensors) instead of "
            "refitting.",
        ),
    ] = False,
    progress_bars: ProgressOpt = True,
) -> None:
    """Re-run the run(s) an entry describes from its provenance, compare every metric, write a verification record;
    exit 1 if a metric differs beyond the tolerance. Encoder-tuning entries are refitted unless --weights or
    --shipped-weights asks to evaluate their tuned weights."""
    from benchmark.reproduce import reproduce_file

    load_method_file(method_file)
    exe = Execution(
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        image_pipeline=image_pipeline,
        cache_dir=cache_dir,
        data_root=data_root,
    )
    outcomes = reproduce_file(
        file,
        execution=exe,
        tolerance=tolerance,
        record_dir=record_dir,
        progress=progress(progress_bars),
        weights=weights,
        use_shipped_weights=shipped_weights,
    )
    failed = 0
    for o in outcomes:
        for w in o.warnings:
            err_console.print(f"[yellow]warning[/yellow] run {o.run_id}: {escape(w)}", highlight=False, soft_wrap=True)
        if o.verified:
            console.print(
                f"[green]verified[/green] run {o.run_id}: {o.compared} values within {o.tolerance} "
                f"(largest difference {o.max_abs_diff:.2g})",
                highlight=False,
                soft_wrap=True,
            )
        else:
            failed += 1
            console.print(
                f"[red]mismatch[/red] run {o.run_id}: {len(o.mismatches)} of {o.compared} values differ "
                f"beyond {o.tolerance}:",
                highlight=False,
                soft_wrap=True,
            )
            for m in o.mismatches[:20]:
                if "problem" in m:
                    console.print(
                        f"  - {m['score']} / {m['ood_dataset']}: {m['problem']}",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )
                else:
                    console.print(
                        f"  - {m['score']} / {m['ood_dataset']} {m['metric']}: entry {m['entry']:.4f}, "
                        f"re-run {m['reproduced']:.4f} (difference {m['abs_diff']:.4f})",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )
            if len(o.mismatches) > 20:
                console.print(
                    f"  ... and {len(o.mismatches) - 20} more (all in {o.record_path})",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
        console.print(f"record: {o.record_path}", highlight=False, markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
