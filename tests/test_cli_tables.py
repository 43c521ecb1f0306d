"""CLI tables never cut a name a user must copy: not at a narrow terminal, not when the output is a file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from benchmark.report import keep_names, print_table
from benchmark.tables import TextTable

ROOT = Path(__file__).parents[1]
CUT = "…"


def _names(what: str) -> list[str]:
    """Every name `oodbench list WHAT` must show whole."""
    if what == "suites":
        from benchmark.suites import SUITES

        return [n for name, s in SUITES.items() for n in (name, s.id_test, *s.near, *s.far)]
    if what == "datasets":
        from benchmark.datasets import DATASETS, load_families

        load_families()
        return list(DATASETS.names())
    from methods import METHODS, SCORES, load_methods

    load_methods()
    return list((METHODS if what == "methods" else SCORES).names())


def _console(width: int, *, terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(width=width, file=buf, force_terminal=terminal, color_system=None, legacy_windows=False), buf


@pytest.mark.parametrize("what", ["suites", "datasets", "methods", "scores"])
def test_list_written_to_a_file_keeps_every_name(what, tmp_path):
    out = tmp_path / "list.txt"
    env = {**os.environ, "COLUMNS": "30"}  # what a narrow terminal would report; the output is a file
    with out.open("w") as f:
        done = subprocess.run(
            [sys.executable, "-m", "benchmark.cli", "list", what], stdout=f, cwd=ROOT, env=env, timeout=300
        )
    assert done.returncode == 0
    text = out.read_text()
    assert CUT not in text
    lines = text.splitlines()
    for name in _names(what):
        assert any(name in line for line in lines), f"{name!r} is not whole in `oodbench list {what}` written to a file"


@pytest.mark.parametrize("what", ["suites", "datasets", "scores"])
def test_list_on_a_narrow_terminal_keeps_every_name(what, run_cli, monkeypatch):
    console, buf = _console(24, terminal=True)
    monkeypatch.setattr("benchmark.cli.listing.console", console)
    code, _, _ = run_cli("list", what)
    assert code == 0
    text = buf.getvalue()
    assert CUT not in text
    for name in _names(what):
        assert name in text, f"{name!r} is cut in `oodbench list {what}` at 24 columns"
    assert console.width == 24  # the console is left as it was


def test_show_on_a_narrow_terminal_keeps_scores_and_datasets(demo_run, run_cli, monkeypatch):
    from benchmark.results import read_results
    from methods.scores import labelled

    console, buf = _console(20, terminal=True)
    monkeypatch.setattr("benchmark.cli.listing.console", console)
    code, _, _ = run_cli("show", demo_run["file"])
    assert code == 0
    text = buf.getvalue()
    rows = labelled(read_results(demo_run["file"]))
    assert CUT not in text
    for name in [*rows["score_label"].unique(), *rows["ood_dataset"].unique()]:
        assert name in text


def test_a_wrapped_description_is_folded_never_cut():
    table = TextTable()
    table.add_column("name", no_wrap=True)
    table.add_column("what it is")
    long_name = "a-very-long-registered-name-that-must-stay-whole"
    table.add_row(long_name, "antidisestablishmentarianism " * 3)
    console, buf = _console(30, terminal=True)
    print_table(console, keep_names(table))
    text = buf.getvalue()
    assert long_name in text and CUT not in text
    assert text.replace("\n", "").replace("│", "").replace(" ", "").count("antidisestablishmentarianism") >= 3

    console, buf = _console(30, terminal=False)  # not a terminal: every row on one line
    print_table(console, keep_names(table))
    assert any(
        long_name in line and "antidisestablishmentarianism " * 2 in line for line in buf.getvalue().splitlines()
    )
