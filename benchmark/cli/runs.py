"""`oodbench demo` and `oodbench run`: one run (or the demo's two) through the harness."""

from __future__ import annotations

import time
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
    parse_config,
    progress,
    split_csv,
)
from benchmark.config import Execution

DEMO_RESULTS = Path("oodbench-results") / "demo"


def cache_note(result) -> str:
    hits = {k: v for k, v in result.cache_hits.items() if k != "outputs"}
    if result.cache_hits.get("outputs"):
        return (
            "[green]cache hit[/green]: this run's outputs were cached (same backbone, data, method, config, "
            "split and code), so nothing was encoded or trained"
        )
    n_hit = sum(hits.values())
    if n_hit == len(hits):
        return f"[green]feature cache hit[/green] for all {len(hits)} feature sets"
    if n_hit == 0:
        return f"feature cache miss: encoded {len(hits)} feature sets (cached for next time)"
    return f"feature cache: {n_hit} of {len(hits)} feature sets hit, the rest encoded and cached"


def demo(
    cache_dir: CacheOpt = None,
    results_dir: Annotated[
        Path, typer.Option("--results-dir", help="Where the demo's Parquet files go.")
    ] = DEMO_RESULTS,
    device: DeviceOpt = DEFAULT.device,
    image_pipeline: ImagePipelineOpt = DEFAULT.image_pipeline,
    progress_bars: ProgressOpt = True,
) -> None:
    """Zero-shot CLIP and CoOp (16 shots) with every score on the bundled demo suite, and how
    fine-tuning changed OOD detection (offline, CPU, minutes)."""
    from benchmark.backbones import DEMO_BACKBONE
    from benchmark.config import RunKey
    from benchmark.harness import Harness
    from benchmark.report import delta_table, print_table, run_table

    start = time.perf_counter()
    harness = Harness(progress=progress(progress_bars))
    exe = Execution(device=device, cache_dir=cache_dir, image_pipeline=image_pipeline)
    console.print(f"[bold]oodbench demo[/bold]: suite fmnist-ood, backbone {DEMO_BACKBONE}")
    zs = harness.run(
        RunKey(suite="fmnist-ood", backbone=DEMO_BACKBONE, method="zero_shot"), exe, results_dir=results_dir
    )
    console.print(cache_note(zs))
    print_table(console, run_table(zs.rows, title="zero-shot CLIP on fmnist-ood"))
    console.print(f"wrote {zs.path}", highlight=False, markup=False)
    coop = harness.run(
        RunKey(suite="fmnist-ood", backbone=DEMO_BACKBONE, method="coop", shots=16, seed=1),
        exe,
        results_dir=results_dir,
    )
    print_table(console, run_table(coop.rows, title="CoOp (16 shots, seed 1) on fmnist-ood"))
    console.print(cache_note(coop))
    trained = f", CoOp trained in {coop.seconds['fit']:.1f}s on cached features" if "fit" in coop.seconds else ""
    console.print(f"wrote {coop.path}{trained}", highlight=False, markup=False)
    print_table(
        console,
        delta_table(zs.rows, coop.rows, title="How fine-tuning changed OOD detection: CoOp 16-shot minus zero-shot"),
    )
    console.print(f"demo finished in {time.perf_counter() - start:.1f}s")


def run(
    suite: SuiteOpt,
    backbone: BackboneOpt,
    method: Annotated[str, typer.Option("--method", help="Method name (`oodbench list methods`).")],
    method_file: MethodFileOpt = None,
    scores: ScoresOpt = None,
    shots: Annotated[
        int, typer.Option("--shots", help="Images per class for few-shot methods (1/2/4/8/16); 0 for the others.")
    ] = 0,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", help="Seed of the few-shot split, of training and of the order test images are shown in."
        ),
    ] = 1,
    config: ConfigOpt = [],  # noqa: B006 - typer reads the default
    device: DeviceOpt = DEFAULT.device,
    precision: PrecisionOpt = DEFAULT.precision,
    batch_size: BatchOpt = DEFAULT.batch_size,
    num_workers: WorkersOpt = DEFAULT.num_workers,
    image_pipeline: ImagePipelineOpt = DEFAULT.image_pipeline,
    cache_dir: CacheOpt = None,
    data_root: DataRootOpt = None,
    save_scores: SaveScoresOpt = DEFAULT.save_scores,
    save_weights: SaveWeightsOpt = DEFAULT.save_weights,
    out: Annotated[
        Path | None, typer.Option("--out", help="Parquet file to write (default: a new file under --results-dir).")
    ] = None,
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder for the run's Parquet file.")] = Path(
        "results"
    ),
    progress_bars: ProgressOpt = True,
) -> None:
    """Run one method on one suite with every score that applies (or the chosen ones); writes one Parquet file
    and, beside it, the per-sample scores."""
    from benchmark.config import RunKey
    from benchmark.harness import Harness
    from benchmark.report import print_table, run_table

    load_method_file(method_file)
    key = RunKey(
        suite=suite,
        backbone=backbone,
        method=method,
        config=parse_config(config),
        scores=tuple(split_csv(scores) or ()),
        shots=shots,
        seed=seed,
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
    result = Harness(progress=progress(progress_bars)).run(key, exe, out=out, results_dir=results_dir)
    if result.path is None:  # a torchrun rank other than 0: rank 0 wrote and reports the rows
        return
    console.print(cache_note(result))
    print_table(console, run_table(result.rows, title=f"{method} on {suite} ({backbone}, shots={shots}, seed={seed})"))
    if result.not_applicable:
        console.print(f"not applicable to {method}: {', '.join(result.not_applicable)}", highlight=False, markup=False)
    side = f" and {result.scores_path.name}" if result.scores_path else ""
    side += f" and {result.weights_path.name}" if result.weights_path else ""
    console.print(f"wrote {result.path}{side} in {result.seconds['total']:.1f}s", highlight=False, markup=False)
