"""`oodbench rescore`: every metric and interval recomputed from the per-sample scores, differences reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.hashing import sha256_file
from benchmark.rescore import CHECKED, DIFFERENT, NOT_CHECKED, UNREADABLE, rescore_file
from benchmark.results import read_results, read_scores, scores_path, write_results, write_scores

REPO = Path(__file__).parents[1]


def _copy_run(src: Path, dst: Path, *, rows: pd.DataFrame | None = None) -> Path:
    """The run at `src` (or `rows` of it) as `dst`, with its sidecar beside it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(scores_path(src), scores_path(dst))
    if rows is None:
        shutil.copy(src, dst)
    else:
        write_results(rows, dst)
    return dst


def test_a_demo_run_rescored_gives_every_value_back(demo_run, run_cli):
    code, out, err = run_cli("rescore", demo_run["file"])
    assert code == 0, out + err
    rows = read_results(demo_run["file"])
    assert f"ok           {demo_run['file']}: {len(rows)} rows" in out
    outcome = rescore_file(demo_run["file"])
    assert outcome.status == CHECKED and outcome.differences == []
    # every metric, count and both bounds of every interval were compared
    assert outcome.values == len(rows) * (6 + 2 + 12)


def test_a_tampered_row_is_reported_and_the_file_is_left_alone(demo_run, run_cli, tmp_path):
    rows = read_results(demo_run["file"])
    mcm = rows[rows["score"] == "mcm"].reset_index(drop=True)  # one score keeps the test fast
    tampered = mcm.copy()
    tampered.loc[1, "auroc"] += 0.01
    tampered.loc[2, "fpr95_ood_positive_high"] = min(1.0, tampered.loc[2, "fpr95_ood_positive_high"] + 1e-6)
    path = _copy_run(demo_run["file"], tmp_path / "results" / "tampered.parquet", rows=tampered)
    clean = _copy_run(demo_run["file"], tmp_path / "results" / "clean.parquet", rows=mcm)
    before = sha256_file(path)

    code, out, _ = run_cli("rescore", tmp_path / "results")
    assert code == 1
    assert f"ok           {clean}" in out
    assert f"different    {path}: 2 of {4 * 20} values differ" in out
    assert f"mcm {mcm.loc[1, 'score_config']} / {mcm.loc[1, 'ood_dataset']}, auroc: stored" in out
    assert f"/ {mcm.loc[2, 'ood_dataset']}, fpr95_ood_positive_high: stored" in out
    assert sha256_file(path) == before  # never rewritten

    outcome = rescore_file(path)
    assert outcome.status == DIFFERENT
    (d1, d2) = outcome.differences
    assert (d1.column, d1.ood_dataset) == ("auroc", mcm.loc[1, "ood_dataset"])
    assert np.isclose(d1.stored - d1.recomputed, 0.01) and d1.recomputed == mcm.loc[1, "auroc"]
    assert d2.column == "fpr95_ood_positive_high" and 0 < d2.abs_diff <= 1e-6


def test_changed_scores_behind_an_updated_hash_are_found(demo_run, tmp_path):
    """Someone edits the per-sample scores and writes their new sha256 into the rows: the rows no longer follow."""
    rows = read_results(demo_run["file"])
    rows = rows[rows["score"].isin(["mcm", "msp"])].reset_index(drop=True)
    scores = read_scores(scores_path(demo_run["file"]))
    column = next(c for c in scores.columns if c.startswith("mcm "))
    ood = scores["label"] == -1
    scores.loc[ood, column] = scores.loc[ood, column] * np.float32(0.5)  # OOD looks less ID: better AUROC
    folder = tmp_path / "edited"
    folder.mkdir()
    side = write_scores(scores, folder / "run.scores.parquet")
    write_results(rows.assign(scores_sha256=sha256_file(side)), folder / "run.parquet")

    outcome = rescore_file(folder / "run.parquet")
    assert outcome.status == DIFFERENT
    assert {d.score for d in outcome.differences} == {"mcm"}  # msp's column is untouched
    assert {d.ood_dataset for d in outcome.differences if d.column == "auroc"} == set(rows["ood_dataset"])
    assert not any(d.column in ("id_acc", "n_id", "n_ood") for d in outcome.differences)


def test_files_without_per_sample_scores_are_not_checked(demo_run, make_run, run_cli, tmp_path):
    synthetic = make_run(tmp_path / "r" / "synthetic.parquet")  # schema 2, run with --no-save-scores
    old = REPO / "tests" / "data" / "schema1" / "zero_shot.parquet"  # a file of result schema 1
    assert rescore_file(synthetic).status == NOT_CHECKED
    assert rescore_file(old).status == NOT_CHECKED
    code, out, _ = run_cli("rescore", synthetic, old)
    assert code == 0
    assert out.count("no per-sample scores, not checked") == 2
    assert "0 file(s) recomputed, 0 with differences or unreadable scores, 2 without per-sample scores" in out


def test_a_missing_or_replaced_sidecar_cannot_be_checked(demo_run, run_cli, tmp_path):
    path = _copy_run(demo_run["file"], tmp_path / "a.parquet")
    scores_path(path).write_bytes(b"other bytes")
    outcome = rescore_file(path)
    assert outcome.status == UNREADABLE and "does not match scores_sha256" in outcome.reason
    scores_path(path).unlink()
    code, out, _ = run_cli("rescore", path)
    assert code == 1 and "cannot check" in out and "is missing beside the result file" in out
    code, out, err = run_cli("rescore", tmp_path / "nothing-here.parquet")
    assert code == 2 and "does not exist" in err
