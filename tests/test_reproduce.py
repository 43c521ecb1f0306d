"""`oodbench reproduce`: a demo zero-shot entry verifies; a tampered metric fails with a clear report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.config import Execution
from benchmark.errors import OodbenchError
from benchmark.hashing import sha256_file
from benchmark.records import read_verifications, record_name, validate_record
from benchmark.reproduce import reproduce_file
from benchmark.results import read_results, write_results


def test_a_demo_entry_reproduces_and_its_record_is_written(demo_run, tmp_path, run_cli):
    records = tmp_path / "verifications"
    code, out, err = run_cli(
        "reproduce",
        demo_run["file"],
        "--cache-dir",
        demo_run["cache_dir"],
        "--record-dir",
        records,
        "--device",
        "cpu",
        "--no-progress",
    )
    assert code == 0, out + err
    run_id = read_results(demo_run["file"])["run_id"].iloc[0]
    assert f"verified run {run_id}" in out
    record = json.loads((records / record_name(entry_sha256=sha256_file(demo_run["file"]), run_id=run_id)).read_text())
    assert validate_record(record) == []
    assert record["status"] == "verified" and record["mismatches"] == []
    assert record["entry_sha256"] == sha256_file(demo_run["file"])
    assert record["compared"] == len(read_results(demo_run["file"])) * 8  # 6 metrics and 2 counts per row
    assert record["max_abs_diff"] <= record["tolerance"] == 0.005
    assert [r.record["run_id"] for r in read_verifications(records)[0]] == [run_id]
    assert not [p for p in records.iterdir() if p.name.startswith(".")]  # atomic write left no temporary file


def test_a_tampered_metric_fails_with_a_clear_report(demo_run, tmp_path, run_cli):
    rows = read_results(demo_run["file"])
    row = rows.index[(rows["score"] == "mcm") & (rows["ood_dataset"] == "textiles")][0]
    rows.loc[row, "auroc"] = rows.loc[row, "auroc"] - 0.05  # a submission claiming 5 points it did not measure
    rows["scores_sha256"] = ""  # submitted without its per-sample scores
    tampered = write_results(rows, tmp_path / "tampered.parquet")
    records = tmp_path / "verifications"
    code, out, _ = run_cli(
        "reproduce",
        tampered,
        "--cache-dir",
        demo_run["cache_dir"],
        "--record-dir",
        records,
        "--device",
        "cpu",
        "--no-progress",
    )
    assert code == 1
    assert "mismatch" in out and "1 of" in out and "mcm / textiles auroc" in out and "(difference 0.0500)" in out
    name = record_name(entry_sha256=sha256_file(tampered), run_id=rows["run_id"].iloc[0])  # keyed by the file's sha256
    record = json.loads((records / name).read_text())
    assert record["status"] == "mismatch" and validate_record(record) == []
    [m] = record["mismatches"]
    assert (m["score"], m["ood_dataset"], m["metric"]) == ("mcm", "textiles", "auroc")
    assert m["abs_diff"] == pytest.approx(0.05, abs=1e-4)


def test_provenance_differences_are_warnings_and_tolerance_is_checked(demo_run, tmp_path):
    rows = read_results(demo_run["file"])
    rows["oodbench_version"] = "0.0.1"
    rows["weights_sha256"] = "0" * 64
    rows["scores_sha256"] = ""
    old = write_results(rows, tmp_path / "old.parquet")
    exe = Execution(device="cpu", cache_dir=demo_run["cache_dir"])
    [outcome] = reproduce_file(old, execution=exe, record_dir=tmp_path / "v", tolerance=0.001)
    assert outcome.verified
    assert any("oodbench_version differs" in w for w in outcome.warnings)
    assert any("weights_sha256 differs" in w for w in outcome.warnings)
    with pytest.raises(OodbenchError, match="--tolerance 5"):
        reproduce_file(old, execution=exe, tolerance=5, record_dir=tmp_path / "v")


def test_an_invalid_entry_is_not_reproduced(demo_run, tmp_path):
    rows = read_results(demo_run["file"])
    rows["suite_version"] = 99
    rows["scores_sha256"] = ""
    bad = write_results(rows, tmp_path / "bad.parquet")
    with pytest.raises(OodbenchError, match="not a valid result file.*version 99"):
        reproduce_file(bad, execution=Execution(cache_dir=demo_run["cache_dir"]), record_dir=tmp_path / "v")
    assert not (tmp_path / "v").exists()


def test_records_are_validated(tmp_path):
    assert "field 'status' must be a str" in validate_record({})
    assert validate_record([]) == ["a verification record must be a JSON object"]
    (tmp_path / "abcdefgh.json").write_text(json.dumps({"format": "oodbench-verification/1"}))
    records, bad = read_verifications(tmp_path)
    assert records == [] and bad and bad[0][0].name == "abcdefgh.json"


def test_an_entry_scored_by_a_method_registered_score_gives_its_run_key_in_a_fresh_process():
    """`oodbench reproduce` on a NegLabel entry: its rows name the `neglabel` score, which the neglabel module
    registers, so building the run key must load the methods first (in a fresh process nothing has)."""
    import subprocess
    import sys

    entry = next((Path(__file__).parents[1] / "results" / "neglabel").glob("*[0-9a-f].parquet"))
    code = (
        "import sys; from benchmark.reproduce import run_key_from_rows; from benchmark.results import read_results; "
        "print(run_key_from_rows(read_results(sys.argv[1])).scores)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(entry)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "neglabel" in out.stdout and "mcm" in out.stdout


def test_the_optional_weights_field_of_a_record_is_validated(demo_run):
    """How an encoder-tuning entry's weights were checked is optional; when present it is an object whose mode
    is shipped, refit or none."""
    from tests.records import verification_record

    record = verification_record(demo_run["file"])
    assert validate_record(record) == []
    assert validate_record(record | {"weights": {"mode": "refit"}}) == []
    assert "field 'weights' must be a dict" in validate_record(record | {"weights": "shipped"})
    assert any("weights.mode" in p for p in validate_record(record | {"weights": {"mode": "guessed"}}))
    assert any("unknown fields 'extra'" in p for p in validate_record(record | {"extra": 1}))
