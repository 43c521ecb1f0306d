"""Copies of a run across files (issue 14 items 1 and 2): never first-wins, never extra seeds; both files named."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from benchmark.results import read_results, scores_path, validate_files, write_results
from leaderboard.build import build_site
from leaderboard.collect import collect


@pytest.fixture
def results(tmp_path, demo_run) -> Path:
    root = tmp_path / "results"
    (root / "zero_shot").mkdir(parents=True)
    shutil.copy(demo_run["file"], root / "zero_shot" / "demo.parquet")
    shutil.copy(scores_path(demo_run["file"]), scores_path(root / "zero_shot" / "demo.parquet"))
    return root


def _reasons(inputs, path: str) -> str:
    return " ".join(r for s in inputs.skipped if s.path == path for r in s.reasons)


def test_a_copy_that_reuses_the_run_id_and_sorts_first_takes_over_nothing(results, make_run, tmp_path, run_cli):
    genuine = make_run(results / "coop" / "k4-s1.parquet", method="coop", shots=4, seed=1)
    forged = read_results(genuine).assign(auroc=0.987654, fpr95=0.001234)  # better numbers, same run_id and key
    write_results(forged, results / "coop" / "0-k4-s1-copy.parquet")  # sorts before the genuine file
    inputs = collect(results)
    assert set(inputs.rows["source_file"]) == {"zero_shot/demo.parquet"}  # neither copy is published
    for mine, other in (
        ("coop/k4-s1.parquet", "coop/0-k4-s1-copy.parquet"),
        ("coop/0-k4-s1-copy.parquet", "coop/k4-s1.parquet"),
    ):
        assert other in _reasons(inputs, mine) and "neither copy is published" in _reasons(inputs, mine)
    code, out, err = run_cli("leaderboard", "build", "--results", results, "--out", tmp_path / "site", "--no-cache")
    assert code == 0, err
    assert "skipped coop/k4-s1.parquet" in err and "skipped coop/0-k4-s1-copy.parquet" in err
    index = (tmp_path / "site" / "index.html").read_text()
    assert "coop/k4-s1.parquet" in index and "coop/0-k4-s1-copy.parquet" in index and "copy of the same run" in index
    assert "0.987654" not in (tmp_path / "site" / "downloads" / "oodbench-results.csv").read_text()


def test_a_copy_with_a_new_run_id_is_not_an_extra_seed(results, make_run):
    genuine = make_run(results / "coop" / "k4-s1.parquet", method="coop", shots=4, seed=1)
    make_run(results / "coop" / "k4-s2.parquet", method="coop", shots=4, seed=2)  # a real second seed
    copy = read_results(genuine).assign(run_id=uuid.uuid4().hex)  # same run key, new run_id
    write_results(copy, results / "coop" / "k4-s1-again.parquet")
    inputs = collect(results)
    coop = inputs.rows[inputs.rows["method"] == "coop"]
    assert sorted(coop["seed"].unique()) == [2]  # seeds never read "1, 1, 2"
    assert "coop/k4-s1-again.parquet" in _reasons(inputs, "coop/k4-s1.parquet")
    assert "coop/k4-s1.parquet" in _reasons(inputs, "coop/k4-s1-again.parquet")
    assert not _reasons(inputs, "coop/k4-s2.parquet")


def test_one_run_id_in_two_files_with_different_keys(results, make_run):
    a = make_run(results / "coop" / "a.parquet", method="coop", shots=4, seed=1)
    other = read_results(a).assign(seed=7)  # an edited copy: another key, the same run_id
    write_results(other, results / "coop" / "b.parquet")
    inputs = collect(results)
    assert "also in coop/b.parquet" in _reasons(inputs, "coop/a.parquet")
    assert "also in coop/a.parquet" in _reasons(inputs, "coop/b.parquet")
    assert set(inputs.rows["source_file"]) == {"zero_shot/demo.parquet"}


def test_validate_names_both_files_of_a_copy(results, make_run, run_cli):
    genuine = make_run(results / "coop" / "k4-s1.parquet", method="coop", shots=4, seed=1)
    shutil.copy(genuine, results / "coop" / "copy.parquet")
    code, out, _ = run_cli("validate", results / "coop")
    assert code == 1 and "0 of 2 file(s) valid" in out
    assert out.count("copy of the same run") == 2 and str(results / "coop" / "copy.parquet") in out
    batch = validate_files([genuine], across_files=True)  # one file alone is fine
    assert batch.checks[0].ok
    code, out, _ = run_cli("validate", genuine, genuine)  # the same file named twice is one file
    assert code == 0 and "1 of 1 file(s) valid" in out


def test_a_link_inside_the_results_folder_is_read_once(results):
    (results / "latest.parquet").symlink_to(Path("zero_shot") / "demo.parquet")
    inputs = collect(results)
    assert set(inputs.rows["source_file"]) == {"zero_shot/demo.parquet"}
    assert any(s.path == "latest.parquet" and "read under its own name" in s.reasons[0] for s in inputs.skipped)


def test_build_site_publishes_neither_copy(results, make_run, tmp_path):
    genuine = make_run(results / "coop" / "k4-s1.parquet", method="coop", shots=4, seed=1)
    write_results(read_results(genuine).assign(auroc=0.5), results / "coop" / "a-copy.parquet")
    report = build_site(results_dir=results, out=tmp_path / "site")
    assert {s.path for s in report.skipped} == {"coop/k4-s1.parquet", "coop/a-copy.parquet"}
    assert report.n_rows == len(read_results(results / "zero_shot" / "demo.parquet"))
