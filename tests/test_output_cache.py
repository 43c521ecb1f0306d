"""The run-output cache: a repeated run costs seconds, and anything that changes the outputs misses it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import benchmark.harness as harness_mod
from benchmark.harness import Harness, RunSpec
from benchmark.output_cache import DatasetOutputs, OutputCache, OutputKey, code_fingerprint

METRICS = ["score", "ood_dataset", "fpr95", "auroc", "aupr_in", "aupr_out", "id_acc"]


def _key(**over) -> OutputKey:
    base = dict(
        arch="a",
        weights_sha256="w",
        preprocess="p",
        precision="fp32",
        suite="s",
        suite_version=1,
        dataset_hashes="{}",
        method="m",
        config_hash="c",
        shots=1,
        seed=1,
        fewshot_hash="f",
        code="x",
    )
    return OutputKey(**{**base, **over})


def test_every_key_field_changes_the_digest():
    base = _key()
    for field in dataclasses.fields(OutputKey):
        value = getattr(base, field.name)
        other = value + 1 if isinstance(value, int) else value + "!"
        assert dataclasses.replace(base, **{field.name: other}).digest() != base.digest(), field.name


def test_cache_needs_every_dataset_and_score(tmp_path):
    cache = OutputCache(tmp_path)
    key = _key()
    out = {
        "id": DatasetOutputs(np.ones((3, 2), np.float32), {"mcm": np.arange(3.0)}),
        "ood": DatasetOutputs(np.zeros((2, 2), np.float32), {"mcm": np.arange(2.0)}),
    }
    assert cache.load(key, datasets=["id", "ood"], scores=["mcm"]) is None
    cache.save(key, out)
    back = cache.load(key, datasets=["id", "ood"], scores=["mcm"])
    assert np.array_equal(back["ood"].scores["mcm"], np.arange(2.0))
    assert cache.load(key, datasets=["id", "ood"], scores=["mcm", "energy"]) is None
    assert cache.load(key, datasets=["id", "ood", "other"], scores=["mcm"]) is None
    assert cache.load(_key(seed=2), datasets=["id", "ood"], scores=["mcm"]) is None


def test_code_fingerprint_covers_outside_method_files(tmp_path):
    f = tmp_path / "my_method.py"
    f.write_text("A = 1\n")
    a = code_fingerprint(f)
    f.write_text("A = 2\n")
    assert code_fingerprint(f) != a
    assert code_fingerprint() == code_fingerprint()


def test_repeated_run_reuses_outputs_without_loading_the_model(tmp_path, monkeypatch):
    spec = RunSpec(
        suite="fmnist-ood",
        backbone="oodbench-tiny-fmnist:demo",
        method="tip_adapter",
        shots=2,
        seed=1,
        scores=["mcm", "energy"],
        device="cpu",
        cache_dir=tmp_path / "cache",
    )
    first = Harness().run(spec, results_dir=tmp_path / "r")
    assert first.cache_hits["outputs"] is False

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every output was cached")

    monkeypatch.setattr(harness_mod, "load_backbone", no_model)
    second = Harness().run(spec, results_dir=tmp_path / "r")
    assert second.cache_hits["outputs"] is True
    assert second.path != first.path
    cols = METRICS
    a = first.rows[cols].sort_values(cols[:2]).reset_index(drop=True)
    b = second.rows[cols].sort_values(cols[:2]).reset_index(drop=True)
    assert a.equals(b)
    assert (second.rows["weights_sha256"] == first.rows["weights_sha256"]).all()

    # a score that was never computed, or refusing the cache, recomputes (and so needs the model)
    for other in (dataclasses.replace(spec, scores=["msp"]), dataclasses.replace(spec, reuse_outputs=False)):
        with pytest.raises(AssertionError, match="the model was loaded"):
            Harness().run(other, results_dir=tmp_path / "r")
