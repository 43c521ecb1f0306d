"""The `oodbench` command: `app` and `main`. Each subcommand lives in its own module of this package as a
plain function (or, for command groups, its own Typer app) and is registered here; no subcommand module
imports `app`. Heavy libraries (torch, open_clip, pandas) are imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import nullcontext
from typing import Annotated

import typer
from rich.markup import escape

from benchmark.cli import cache, data, leaderboard, listing, rescore, runs, sweep
from benchmark.cli.options import err_console
from benchmark.errors import DEBUG_ENV, OodbenchError, debug_enabled

app = typer.Typer(
    help="oodbench: how fine-tuning CLIP changes out-of-distribution detection. Start with `oodbench demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Print the full traceback when a method file, a plugin or "
            "a method's fit/predict fails (also OODBENCH_DEBUG=1).",
        ),
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


app.command("demo")(runs.demo)
app.command("run")(runs.run)
app.command("sweep")(sweep.sweep)
app.command("list")(listing.list_cmd)
app.command("show")(listing.show)
app.command("validate")(leaderboard.validate)
app.command("reproduce")(leaderboard.reproduce)
app.command("rescore")(rescore.rescore)
app.add_typer(data.data_app, name="data")
cache.cache_app.command("verify")(cache.verify)
app.add_typer(cache.cache_app, name="cache")
leaderboard.leaderboard_app.command("build")(leaderboard.build)
app.add_typer(leaderboard.leaderboard_app, name="leaderboard")


def _launched_by_torchrun() -> bool:
    """torchrun describes more than one process through RANK and WORLD_SIZE (checked without importing torch)."""
    return "RANK" in os.environ and os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")


def main() -> None:
    if _launched_by_torchrun():
        from benchmark.distributed import process_group

        group = process_group()
    else:
        group = nullcontext()
    try:
        with group:  # joins torchrun's process group when launched by it
            app()
    except OodbenchError as err:
        if debug_enabled():
            traceback.print_exception(err, file=sys.stderr)
        err_console.print(f"[bold red]error:[/bold red] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print(
            "interrupted; finished cache blocks and result files are kept, partial ones were never renamed into place."
        )
        sys.exit(130)
