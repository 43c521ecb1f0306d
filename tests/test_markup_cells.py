"""Strings from result files and user copies are shown as text in terminal tables, never read as Rich markup."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.text import Text

from benchmark.report import delta_table, run_table, seed_summary_table
from benchmark.results import read_results, write_results

MARKUP = "mcm[/]"  # a closing tag with nothing open: Rich raises MarkupError when it parses this
STYLED = "[bold red]x[/bold red]"  # valid markup: must be shown literally, not styled


def _render(renderable) -> str:
    console = Console(width=400, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def _hostile_rows(demo_file: Path) -> pd.DataFrame:
    rows = read_results(demo_file)
    rows["score"] = rows["score"].replace({"mcm": MARKUP, "msp": STYLED})
    first = rows["ood_dataset"].iloc[0]
    rows["ood_dataset"] = rows["ood_dataset"].replace({first: first + "[/]"})
    rows["method"] = "zero[/]shot"
    return rows


def test_show_prints_a_score_named_like_markup(demo_run, tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per row, so names are not folded
    path = tmp_path / "hostile.parquet"
    write_results(_hostile_rows(demo_run["file"]), path)
    code, out, err = run_cli("show", path)
    assert code == 0, err
    assert MARKUP in out and STYLED in out
    assert f"{read_results(path)['ood_dataset'].iloc[0]}" in out  # the OOD set's header is literal too


def test_every_report_table_renders_hostile_strings_literally(demo_run):
    rows = _hostile_rows(demo_run["file"])
    tables = [
        run_table(rows, title="t[/]"),
        delta_table(rows, rows, title="d[/]"),
        seed_summary_table(rows, title="s[/]"),
    ]
    for table in tables:
        text = _render(table)
        assert MARKUP in text and STYLED in text, text


def test_text_table_keeps_styled_cells_and_escapes_strings():
    from benchmark.tables import TextTable

    table = TextTable(title="[/]")
    table.add_column("[/]")
    table.add_row(Text("ok", style="green"))
    table.add_row("[red]no[/red]")
    text = _render(table)
    assert "[red]no[/red]" in text and "ok" in text and text.count("[/]") == 2


def test_list_shows_a_plugin_method_named_like_markup(run_cli, monkeypatch):
    from methods import METHODS, load_methods
    from methods.zero_shot import ZeroShot

    load_methods()
    monkeypatch.setenv("COLUMNS", "400")
    evil = type("Evil", (ZeroShot,), {"paper": STYLED})
    with METHODS.temporarily("evil[/]", evil):
        code, out, err = run_cli("list", "methods")
    assert code == 0, err
    assert "evil[/]" in out and STYLED in out


def test_data_check_shows_paths_like_markup_literally(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    root = tmp_path / "data[/]root"
    code, out, err = run_cli("data", "check", "imagenet1k-far", "--data-root", root)
    assert code == 1, err  # its datasets are missing: reported, not a crash
    assert f"nothing at {root}" in out and "missing" in out
