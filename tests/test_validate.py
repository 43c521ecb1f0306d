"""`oodbench validate` and the validation behind it: each kind of problem is found and named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.results import read_results, registered_suites, validate_file, validate_frame
from leaderboard.reported import validate_reported_file

REPORTED_HEADER = (
    "suite,backbone,method,score,shots,ood_group,ood_dataset,fpr95,auroc,id_acc,citation,source,fpr95_convention\n"
)


def _set(col, value):
    def f(df):
        df[col] = value
        return df

    return f


def _first(col, value):
    def f(df):
        df[col] = df[col].astype(object) if isinstance(value, str) and df[col].dtype != object else df[col]
        df.loc[0, col] = value
        return df

    return f


PROBLEMS = {
    "missing column": (lambda df: df.drop(columns=["auroc"]), "missing required columns: auroc"),
    "string in an integer column": (_set("shots", "four"), "column shots must hold integers"),
    "NaN metric": (_first("fpr95", np.nan), "column fpr95 has 1 NaN values"),
    "percentages": (lambda df: df.assign(auroc=df["auroc"] * 100), "outside [0, 1]"),
    "duplicate keys": (lambda df: pd.concat([df, df.iloc[[0]]], ignore_index=True), "share the same key"),
    "empty provenance": (_set("weights_sha256", ""), "column weights_sha256 has empty values"),
    "bad JSON": (_set("package_versions", "torch 2"), "column package_versions must hold JSON objects"),
    "unknown suite": (_set("suite", "fmnist-oood"), "unknown suite 'fmnist-oood'"),
    "unknown suite version": (_set("suite_version", 0), "is at version 2, the file has version 0"),
    "OOD sets": (lambda df: df[df["ood_dataset"] != "textiles"], "missing textiles (far)"),
    "wrong group": (_set("ood_group", "middle"), "ood_group must be 'near' or 'far'"),
    "inconsistent run": (lambda df: df.assign(seed=np.arange(len(df)) % 2 + 1), "one run_id must describe one run"),
    "run id that escapes": (_set("run_id", "../../etc/passwd"), "run_id must be 8-64 letters"),
    "zero samples": (_set("n_ood", 0), "column n_ood has values below 1"),
    "naive timestamps": (lambda df: df.assign(created_at=df["created_at"].dt.tz_localize(None)), "UTC timestamps"),
}


@pytest.fixture
def demo_rows(demo_run) -> pd.DataFrame:
    return read_results(demo_run["file"])


def test_the_demo_entry_is_valid(demo_run):
    check = validate_file(demo_run["file"], suites=registered_suites())
    assert check.ok, check.problems
    assert len(check.rows) == check.rows["score"].nunique() * 4  # every score on the suite's four OOD sets


@pytest.mark.parametrize("kind", list(PROBLEMS))
def test_each_problem_is_found_and_named(kind, demo_rows, tmp_path):
    mutate, message = PROBLEMS[kind]
    bad = mutate(demo_rows.copy())
    problems = validate_frame(bad, suites=registered_suites())
    assert any(message in p for p in problems), problems
    path = tmp_path / "bad.parquet"  # the same through a real file (plain pandas: it keeps the wrong types)
    bad.to_parquet(path)
    assert any(message in p for p in validate_file(path, suites=registered_suites()).problems)


def test_a_version_1_file_validates_as_that_version_with_a_note(demo_rows):
    """Files measured before the reference defaults (suite version 1) stay valid and are noted as older."""
    notes: list[str] = []
    assert validate_frame(demo_rows.assign(suite_version=1), suites=registered_suites(), notes=notes) == []
    assert any("version 1 is older than the current version 2" in n for n in notes)


def test_imagenet20_vs_10_version_1_keeps_its_ood_set(demo_rows):
    """Version 1 of imagenet20-vs-10 measured ImageNet-10 val as OOD, version 2 its train split (as MCM)."""
    rows = demo_rows[demo_rows["ood_dataset"] == "fmnist-near4"].assign(
        suite="imagenet20-vs-10", id_dataset="imagenet20-val", ood_dataset="imagenet10-val", ood_group="near"
    )
    suites = registered_suites()
    assert validate_frame(rows.assign(suite_version=1), suites=suites) == []
    assert any(
        "missing imagenet10-train (near)" in p for p in validate_frame(rows.assign(suite_version=2), suites=suites)
    )
    now = rows.assign(suite_version=2, ood_dataset="imagenet10-train")
    assert validate_frame(now, suites=suites) == []


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"not parquet")
    check = validate_file(path)
    assert not check.ok and "not a readable Parquet file" in check.problems[0]


def test_cli_exit_codes_and_report(run_cli, demo_run, demo_rows, tmp_path):
    code, out, _ = run_cli("validate", demo_run["file"])
    assert code == 0 and "1 of 1 file(s) valid" in out
    bad = tmp_path / "bad.parquet"
    demo_rows.assign(fpr95=demo_rows["fpr95"] * 100).to_parquet(bad)
    code, out, _ = run_cli("validate", demo_run["file"], bad)
    assert code == 1
    assert f"invalid {bad}" in out and "metrics are stored as fractions" in out and "1 of 2 file(s) valid" in out
    code, out, _ = run_cli("validate", tmp_path)  # a folder is searched
    assert code == 1 and str(bad) in out
    code, out, _ = run_cli("validate", tmp_path / "missing.parquet")
    assert code == 1 and "does not exist" in out  # a missing file is reported like any other problem


def test_reported_numbers_in_the_repository_are_valid():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "results" / "reported").glob("*.csv"))
    assert files
    for f in files:
        check = validate_reported_file(f, suites=registered_suites())
        assert check.ok, (f, check.problems)
    mcm = validate_reported_file(next(f for f in files if f.name == "mcm_neurips2022.csv")).rows
    far = mcm[(mcm["ood_dataset"] == "*")].iloc[0]
    assert (far["fpr95"], far["auroc"]) == (0.4274, 0.9077)


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "imagenet1k-far,ViT-B-16:openai,zero_shot,mcm,0,far,sun-ood,42.74,0.9,,Paper,Table 1,id_positive\n",
            "outside [0, 1]",
        ),
        (
            "imagenet1k-far,ViT-B-16:openai,zero_shot,mcm,0,far,sun-ood,0.4,0.9,,Paper,Table 1, MCM,id_positive\n",
            "quote fields",
        ),
        (
            "imagenet1k-far,ViT-B-16:openai,zero_shot,mcm,0,far,sun-ood,0.4,,,Paper,Table 1,id_positive\n",
            "column auroc has empty",
        ),
        (
            "imagenet1k-far,ViT-B-16:openai,zero_shot,mcm,0,far,sun,0.4,0.9,,Paper,Table 1,id_positive\n",
            "has no OOD set sun (far)",
        ),
        (
            "imagenet1k-far,ViT-B-16:openai,zero_shot,mcm,0,far,*,0.5,0.9,,Paper,Table 1,id_positive\n",
            "differs from the mean",
        ),
        (
            "imagenet1k-far,ViT-B-16:openai,zero_shot,mcm,0,far,sun-ood,0.4,0.9,,,Table 1,id_positive\n",
            "column citation has empty",
        ),
    ],
)
def test_reported_problems(line, message, tmp_path):
    path = tmp_path / "r.csv"
    good = "imagenet1k-far,ViT-B-16:openai,zero_shot,mcm,0,far,places-ood,0.4,0.9,,Paper,Table 1,id_positive\n"
    path.write_text(REPORTED_HEADER + good + line)
    check = validate_reported_file(path, suites=registered_suites())
    assert any(message in p for p in check.problems), check.problems


def test_cli_validates_reported_csv(run_cli, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(REPORTED_HEADER + 'x,b,m,mcm,0,far,d,0.4,0.9,0.7,"Someone, 2024",Table 2,ood_positive\n')
    code, out, _ = run_cli("validate", path)
    assert code == 0 and "ok" in out
    path.write_text(json.dumps({"not": "csv"}))
    code, out, _ = run_cli("validate", path)
    assert code == 1 and "missing columns" in out
