"""`oodbench list` and `oodbench show`: what is registered, and what a result file holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.options import console
from benchmark.errors import OodbenchError

LISTABLE = ("suites", "backbones", "methods", "scores", "datasets")


def list_cmd(what: Annotated[str, typer.Argument(help=f"One of: {', '.join(LISTABLE)}.")]) -> None:
    """List registered suites, backbones, methods, scores or datasets."""
    from benchmark.report import keep_names, print_table
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
            table.add_column(c, no_wrap=c != "version")
        for name, s in SUITES.items():  # one dataset name per line: a name is never split
            table.add_row(name, str(s.version), s.id_test, "\n".join(s.near), "\n".join(s.far))
    elif what == "backbones":
        from benchmark.backbone_names import BUNDLED_WEIGHTS, list_backbones  # open_clip's table, not open_clip

        table.add_column("backbone", no_wrap=True)
        table.add_column("weights")
        for name in list_backbones():
            table.add_row(name, "bundled" if name in BUNDLED_WEIGHTS else "open_clip hub (downloaded on first use)")
        table.caption = "or ARCH:/path/to/weights.safetensors for local weights"
    elif what == "methods":
        from methods.catalog import catalog  # read from the method modules' source: no torch

        for c in ("method", "protocol", "uses", "defaults", "paper"):
            table.add_column(c, overflow="fold", no_wrap=c == "method")
        for name, m in catalog().methods.items():
            uses = ", ".join(sorted(m.uses)) or "-"
            defaults = json.dumps(json.loads(m.defaults))
            table.add_row(name, m.protocol, uses, defaults, m.paper)
    elif what == "scores":
        from methods.catalog import catalog

        for c in ("score", "parameters (defaults)", "reads", "what it is"):
            table.add_column(c, overflow="fold", no_wrap=c == "score")
        for name, s in catalog().scores.items():
            params = ", ".join(f"{k}={v}" for k, v in s.defaults.items()) or "-"
            reads = ", ".join(sorted({"logits"} | set(s.requires)))
            table.add_row(name, params, reads, s.description)
        table.caption = "every score is higher-is-more-ID; a variant is written name:key=value (energy:T=0.01)"
    else:
        from benchmark.datasets import DATASETS, load_families

        load_families()
        for c in ("dataset", "version", "images", "pin", "source", "licence"):
            table.add_column(c, no_wrap=c == "dataset")
        for name, d in DATASETS.items():
            images = str(d.num_images) if d.num_images else "not asserted"
            pin = d.list_sha256[:12] if d.list_sha256 else "pinned locally (`oodbench data prepare`)"
            table.add_row(name, str(d.version), images, pin, type(d.source).__name__.replace("Source", ""), d.license)
    print_table(console, keep_names(table))


def show(file: Annotated[Path, typer.Argument(help="A result Parquet file.")]) -> None:
    """Print a result file: its run, provenance and metrics table."""
    from benchmark.report import describe_run, print_table, run_table
    from benchmark.results import read_results

    rows = read_results(file)
    if rows.empty:
        raise OodbenchError(f"{file} has no rows.")
    for line in describe_run(rows):
        console.print(line, highlight=False, markup=False)
    for _, g in rows.groupby(["run_id"], sort=False):
        print_table(console, run_table(g))
