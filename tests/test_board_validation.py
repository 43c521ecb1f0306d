"""Validation against hostile result files (issue 14 items 6, 7, 9): mixed-type extra columns, invalid UTF-8,
unbounded strings, unknown scores, too many rows, a config edited behind its hash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark.results import (
    MAX_JSON_CHARS,
    MAX_RUNS_PER_FILE,
    MAX_SCORE_VARIANTS,
    MAX_TEXT_CHARS,
    KnownScores,
    max_rows_per_file,
    read_results,
    registered_scores,
    registered_suites,
    scores_path,
    to_table,
    validate_file,
    validate_files,
    validate_frame,
    write_results,
)
from leaderboard.build import build_site
from methods.base import config_hash
from methods.scores import SCORES, Score


@pytest.fixture
def demo_rows(demo_run):
    return read_results(demo_run["file"]).assign(scores_sha256="")


def _problems(rows, **kw) -> list[str]:
    return validate_frame(rows, suites=registered_suites(), scores=registered_scores(), **kw)


def _with_invalid_utf8(table: pa.Table, column: str) -> pa.Table:
    """`table` with the first value of a text column replaced by bytes that are not UTF-8 (Arrow does not check)."""
    values = [v.encode() for v in table.column(column).to_pylist()]
    values[0] = b"coop\xff\xfe"
    raw = pa.array(values, type=pa.binary())
    bad = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    return table.set_column(table.schema.get_field_index(column), column, bad)


# ---------------------------------------------------------------- item 6


def test_an_extra_column_int_here_string_there_is_reported_and_skipped(demo_run, demo_rows, tmp_path, run_cli):
    root = tmp_path / "results"
    write_results(demo_rows.assign(note=1), root / "a.parquet")
    write_results(demo_rows.assign(note="one", run_id="f" * 32, seed=2), root / "b.parquet")
    code, out, _ = run_cli("validate", root)
    assert code == 1 and out.count("columns not in result schema version 2: 'note'") == 2
    shutil.copy(demo_run["file"], root / "good.parquet")
    shutil.copy(scores_path(demo_run["file"]), scores_path(root / "good.parquet"))
    report = build_site(results_dir=root, out=tmp_path / "site")  # no crash
    assert {s.path for s in report.skipped} == {"a.parquet", "b.parquet"}
    assert report.n_rows == len(demo_rows)


def test_invalid_utf8_is_reported_by_validate_show_and_the_build(demo_run, demo_rows, tmp_path, run_cli):
    root = tmp_path / "results"
    root.mkdir()
    path = root / "bad.parquet"
    pq.write_table(_with_invalid_utf8(to_table(demo_rows), "method"), path)
    check = validate_file(path)
    assert check.problems == ["column method holds bytes that are not valid UTF-8 text; text columns must be UTF-8"]
    code, out, _ = run_cli("validate", path)
    assert code == 1 and "column method holds bytes that are not valid UTF-8" in out
    code, out, err = run_cli("show", path)
    assert code == 2 and "column method holds bytes that are not valid UTF-8" in err and "Traceback" not in err
    report = build_site(results_dir=root, out=tmp_path / "site")
    assert [s.path for s in report.skipped] == ["bad.parquet"] and report.n_rows == 0


def test_a_column_of_mixed_types_in_one_frame_is_named(demo_rows):
    rows = demo_rows.copy()
    rows["seed"] = rows["seed"].astype(object)
    rows.loc[0, "seed"] = "one"
    assert "column seed holds values of more than one type" in _problems(rows)


# ---------------------------------------------------------------- item 7


def test_strings_longer_than_the_bounds_are_problems(demo_rows):
    long_name = "m" * (MAX_TEXT_CHARS + 1)
    problems = _problems(demo_rows.assign(backbone=long_name))
    assert any(f"column backbone has {len(demo_rows)} values longer than {MAX_TEXT_CHARS}" in p for p in problems)
    config = json.dumps({"pad": "x" * MAX_JSON_CHARS})
    rows = demo_rows.assign(method_config=config, config_hash=config_hash("zero_shot", config))
    assert any(
        f"column method_config has {len(rows)} values longer than {MAX_JSON_CHARS}" in p for p in _problems(rows)
    )
    ok = "m" * MAX_TEXT_CHARS  # exactly at the bound is fine
    assert not any("longer than" in p for p in _problems(demo_rows.assign(backbone=ok)))


def test_two_megabyte_strings_do_not_reach_the_site(demo_run, demo_rows, tmp_path):
    root = tmp_path / "results"
    write_results(demo_rows.assign(device="x" * 2_000_000), root / "huge.parquet")
    report = build_site(results_dir=root, out=tmp_path / "site")
    assert report.skipped[0].path == "huge.parquet" and "longer than 256" in report.skipped[0].reasons[0]
    size = sum(p.stat().st_size for p in (tmp_path / "site").rglob("*") if p.is_file())
    assert size < 2_000_000


def test_unknown_score_names_are_one_problem_per_file(demo_rows):
    rows = demo_rows.assign(score="not_a_score")
    problems = _problems(rows)
    assert any("1 unknown score name(s): 'not_a_score'" in p and "mcm" in p for p in problems), problems
    many = demo_rows.loc[np.repeat(demo_rows.index, 50)].reset_index(drop=True)
    many["score"] = [f"s{i}" for i in range(len(many))]
    problems = _problems(many)
    unknown = [p for p in problems if "unknown score name(s)" in p]
    assert len(unknown) == 1 and f"{len(many)} unknown score name(s)" in unknown[0] and "more" in unknown[0]
    assert len(unknown[0]) < 1000


def test_a_score_registered_by_a_plugin_is_known(demo_rows, monkeypatch):
    rows = demo_rows[demo_rows["score"] == "mcm"].assign(score="plugin_score")
    assert any("unknown score" in p for p in _problems(rows))

    class EntryPoint:  # an installed plugin: loading it registers its score
        name, value = "myplugin", "myplugin:register"

        def load(self):
            SCORES.add("plugin_score", Score(name="plugin_score", fn=lambda inputs: inputs.logits.max(1)))

    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [EntryPoint()] if group else [])
    try:
        known = KnownScores()
        assert "plugin_score" not in known.builtin  # plugins are imported only when a file needs them
        assert known.unknown(["mcm", "plugin_score"]) == set()
        assert not any("unknown score" in p for p in _problems(rows))
    finally:
        SCORES._items.pop("plugin_score", None)  # noqa: SLF001 - undo the test's registration


def test_too_many_rows_runs_and_score_variants_are_bounded(demo_rows, tmp_path):
    limit = max_rows_per_file(registered_suites())
    assert limit == MAX_RUNS_PER_FILE * MAX_SCORE_VARIANTS * 4  # the registered suites have at most 4 OOD sets
    table = to_table(demo_rows)
    big = pa.concat_tables([table] * (limit // len(demo_rows) + 1))
    path = tmp_path / "big.parquet"
    pq.write_table(big, path)
    problems = validate_file(path).problems
    assert problems and f"a result file holds at most {limit}" in problems[0]
    runs = demo_rows.loc[np.repeat(demo_rows.index, MAX_RUNS_PER_FILE + 1)].reset_index(drop=True)
    runs["run_id"] = [f"run{i // len(demo_rows):08d}" for i in range(len(runs))]
    runs["seed"] = [i // len(demo_rows) for i in range(len(runs))]
    assert any(f"holds {MAX_RUNS_PER_FILE + 1} runs; at most {MAX_RUNS_PER_FILE}" in p for p in _problems(runs))
    one = demo_rows[demo_rows["score"] == "energy"]
    variants = one.loc[np.repeat(one.index, MAX_SCORE_VARIANTS + 1)].reset_index(drop=True)
    variants["score_config"] = [json.dumps({"T": 1.0 + i // len(one)}) for i in range(len(variants))]
    problems = _problems(variants)
    assert any(f"{MAX_SCORE_VARIANTS + 1} score variants; at most {MAX_SCORE_VARIANTS}" in p for p in problems)


# ---------------------------------------------------------------- item 9


def test_a_config_edited_behind_its_hash_is_a_problem(demo_rows):
    assert _problems(demo_rows) == []
    edited = json.loads(demo_rows["method_config"].iloc[0]) | {"edited": True}
    rows = demo_rows.assign(method_config=json.dumps(edited, sort_keys=True, separators=(",", ":")))
    problems = _problems(rows)
    assert any("config_hash" in p and "does not match method and method_config" in p for p in problems), problems
    renamed = demo_rows.assign(method="coop")  # another method behind zero-shot's hash
    assert any("does not match method and method_config" in p for p in _problems(renamed))


# ---------------------------------------------------------------- many files at once


def test_validating_many_files_at_once_names_each_files_own_problems(demo_rows, tmp_path):
    paths = []
    for i, change in enumerate([{}, {"auroc": 95.0}, {"ood_group": "middle"}, {}, {"n_ood": 0}]):
        rows = demo_rows.assign(run_id=f"run{i:08d}", seed=i + 1, **change)
        paths.append(write_results(rows, tmp_path / f"f{i}.parquet"))
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    paths.append(tmp_path / "junk.parquet")
    batch = validate_files(paths, suites=registered_suites(), scores=registered_scores())
    one_by_one = [validate_file(p, suites=registered_suites(), scores=registered_scores()) for p in paths]
    assert [c.problems for c in batch.checks] == [c.problems for c in one_by_one]
    assert [c.ok for c in batch.checks] == [True, False, False, True, False, False]
    assert "outside [0, 1]" in batch.checks[1].problems[0] and "middle" in batch.checks[2].problems[0]
    assert sorted(batch.valid_rows()["run_id"].unique()) == ["run00000000", "run00000003"]
    assert [c.sha256 is not None for c in batch.checks] == [True] * 6
