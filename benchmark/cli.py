"""The `oodbench` command."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmark.errors import OodbenchError

app = typer.Typer(
    help="oodbench: how fine-tuning CLIP changes out-of-distribution detection. Start with `oodbench demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

DEMO_RESULTS = Path("oodbench-results") / "demo"

SuiteOpt = Annotated[str, typer.Option("--suite", help="Suite name (`oodbench list suites`).")]
BackboneOpt = Annotated[
    str,
    typer.Option(
        "--backbone",
        help="ARCH:TAG as open_clip names it, ARCH:/path/to/weights, "
        "or a bundled backbone (`oodbench list backbones`).",
    ),
]
ScoresOpt = Annotated[str | None, typer.Option("--scores", help="Comma-separated scores; default: every score.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="Encoder precision: fp32, or autocast bf16/fp16 on GPUs.")
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per encoder batch.")]
WorkersOpt = Annotated[
    int, typer.Option("--num-workers", min=0, help="DataLoader worker processes for decoding images.")
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Feature cache folder (default: $OODBENCH_CACHE or ~/.cache/oodbench)."),
]
DataRootOpt = Annotated[
    Path | None,
    typer.Option("--data-root", help="Root of local datasets (default: $OODBENCH_DATA or ~/oodbench-data)."),
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def _split(csv: str | None) -> list[str] | None:
    return [s.strip() for s in csv.split(",") if s.strip()] if csv else None


def _parse_config(pairs: list[str]) -> dict:
    """`key=value` pairs; values are JSON where they parse (numbers, true/false, lists), else strings."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OodbenchError(f"--config takes key=value pairs (got {pair!r}), for example --config lr=0.002.")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _progress(enabled: bool):
    from benchmark.progress import Progress

    return Progress(enabled=enabled, console=err_console)


def _cache_note(result) -> str:
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


@app.command()
def demo(
    cache_dir: CacheOpt = None,
    results_dir: Annotated[
        Path, typer.Option("--results-dir", help="Where the demo's Parquet files go.")
    ] = DEMO_RESULTS,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = True,
) -> None:
    """Zero-shot CLIP and CoOp (16 shots) with every score on the bundled demo suite, and how
    fine-tuning changed OOD detection (offline, CPU, minutes)."""
    from benchmark.backbones import DEMO_BACKBONE
    from benchmark.harness import Harness, RunSpec
    from benchmark.report import delta_table, run_table

    start = time.perf_counter()
    harness = Harness(progress=_progress(progress))
    console.print(f"[bold]oodbench demo[/bold]: suite fmnist-ood, backbone {DEMO_BACKBONE}")
    zs = harness.run(
        RunSpec(suite="fmnist-ood", backbone=DEMO_BACKBONE, method="zero_shot", device=device, cache_dir=cache_dir),
        results_dir=results_dir,
    )
    console.print(_cache_note(zs))
    console.print(run_table(zs.rows, title="zero-shot CLIP on fmnist-ood"))
    console.print(f"wrote {zs.path}")
    coop = harness.run(
        RunSpec(
            suite="fmnist-ood",
            backbone=DEMO_BACKBONE,
            method="coop",
            shots=16,
            seed=1,
            device=device,
            cache_dir=cache_dir,
        ),
        results_dir=results_dir,
    )
    console.print(run_table(coop.rows, title="CoOp (16 shots, seed 1) on fmnist-ood"))
    console.print(_cache_note(coop))
    trained = f", CoOp trained in {coop.seconds['fit']:.1f}s on cached features" if "fit" in coop.seconds else ""
    console.print(f"wrote {coop.path}{trained}")
    console.print(
        delta_table(zs.rows, coop.rows, title="How fine-tuning changed OOD detection: CoOp 16-shot minus zero-shot")
    )
    console.print(f"demo finished in {time.perf_counter() - start:.1f}s")


