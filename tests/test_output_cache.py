"""The run-output cache: a repeated run, or one that only adds a score, costs seconds; anything that changes
the outputs misses it; a damaged or unwritable cache never costs the results."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import benchmark.harness as harness_mod
from benchmark.config import Execution, RunKey
from benchmark.harness import Harness
from benchmark.output_cache import DatasetOutputs, OutputCache, OutputKey, RunOutputs, code_fingerprint

METRICS = ["score", "score_config", "ood_dataset", "fpr95", "auroc", "aupr_in", "aupr_out", "id_acc"]


def _key(**over) -> OutputKey:
    base = dict(
        arch="a",
        weights_sha256="w",
        preprocess="p",
        image_pipeline="tensor",
        precision="fp32",
        suite="s",
        suite_version=1,
        dataset_hashes="{}",
        method="m",
        config_hash="c",
        shots=1,
        seed=1,
        fewshot_hash="f",
        stream="1/256",
        code="x",
    )
    return OutputKey(**{**base, **over})


def _outputs(local: dict | None = None) -> RunOutputs:
    return RunOutputs(
        datasets={
            "id": DatasetOutputs(
                np.ones((3, 2), np.float32),
                {"neg": np.zeros((3, 4), np.float32)},
                {k: v[:3] for k, v in (local or {}).items()},
            ),
            "ood": DatasetOutputs(
                np.zeros((2, 2), np.float32),
                {"neg": np.ones((2, 4), np.float32)},
                {k: v[3:] for k, v in (local or {}).items()},
            ),
        },
        logit_scale=10.0,
        fit_seconds=1.5,
        predict_seconds=0.5,
        peak_memory_mb=12.0,
    )


def test_every_key_field_changes_the_digest():
    base = _key()
    for field in dataclasses.fields(OutputKey):
        value = getattr(base, field.name)
        other = value + 1 if isinstance(value, int) else value + "!"
        assert dataclasses.replace(base, **{field.name: other}).digest() != base.digest(), field.name


def test_cache_keeps_logits_extras_cost_and_needs_every_dataset_and_local_reduction(tmp_path):
    cache = OutputCache(tmp_path)
    key = _key()
    assert cache.load(key, datasets=["id", "ood"], local=[]) is None
    cache.save(key, _outputs({"gl": np.arange(5.0)}))
    back = cache.load(key, datasets=["id", "ood"], local=["gl"])
    assert np.array_equal(back.datasets["ood"].local["gl"], [3.0, 4.0])
    assert np.array_equal(back.datasets["id"].extra["neg"], np.zeros((3, 4)))
    assert (back.logit_scale, back.fit_seconds, back.peak_memory_mb) == (10.0, 1.5, 12.0)
    assert cache.load(key, datasets=["id", "ood"], local=["gl", "other"]) is None
    assert cache.load(key, datasets=["id", "ood", "more"], local=[]) is None
    assert cache.load(_key(seed=2), datasets=["id", "ood"], local=[]) is None


def test_saving_new_local_reductions_keeps_the_old_ones_for_the_same_logits(tmp_path):
    cache = OutputCache(tmp_path)
    cache.save(_key(), _outputs({"a": np.arange(5.0)}))
    cache.save(_key(), _outputs({"b": np.arange(5.0) + 1}))
    back = cache.load(_key(), datasets=["id", "ood"], local=["a", "b"])
    assert back is not None and set(back.datasets["id"].local) == {"a", "b"}


def test_a_damaged_cache_file_is_discarded_with_a_warning(tmp_path):
    cache = OutputCache(tmp_path)
    cache.save(_key(), _outputs())
    npz = cache.folder(_key()) / "ood.npz"
    npz.write_bytes(npz.read_bytes()[:50])  # truncated
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.load(_key(), datasets=["id", "ood"], local=[]) is None
    assert not cache.folder(_key()).exists()
    cache.save(_key(), _outputs())  # and it can be rebuilt
    assert cache.load(_key(), datasets=["id", "ood"], local=[]) is not None


def test_an_unwritable_cache_is_a_warning(tmp_path):
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="Cannot write the output cache"):
        OutputCache(tmp_path).save(_key(), _outputs())


def test_code_fingerprint_covers_outside_method_files(tmp_path):
    f = tmp_path / "my_method.py"
    f.write_text("A = 1\n")
    a = code_fingerprint(f)
    f.write_text("A = 2\n")
    assert code_fingerprint(f) != a
    assert code_fingerprint() == code_fingerprint()


def test_repeated_run_and_a_new_score_reuse_outputs_without_loading_the_model(tmp_path, monkeypatch):
    key = RunKey(
        suite="fmnist-ood",
        backbone="oodbench-tiny-fmnist:demo",
        method="tip_adapter",
        shots=2,
        seed=1,
        scores=("mcm", "energy"),
    )
    exe = Execution(device="cpu", cache_dir=tmp_path / "cache")
    first = Harness().run(key, exe, results_dir=tmp_path / "r")
    assert first.cache_hits["outputs"] is False

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every output was cached")

    monkeypatch.setattr(harness_mod, "load_backbone", no_model)
    second = Harness().run(key, exe, results_dir=tmp_path / "r")
    assert second.cache_hits["outputs"] is True
    assert second.path != first.path
    a = first.rows[METRICS].sort_values(METRICS[:3]).reset_index(drop=True)
    b = second.rows[METRICS].sort_values(METRICS[:3]).reset_index(drop=True)
    assert a.equals(b)
    assert (second.rows["weights_sha256"] == first.rows["weights_sha256"]).all()
    assert (second.rows["fit_seconds"] == first.rows["fit_seconds"]).all()  # the cost of the cached computation

    # scores that read only the logits come from the cache, whatever their parameters
    third = Harness().run(dataclasses.replace(key, scores=("msp", "energy:T=0.5")), exe, results_dir=tmp_path / "r")
    assert third.cache_hits["outputs"] is True and set(third.rows["score"]) == {"msp", "energy"}
    # a patch-token score never computed, or refusing the cache, recomputes (and so needs the model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, e in (
            (dataclasses.replace(key, scores=("gl_mcm",)), exe),
            (key, dataclasses.replace(exe, reuse_outputs=False)),
        ):
            with pytest.raises(AssertionError, match="the model was loaded"):
                Harness().run(k, e, results_dir=tmp_path / "r")


def test_the_image_pipeline_is_part_of_the_output_key(tmp_path, monkeypatch):
    """Switching --image-pipeline (or $OODBENCH_IMAGE_PIPELINE) never reuses outputs computed on the other one's
    features; the default and the environment variable resolve to the name they stand for."""
    from benchmark.config import IMAGE_PIPELINE_ENV
    from benchmark.errors import OodbenchError

    harness = Harness()
    resolved = harness.resolve(RunKey(suite="fmnist-ood", backbone="oodbench-tiny-fmnist:demo", method="zero_shot"))

    def digest(**execution) -> str:
        prepared = harness.prepare(resolved, Execution(device="cpu", cache_dir=tmp_path, **execution))
        return harness.output_key(resolved, prepared).digest()

    monkeypatch.delenv(IMAGE_PIPELINE_ENV, raising=False)
    tensor, pil = digest(image_pipeline="tensor"), digest(image_pipeline="pil")
    assert tensor != pil
    assert digest() == tensor  # the default pipeline is the tensor one
    monkeypatch.setenv(IMAGE_PIPELINE_ENV, "pil")
    assert digest() == pil and digest(image_pipeline="tensor") == tensor  # the option wins over the variable
    with pytest.raises(OodbenchError, match="Unknown image pipeline 'pillow'"):
        Execution(image_pipeline="pillow")
