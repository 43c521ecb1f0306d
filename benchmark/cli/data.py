"""`oodbench data check|prepare`: is each dataset of a suite present and pinned, and how to get it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.options import DataRootOpt, console
from benchmark.errors import OodbenchError

data_app = typer.Typer(
    help="Check and prepare the datasets of a suite (present? pinned? where to get them).", no_args_is_help=True
)

NameArg = Annotated[
    str, typer.Argument(help="A suite (`oodbench list suites`) or a dataset (`oodbench list datasets`).")
]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="Threads decoding images (0: up to 8).")]


def _root(data_root: Path | None) -> Path:
    from benchmark.data import default_data_root

    return (data_root or default_data_root()).expanduser()


@data_app.command("check")
def check_cmd(
    name: NameArg,
    data_root: DataRootOpt = None,
    verify_images: Annotated[
        bool,
        typer.Option(
            "--verify-images", help="Also decode every image and compare the bytes with the pin (reads all the data)."
        ),
    ] = False,
    workers: WorkersOpt = 0,
) -> None:
    """For every dataset: present, complete and matching its pin? For a missing one: where to get it and where to
    put it."""
    from rich.markup import escape
    from rich.text import Text

    from benchmark.datacheck import check_classnames, check_dataset, resolve_targets
    from benchmark.report import keep_names, print_table
    from benchmark.tables import TextTable as Table  # details hold paths from the user's copy: never markup

    root = _root(data_root)
    specs, suite = resolve_targets(name)
    statuses = [check_dataset(spec, data_root=root, verify=verify_images, workers=workers) for spec in specs]
    if suite is not None and (extra := check_classnames(suite, data_root=root)) is not None:
        statuses.append(extra)
    table = Table(title=f"{name}: data under {root}")
    for col in ("dataset", "state", "detail"):
        table.add_column(col, overflow="fold", no_wrap=col == "dataset")
    seen = set()
    for st in statuses:
        if st.name in seen:
            continue
        seen.add(st.name)
        colour = "green" if st.ok else "red"
        table.add_row(st.name, Text(st.state, style=colour), st.detail)
    print_table(console, keep_names(table))
    bad = [st for st in statuses if not st.ok]
    for st in bad:
        console.print(f"[bold]{escape(st.name)}[/bold] ({st.state}): {escape(st.fix)}", highlight=False)
    if bad:
        raise typer.Exit(1)
    console.print(f"all {len(seen)} datasets of {name} are present and match their pins.")


@data_app.command("prepare")
def prepare_cmd(
    name: NameArg,
    source: Annotated[
        Path,
        typer.Option(
            "--from",
            help="Your copy: the dataset's folder, or for a suite a folder laid "
            "out like the data root (each dataset at its root, see `data check`).",
        ),
    ],
    data_root: DataRootOpt = None,
    copy: Annotated[bool, typer.Option("--copy", help="Copy the listed files instead of linking the folder.")] = False,
    accept_count: Annotated[
        bool,
        typer.Option(
            "--accept-count",
            help="Record a copy whose image count differs from the spec's (a different release); the pin says so.",
        ),
    ] = False,
    class_list: Annotated[
        Path | None,
        typer.Option(
            "--class-list", help="Class list file for an ImageNet subset whose classes do not ship (one wnid per line)."
        ),
    ] = None,
    workers: WorkersOpt = 0,
) -> None:
    """Verify your local copy (every path inside it, every image decodes) and record it in the pinned form.

    Your files are never edited: the folder is linked (or with --copy, copied) under the data root, and the
    ordered image list and its hashes are written to <data root>/.oodbench/.
    """
    from rich.markup import escape

    from benchmark.datacheck import prepare_dataset, require_prepared, resolve_targets
    from benchmark.datasets import ImageListSource

    root = _root(data_root)
    specs, suite = resolve_targets(name)
    local = [s for s in specs if isinstance(s.source, ImageListSource)]
    if not local:
        raise OodbenchError(f"{name} has no datasets read from local files; nothing to prepare.")
    single = suite is None  # one dataset: --from is its folder; a suite: --from is a tree like the data root
    skipped = []
    for spec in dict.fromkeys(local):
        src = source if single else source / spec.source.root
        if not single and not src.exists():
            console.print(f"[yellow]skip[/yellow] {spec.name}: no {escape(str(src))}")
            skipped.append((spec, src))
            continue
        done = prepare_dataset(
            spec, src, data_root=root, copy=copy, accept_count=accept_count, class_list=class_list, workers=workers
        )
        console.print(
            f"[green]prepared[/green] {spec.name}: {done.num_images} images, list sha256 "
            f"{done.list_sha256[:16]}, content sha256 {done.content_sha256[:16]}; "
            + "; ".join(map(escape, done.notes)),
            highlight=False,
        )
    require_prepared(name, source=source, prepared=len(dict.fromkeys(local)) - len(skipped), skipped=skipped)