@app.command("run")
def run_cmd(
    suite: SuiteOpt,
    backbone: BackboneOpt,
    method: Annotated[str, typer.Option("--method", help="Method name (`oodbench list methods`).")],
    method_file: Annotated[
        Path | None,
        typer.Option(
            "--method-file",
            help="A Python file that registers a method living outside oodbench (see docs/adding-a-method.md).",
        ),
    ] = None,
    scores: ScoresOpt = None,
    shots: Annotated[
        int,
        typer.Option("--shots", min=0, help="Images per class for methods that train (1/2/4/8/16); 0 for zero-shot."),
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the few-shot split and of training.")] = 1,
    config: Annotated[
        list[str], typer.Option("--config", help="Method hyperparameter override key=value (repeatable).")
    ] = [],  # noqa: B006
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    batch_size: BatchOpt = 256,
    num_workers: WorkersOpt = 0,
    cache_dir: CacheOpt = None,
    data_root: DataRootOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Parquet file to write (default: a new file under --results-dir).")
    ] = None,
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder for the run's Parquet file.")] = Path(
        "results"
    ),
    progress: ProgressOpt = True,
) -> None:
    """Run one method on one suite with every (or the chosen) score; writes one Parquet file."""
    from benchmark.harness import Harness, RunSpec
    from benchmark.report import run_table

    if method_file is not None:
        from methods import load_method_file

        load_method_file(method_file)
    spec = RunSpec(
        suite=suite,
        backbone=backbone,
        method=method,
        method_config=_parse_config(config),
        scores=_split(scores),
        shots=shots,
        seed=seed,
        device=device,
        precision=precision,
        batch_size=batch_size,
        num_workers=num_workers,
        cache_dir=cache_dir,
        data_root=data_root,
    )
    result = Harness(progress=_progress(progress)).run(spec, out=out, results_dir=results_dir)
    if result.path is None:  # a torchrun rank other than 0: rank 0 wrote and reports the rows
        return
    console.print(_cache_note(result))
    console.print(
        run_table(
            result.rows, title=f"{method} on {suite} ({backbone}, shots={result.rows['shots'].iloc[0]}, seed={seed})"
        )
    )
    console.print(f"wrote {result.path} in {result.seconds['total']:.1f}s")


LISTABLE = ("suites", "backbones", "methods", "scores", "datasets")


@app.command("list")
def list_cmd(what: Annotated[str, typer.Argument(help=f"One of: {', '.join(LISTABLE)}.")]) -> None:
    """List registered suites, backbones, methods, scores or datasets."""
    from benchmark.tables import TextTable as Table  # names and descriptions may come from plugins: never markup

    if what not in LISTABLE:
        from benchmark.registry import suggest

        raise OodbenchError(
            f"Cannot list {what!r}.{suggest(what, list(LISTABLE))} Choose one of: {', '.join(LISTABLE)}."
        )
    table = Table()
    if what == "suites":
        from benchmark.suites import SUITES

        for c in ("suite", "version", "ID", "near OOD", "far OOD"):
            table.add_column(c)
        for name, s in SUITES.items():
            table.add_row(name, str(s.version), s.id_test, ", ".join(s.near), ", ".join(s.far))
    elif what == "backbones":
        from benchmark.backbones import BUNDLED_WEIGHTS, list_backbones

        table.add_column("backbone")
        table.add_column("weights")
        for name in list_backbones():
            table.add_row(name, "bundled" if name in BUNDLED_WEIGHTS else "open_clip hub (downloaded on first use)")
        table.caption = "or ARCH:/path/to/weights.safetensors for local weights"
    elif what == "methods":
        import dataclasses

        from methods import METHODS, load_methods

        load_methods()
        for c in ("method", "trains", "defaults", "paper"):
            table.add_column(c, overflow="fold")
        for name, cls in METHODS.items():
            defaults = json.dumps(dataclasses.asdict(cls.Config()))
            table.add_row(name, "yes" if cls.trains else "no (zero-shot)", defaults, cls.paper)
    elif what == "scores":
        from methods import SCORES, load_methods

        load_methods()
        table.add_column("score")
        table.add_column("what it is", overflow="fold")
        for name, s in SCORES.items():
            table.add_row(name, s.description + (" (needs patch features)" if s.needs_local else ""))
        table.caption = "every score is higher-is-more-ID"
    else:
        from benchmark.datasets import DATASETS, load_families

        load_families()
        for c in ("dataset", "version", "images", "pin", "source", "licence"):
            table.add_column(c)
        for name, d in DATASETS.items():
            images = str(d.num_images) if d.num_images else "not asserted"
            pin = d.list_sha256[:12] if d.list_sha256 else "pinned locally (`oodbench data prepare`)"
            table.add_row(name, str(d.version), images, pin, type(d.source).__name__.replace("Source", ""), d.license)
    console.print(table)


@app.command()
def show(file: Annotated[Path, typer.Argument(help="A result Parquet file.")]) -> None:
    """Print a result file: its run, provenance and metrics table."""
    from benchmark.report import describe_run, run_table
    from benchmark.results import read_results

    rows = read_results(file)
    if rows.empty:
        raise OodbenchError(f"{file} has no rows.")
    for line in describe_run(rows):
        console.print(line, highlight=False, markup=False)
    for _, g in rows.groupby(["run_id"], sort=False):
        console.print(run_table(g))


# Command groups that live in their own modules add themselves to `app` on import.
from benchmark import cli_data, cli_leaderboard, cli_sweep  # noqa: E402,F401


def main() -> None:
    from benchmark.distributed import process_group

    try:
        with process_group():  # joins torchrun's process group when launched by it; a no-op otherwise
            app()
    except OodbenchError as err:
        err_console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print(
            "interrupted; finished cache blocks and result files are kept, partial ones were never renamed into place."
        )
        sys.exit(130)


if __name__ == "__main__":  # `python -m benchmark.cli` / `torchrun -m benchmark.cli`: use the importable module,
    from benchmark.cli import main as _main  # whose app the command-group modules extended

    _main()
