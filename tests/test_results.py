"""Result files: the schema follows the documented columns, atomic writes, never overwriting, old schema
versions, and the per-sample scores sidecar."""

from __future__ import annotations

import json
import os

import pandas as pd
import pyarrow as pa
import pytest

from benchmark.errors import OodbenchError
from benchmark.results import (
    COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    read_results,
    required,
    result_files,
    run_stem,
    scores_path,
    validate_file,
    validate_frame,
    write_results,
)
from methods.base import config_hash

# The columns the project's design promises every row, with the types a reader relies on (written out here on
# purpose: the schema is derived from ResultRow, so this is what would catch a column dropped or retyped).
DOCUMENTED = {
    "suite": pa.string(),
    "suite_version": pa.int64(),
    "backbone": pa.string(),
    "method": pa.string(),
    "method_config": pa.string(),
    "config_hash": pa.string(),
    "score": pa.string(),
    "shots": pa.int64(),
    "seed": pa.int64(),
    "id_dataset": pa.string(),
    "ood_dataset": pa.string(),
    "ood_group": pa.string(),
    "fpr95": pa.float64(),
    "auroc": pa.float64(),
    "aupr_in": pa.float64(),
    "aupr_out": pa.float64(),
    "id_acc": pa.float64(),
    "n_id": pa.int64(),
    "n_ood": pa.int64(),
    "run_id": pa.string(),
    "created_at": pa.timestamp("us", tz="UTC"),
    "oodbench_version": pa.string(),
    "git_commit": pa.string(),
    "package_versions": pa.string(),
    "device": pa.string(),
    "weights_sha256": pa.string(),
    "fewshot_hash": pa.string(),
    "dataset_hashes": pa.string(),
    # the columns the design lists as being added
    "score_config": pa.string(),
    "fpr95_ood_positive": pa.float64(),
    "auroc_low": pa.float64(),
    "auroc_high": pa.float64(),
    "fpr95_low": pa.float64(),
    "fpr95_high": pa.float64(),
    "scores_sha256": pa.string(),
    "protocol": pa.string(),
    "fit_seconds": pa.float64(),
    "predict_seconds": pa.float64(),
    "peak_memory_mb": pa.float64(),
}
V1_ONLY = set(DOCUMENTED) - {
    "score_config",
    "fpr95_ood_positive",
    "auroc_low",
    "auroc_high",
    "fpr95_low",
    "fpr95_high",
    "scores_sha256",
    "protocol",
    "fit_seconds",
    "predict_seconds",
    "peak_memory_mb",
}


def make_rows(n: int = 2, **over) -> pd.DataFrame:
    base = {
        "suite": "fmnist-ood",
        "suite_version": 1,
        "backbone": "b:t",
        "method": "zero_shot",
        "method_config": "{}",
        "config_hash": config_hash("zero_shot", "{}"),
        "score": "mcm",
        "score_config": '{"T":1.0}',
        "shots": 0,
        "seed": 1,
        "id_dataset": "fmnist-id6-test",
        "ood_group": "far",
        "fpr95": 0.5,
        "fpr95_ood_positive": 0.4,
        "auroc": 0.9,
        "aupr_in": 0.8,
        "aupr_out": 0.7,
        "id_acc": 0.95,
        "n_id": 10,
        "n_ood": 5,
        "protocol": "zero-shot",
        "uses_extra_data": False,
        "uses_language_model": False,
        "stream_seed": 1,
        "stream_batch_size": 256,
        "run_id": "r" * 32,
        "created_at": pd.Timestamp("2026-01-01", tz="UTC"),
        "oodbench_version": "0.1.0",
        "git_commit": "",
        "package_versions": json.dumps({"torch": "2"}),
        "device": "cpu",
        "precision": "fp32",
        "weights_sha256": "c" * 64,
        "tuned_weights_sha256": "",
        "fewshot_hash": "",
        "dataset_hashes": json.dumps({"a": "b"}),
        "scores_sha256": "",
        "schema_version": SCHEMA_VERSION,
        "fit_seconds": 0.0,
        "predict_seconds": 1.5,
        "peak_memory_mb": 100.0,
    }
    for c in COLUMNS:
        if c.endswith(("_low", "_high")):
            base[c] = float("nan")
    base.update(over)
    return pd.DataFrame([{**base, "ood_dataset": f"ood{i}"} for i in range(n)])


