"""`oodbench leaderboard build`: invalid files skipped and named, escaping, downloads, zero-shot deltas."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import OodbenchError
from benchmark.records import record_name
from benchmark.results import read_results, scores_path
from leaderboard.aggregate import add_zero_shot_deltas, measured_entries
from leaderboard.build import build_site
from tests.records import verification_record

EVIL = "<script>alert(1)</script>"
REPO = Path(__file__).parents[1]


@pytest.fixture
def results(tmp_path, demo_run, make_run) -> Path:
    root = tmp_path / "results"
    (root / "zero_shot").mkdir(parents=True)
    shutil.copy(demo_run["file"], root / "zero_shot" / "demo.parquet")
    shutil.copy(scores_path(demo_run["file"]), scores_path(root / "zero_shot" / "demo.parquet"))
    for seed in (1, 2):
        make_run(root / "coop" / f"k4-s{seed}.parquet", method="coop", shots=4, seed=seed, shift=0.01 * seed)
    make_run(root / "evil.parquet", method=EVIL, shots=1, backbone=EVIL + ":demo")
    (root / "broken.parquet").write_bytes(b"garbage")
    bad = read_results(demo_run["file"]).assign(auroc=95.0, run_id="badbadbadbad")
    bad.to_parquet(root / "percent.parquet")
    shutil.copytree(REPO / "results" / "reported", root / "reported")
    return root


def _suite_page(site: Path) -> str:
    return next(site.glob("suite-fmnist-ood-*.html")).read_text()


def test_build_skips_invalid_files_and_names_them(results, tmp_path, run_cli):
    code, out, err = run_cli("leaderboard", "build", "--results", results, "--out", tmp_path / "site")
    assert code == 0, err
    assert "skipped broken.parquet" in err and "skipped percent.parquet" in err and "outside [0, 1]" in err
    assert "2 file(s) skipped" in out
    index = (tmp_path / "site" / "index.html").read_text()
    assert "broken.parquet" in index and "percent.parquet" in index and "not a readable Parquet file" in index
    page = _suite_page(tmp_path / "site")
    assert page.count('class="entry measured"') == 3 * read_results(results / "evil.parquet")["score"].nunique()


def test_every_string_from_an_entry_is_escaped(results, tmp_path):
    build_site(results_dir=results, out=tmp_path / "site")
    pages = {p.name: p.read_text() for p in (tmp_path / "site").glob("*.html")}
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert escaped in pages[next(n for n in pages if n.startswith("suite-fmnist"))]
    assert any(escaped in text for name, text in pages.items() if name.startswith("entry-"))
    for name, text in pages.items():
        assert EVIL not in text, name
        assert len(re.findall(r"<script\b", text)) == 1, name  # only the site's own static/site.js
        assert '<script src="static/site.js"></script>' in text
        assert not re.search(r'(src|href)="(https?:)?//', text), name  # nothing leaves the site


def test_downloads_hold_the_merged_valid_rows(results, tmp_path):
    report = build_site(results_dir=results, out=tmp_path / "site")
    merged = pd.read_parquet(tmp_path / "site" / "downloads" / "oodbench-results.parquet")
    valid = [
        results / "zero_shot" / "demo.parquet",
        results / "coop" / "k4-s1.parquet",
        results / "coop" / "k4-s2.parquet",
        results / "evil.parquet",
    ]
    assert len(merged) == report.n_rows == sum(len(read_results(p)) for p in valid)
    assert merged["auroc"].between(0, 1).all()  # raw fractions, not formatted
    csv = pd.read_csv(tmp_path / "site" / "downloads" / "oodbench-results.csv")
    assert len(csv) == len(merged) and set(csv["source_file"]) == {
        "zero_shot/demo.parquet",
        "coop/k4-s1.parquet",
        "coop/k4-s2.parquet",
        "evil.parquet",
    }
    reported = pd.read_csv(tmp_path / "site" / "downloads" / "reported.csv")
    assert reported["citation"].str.contains("Ming et al.").any()
    imagenet = next((tmp_path / "site").glob("suite-imagenet1k-far-*.html")).read_text()
    assert 'class="badge reported"' in imagenet and "42.7" in imagenet and "90.8" in imagenet


def _hand_rows() -> pd.DataFrame:
    """zero-shot (1 seed) and a fine-tuned method (2 seeds) on one near and one far set, by hand."""
    base = {
        "suite": "s",
        "suite_version": 1,
        "schema_version": 2,
        "backbone": "b",
        "config_hash": "h",
        "score": "mcm",
        "score_config": '{"T":1.0}',
        "id_dataset": "id",
        "id_acc": 0.5,
    }
    rows = []
    for method, shots, seed, near, far, acc in (
        ("zero_shot", 0, 1, (0.40, 0.80), (0.20, 0.90), 0.70),
        ("coop", 4, 1, (0.30, 0.85), (0.30, 0.86), 0.80),
        ("coop", 4, 2, (0.20, 0.87), (0.40, 0.84), 0.90),
    ):
        run = f"{method}{seed}".ljust(8, "x")
        for group, (fpr, auroc) in (("near", near), ("far", far)):
            rows.append(
                {
                    **base,
                    "method": method,
                    "shots": shots,
                    "seed": seed,
                    "run_id": run,
                    "ood_group": group,
                    "ood_dataset": group + "-set",
                    "fpr95": fpr,
                    "auroc": auroc,
                    "id_acc": acc,
                }
            )
    return pd.DataFrame(rows)


def test_zero_shot_deltas_on_hand_made_rows():
    entries = add_zero_shot_deltas(measured_entries(_hand_rows(), verification={}))
    coop = entries[entries["method"] == "coop"].iloc[0]
    zs = entries[entries["method"] == "zero_shot"].iloc[0]
    assert coop["n_seeds"] == 2 and coop["near_fpr95"] == pytest.approx(0.25)
    assert coop["near_fpr95_std"] == pytest.approx(0.05)  # population std over seeds
    assert np.isnan(zs["near_fpr95_std"])  # one seed: no spread to show
    expected = {
        "near_fpr95": 0.25 - 0.40,
        "near_auroc": 0.86 - 0.80,
        "far_fpr95": 0.35 - 0.20,
        "far_auroc": 0.85 - 0.90,
        "id_acc": 0.85 - 0.70,
    }
    for c, d in expected.items():
        assert coop[f"delta_{c}"] == pytest.approx(d), c
    assert coop["baseline_id"] == zs["entry_id"]
    assert np.isnan(zs["delta_far_auroc"])  # zero-shot itself has no delta


def test_deltas_are_shown_in_points_with_better_and_worse_marked(results, tmp_path):
    build_site(results_dir=results, out=tmp_path / "site")
    page = _suite_page(tmp_path / "site")
    # coop's synthetic runs add 1 and 2 points to FPR95 (mean +1.5, minus clipping) and remove them from AUROC
    assert re.search(r'class="delta bad"[^>]*>\(\+1\.5\)', page)
    assert re.search(r'class="delta bad"[^>]*>\(-1\.5\)', page)


def test_verified_runs_are_marked_and_stale_records_are_not(results, tmp_path):
    target = results / "coop" / "k4-s1.parquet"
    run_id = read_results(target)["run_id"].iloc[0]
    record = verification_record(target, compared=140)
    (results / "verifications").mkdir()
    name = record_name(entry_sha256=record["entry_sha256"], run_id=run_id)
    (results / "verifications" / name).write_text(json.dumps(record))
    (results / "verifications" / "junk.json").write_text("{")
    build_site(results_dir=results, out=tmp_path / "site")
    page = _suite_page(tmp_path / "site")
    assert "verified</span>" not in page  # an unsigned record earns no mark (tests/test_board_verification.py)
    index = (tmp_path / "site" / "index.html").read_text()
    assert "verifications/junk.json" in index and f"verifications/{name}" in index and "unsigned" in index
    record["entry_sha256"] = "0" * 64  # the record checked another version of the file
    (results / "verifications" / record_name(entry_sha256=record["entry_sha256"], run_id=run_id)).write_text(
        json.dumps(record)
    )
    build_site(results_dir=results, out=tmp_path / "site")
    assert "verified</span>" not in _suite_page(tmp_path / "site")


def test_build_replaces_only_its_own_site(results, tmp_path):
    build_site(results_dir=results, out=tmp_path / "site")
    build_site(results_dir=results, out=tmp_path / "site")  # a rebuild replaces the earlier build
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site")]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(OodbenchError, match="not an oodbench site"):
        build_site(results_dir=results, out=mine)
    assert (mine / "notes.txt").read_text() == "precious"
    with pytest.raises(OodbenchError, match="does not exist"):
        build_site(results_dir=tmp_path / "nope", out=tmp_path / "site2")
