"""The site build at scale (issue 12): parsed files cached by sha256 give exactly what parsing gives, a changed
or new file is parsed again, a damaged cache is ignored; the benchmark's synthetic files are valid."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark.results import read_results, result_files, scores_path, validate_files, write_results
from leaderboard.collect import collect
from leaderboard.parsed_cache import CACHE_NAME

REPO = Path(__file__).parents[1]


@pytest.fixture
def results(tmp_path, demo_run, make_run) -> Path:
    root = tmp_path / "results"
    (root / "zero_shot").mkdir(parents=True)
    shutil.copy(demo_run["file"], root / "zero_shot" / "demo.parquet")
    shutil.copy(scores_path(demo_run["file"]), scores_path(root / "zero_shot" / "demo.parquet"))
    for seed in (1, 2, 3):
        make_run(root / "coop" / f"k4-s{seed}.parquet", method="coop", shots=4, seed=seed, shift=0.01 * seed)
    (root / "junk.parquet").write_bytes(b"not parquet")
    return root


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["run_id", "score", "score_config", "ood_dataset"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[sorted(a.columns)], b[sorted(b.columns)])


def test_a_warm_build_reads_the_same_rows_and_problems_as_a_cold_one(results, tmp_path, make_run):
    cache = tmp_path / "cache"
    cold = collect(results)
    first = collect(results, cache_dir=cache)
    assert first.cache_hits == 0 and (cache / CACHE_NAME).exists()
    warm = collect(results, cache_dir=cache)
    assert warm.cache_hits == 5  # every file, the unreadable one included
    for other in (first, warm):
        _same(cold.rows, other.rows)
        assert [(s.path, s.reasons) for s in cold.skipped] == [(s.path, s.reasons) for s in other.skipped]
    # a changed file and a new one are parsed again; a removed one is gone
    changed = read_results(results / "coop" / "k4-s2.parquet")
    (results / "coop" / "k4-s2.parquet").unlink()
    write_results(changed.assign(auroc=changed["auroc"] * 0.5), results / "coop" / "k4-s2.parquet")
    make_run(results / "coop" / "k4-s4.parquet", method="coop", shots=4, seed=4)
    (results / "coop" / "k4-s3.parquet").unlink()
    again = collect(results, cache_dir=cache)
    assert again.cache_hits == 3  # demo, k4-s1, junk
    _same(collect(results).rows, again.rows)
    s2 = again.rows[again.rows["source_file"] == "coop/k4-s2.parquet"]
    assert (s2["auroc"].to_numpy() == changed["auroc"].to_numpy() * 0.5).all()
    assert collect(results, cache_dir=cache).cache_hits == 5


def test_a_damaged_cache_is_ignored_and_rewritten(results, tmp_path):
    cache = tmp_path / "cache"
    collect(results, cache_dir=cache)
    (cache / CACHE_NAME).write_bytes(b"garbage")
    inputs = collect(results, cache_dir=cache)
    assert inputs.cache_hits == 0 and len(inputs.rows) == len(collect(results).rows)
    assert collect(results, cache_dir=cache).cache_hits == 5


def test_the_benchmarks_synthetic_files_are_valid_and_distinct(tmp_path):
    from benchmarks.site_build import synthesise

    folder = synthesise(tmp_path / "x2", 2)
    files = sorted(p for p in folder.rglob("*.parquet"))
    entries = [p for p in result_files(REPO / "results") if "reported" not in p.parts]  # sidecars are not entries
    assert len(files) == 2 * len(entries)
    batch = validate_files(files)
    assert all(c.ok for c in batch.checks), [c.problems for c in batch.checks if not c.ok][:2]