def test_schema_has_every_documented_column_with_its_type():
    for name, kind in DOCUMENTED.items():
        assert name in SCHEMA.names, name
        assert SCHEMA.field(name).type == kind, name


def test_version_1_files_need_only_the_version_1_columns():
    assert set(required(1)) >= V1_ONLY
    assert not {"score_config", "fpr95_ood_positive", "scores_sha256", "protocol"} & set(required(1))
    assert set(required(SCHEMA_VERSION)) == set(SCHEMA.names)


def test_roundtrip_keeps_types(tmp_path):
    path = write_results(make_rows(), tmp_path / "run.parquet")
    back = read_results(path)
    assert list(back.columns)[: len(SCHEMA.names)] == SCHEMA.names
    assert str(back["created_at"].dt.tz) == "UTC"
    assert back["uses_extra_data"].dtype == bool
    assert validate_frame(back) == []
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_version_1_file_validates_and_a_version_2_file_missing_a_new_column_does_not():
    old = make_rows().drop(columns=[c for c in SCHEMA.names if c not in required(1)])
    assert validate_frame(old) == []
    new = make_rows().drop(columns=["protocol"])
    assert any("missing required columns: protocol" in p for p in validate_frame(new))
    future = make_rows(schema_version=SCHEMA_VERSION + 1)
    assert any("newer oodbench" in p for p in validate_frame(future))


def test_interval_problems_are_found():
    rows = make_rows(auroc_low=0.95, auroc_high=0.85)
    assert any("auroc_low is above auroc_high" in p for p in validate_frame(rows))
    rows = make_rows(auroc_low=0.85)
    assert any("bound without the other" in p for p in validate_frame(rows))
    assert validate_frame(make_rows(auroc_low=0.85, auroc_high=0.95)) == []


def test_bad_protocol_and_cost_are_found():
    assert any("protocol must be one of" in p for p in validate_frame(make_rows(protocol="few_shot")))
    assert any("fit_seconds must hold finite values" in p for p in validate_frame(make_rows(fit_seconds=-1.0)))


def test_never_overwrites(tmp_path):
    path = write_results(make_rows(), tmp_path / "run.parquet")
    before = path.read_bytes()
    with pytest.raises(OodbenchError, match="never overwritten"):
        write_results(make_rows(3), path)
    assert path.read_bytes() == before


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OodbenchError, match="Cannot write results"):
        write_results(make_rows(), blocker / "sub" / "run.parquet")


def test_run_stem_is_filesystem_safe():
    stem = run_stem(
        suite="s",
        backbone="ViT-B-16:/home/me/w.safetensors",
        method="coop",
        config_hash="0123456789abcdef",
        shots=16,
        seed=2,
    )
    assert "/" not in stem and stem.endswith("__k16__s2")


def test_sidecars_are_not_result_files(tmp_path):
    path = write_results(make_rows(), tmp_path / "a" / "run.parquet")
    scores_path(path).write_bytes(b"x")
    assert result_files(tmp_path) == [path]


def test_demo_sidecar_agrees_and_tampering_is_found(demo_run, tmp_path):
    import shutil

    src = demo_run["file"]
    assert validate_file(src).ok
    assert scores_path(src).exists()
    copy = tmp_path / src.name
    shutil.copy(src, copy)
    assert any("is missing beside the result file" in p for p in validate_file(copy).problems)
    shutil.copy(scores_path(src), scores_path(copy))
    assert validate_file(copy).ok
    side = pd.read_parquet(scores_path(copy))
    side.loc[0, side.columns[-1]] = 0.0
    scores_path(copy).unlink()
    side.to_parquet(scores_path(copy))
    assert any("does not match scores_sha256" in p for p in validate_file(copy).problems)
