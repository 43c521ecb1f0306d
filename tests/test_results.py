"""Result files: every DESIGN.md column, atomic writes, never overwriting."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from benchmark.errors import OodbenchError
from benchmark.results import REQUIRED, SCHEMA, read_results, run_stem, validate_frame, write_results


def make_rows(n: int = 2, **over) -> pd.DataFrame:
    base = {
        "suite": "fmnist-ood",
        "suite_version": 1,
        "backbone": "b:t",
        "method": "zero_shot",
        "method_config": "{}",
        "config_hash": "ab" * 32,
        "score": "mcm",
        "shots": 0,
        "seed": 1,
        "id_dataset": "fmnist-id6-test",
        "ood_group": "far",
        "fpr95": 0.5,
        "auroc": 0.9,
        "aupr_in": 0.8,
        "aupr_out": 0.7,
        "id_acc": 0.95,
        "n_id": 10,
        "n_ood": 5,
        "run_id": "r" * 32,
        "created_at": pd.Timestamp("2026-01-01", tz="UTC"),
        "oodbench_version": "0.1.0",
        "git_commit": "",
        "package_versions": json.dumps({"torch": "2"}),
        "device": "cpu",
        "weights_sha256": "c" * 64,
        "fewshot_hash": "",
        "dataset_hashes": json.dumps({"a": "b"}),
        "precision": "fp32",
    }
    base.update(over)
    return pd.DataFrame([{**base, "ood_dataset": f"ood{i}"} for i in range(n)])


def test_schema_has_every_design_column():
    assert set(REQUIRED) <= set(SCHEMA.names)


def test_roundtrip_keeps_types(tmp_path):
    path = write_results(make_rows(), tmp_path / "run.parquet")
    back = read_results(path)
    assert list(back.columns)[: len(SCHEMA.names)] == SCHEMA.names
    assert str(back["created_at"].dt.tz) == "UTC"
    assert validate_frame(back) == []
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


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
