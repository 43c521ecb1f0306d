"""What the subcommands share: the consoles, the options they have in common and small parsers.

Option defaults are read from benchmark.config (Execution), the one place they are stated. Nothing here
imports torch, so `--help` and the cheap commands stay cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmark.config import DEFAULT_EXECUTION, DEFAULT_IMAGE_PIPELINE, IMAGE_PIPELINE_ENV, IMAGE_PIPELINES
from benchmark.errors import OodbenchError

console = Console()
err_console = Console(stderr=True)

DEFAULT = DEFAULT_EXECUTION  # the defaults every option below shows

SuiteOpt = Annotated[str, typer.Option("--suite", help="Suite name (`oodbench list suites`).")]
BackboneOpt = Annotated[
    str,
    typer.Option(
        "--backbone",
        help="ARCH:TAG as open_clip names it, ARCH:/path/to/weights, "
        "or a bundled backbone (`oodbench list backbones`).",
    ),
]
ScoresOpt = Annotated[
    str | None,
    typer.Option(
        "--scores",
        help="Comma-separated scores, each with optional "
        "parameters (energy:T=0.01); default: every score that applies.",
    ),
]
ConfigOpt = Annotated[
    list[str],
    typer.Option(
        "--config",
        help="Method hyperparameter override key=value "
        "(repeatable; values are JSON where they parse: 4, 0.5, true, [1,2]; in a sweep, a key given "
        "several times runs each value).",
    ),
]
MethodFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--method-file",
        help="A Python file that registers a method living outside oodbench (see docs/adding-a-method.md).",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
PrecisionOpt = Annotated[
    str,
    typer.Option("--precision", help="Encoder precision: fp32, or autocast bf16/fp16 on GPUs (recorded in every row)."),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per encoder batch.")]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--num-workers",
        min=0,
        help="Image decoding in parallel: threads of the tensor pipeline (0 means 1), "
        "DataLoader worker processes of the PIL pipeline (0 decodes in the main process).",
    ),
]
ImagePipelineOpt = Annotated[
    str | None,
    typer.Option(
        "--image-pipeline",
        help=f"How extraction decodes and resizes images: {' or '.join(IMAGE_PIPELINES)} "
        f"(default: ${IMAGE_PIPELINE_ENV}, else {DEFAULT_IMAGE_PIPELINE}). Part of the feature and output cache keys.",
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Feature cache folder (default: $OODBENCH_CACHE or ~/.cache/oodbench)."),
]
DataRootOpt = Annotated[
    Path | None,
    typer.Option("--data-root", help="Root of local datasets (default: $OODBENCH_DATA or ~/oodbench-data)."),
]
SaveScoresOpt = Annotated[
    bool,
    typer.Option(
        "--save-scores/--no-save-scores",
        help="Write the per-sample scores beside the result file (needed for intervals and curves).",
    ),
]
SaveWeightsOpt = Annotated[
    bool,
    typer.Option(
        "--save-weights/--no-save-weights",
        help="Methods that tune the encoders: write the tuned weights (or LoRA delta) beside the result file as "
        "<result>.weights.safetensors, so that `oodbench reproduce --shipped-weights` can evaluate them.",
    ),
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


def split_csv(csv: str | None) -> list[str] | None:
    """`a, b,c` -> ['a', 'b', 'c']; None or '' -> None."""
    return [s.strip() for s in csv.split(",") if s.strip()] if csv else None


def parse_config_values(pairs: list[str]) -> dict[str, list]:
    """`key=value` pairs, a key possibly repeated: key -> its values in order. Values are JSON where they parse
    (numbers, true/false, lists), else strings."""
    out: dict[str, list] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OodbenchError(f"--config takes key=value pairs (got {pair!r}), for example --config lr=0.002.")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(key, []).append(parsed)
    return out


def parse_config(pairs: list[str]) -> dict:
    """`key=value` pairs of one run; a key given twice is an error (a sweep takes several values of a key)."""
    out = {}
    for key, values in parse_config_values(pairs).items():
        if len(values) > 1:
            raise OodbenchError(
                f"--config {key} is given {len(values)} times ({values}); one run takes one value. To run each, "
                f"use `oodbench sweep` with the repeated --config."
            )
        out[key] = values[0]
    return out


def parse_config_grid(pairs: list[str]) -> tuple[dict, dict[str, list]]:
    """A sweep's `key=value` pairs: (keys given once -> value, keys given several times -> their values)."""
    values = parse_config_values(pairs)
    single = {k: v[0] for k, v in values.items() if len(v) == 1}
    return single, {k: v for k, v in values.items() if len(v) > 1}


def progress(enabled: bool):
    from benchmark.progress import Progress

    return Progress(enabled=enabled, console=err_console)


def load_method_file(path: Path | None) -> None:
    if path is not None:
        from methods import load_method_file as load

        load(path)
