"""Sweeps on the demo (resumable, one file per run) and the harness's no-peeking guarantee."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from benchmark.backbones import DEMO_BACKBONE
from benchmark.cli import app
from benchmark.errors import OodbenchError
from benchmark.fewshot import fewshot_split
from benchmark.harness import Harness, RunSpec
from benchmark.results import read_results
from benchmark.sweep import plan, run_sweep
from methods import METHODS, load_methods

load_methods()
SUITE = "fmnist-ood"


@pytest.fixture
def cache_dir(demo_run):
    return demo_run["cache_dir"]  # the session's demo feature cache (tests/conftest.py)


@pytest.mark.slow
def test_sweep_writes_one_file_per_run_and_resumes(tmp_path, cache_dir):
    args = [
        "sweep",
        "--suite",
        SUITE,
        "--backbone",
        DEMO_BACKBONE,
        "--methods",
        "zero_shot,linear_probe",
        "--shots",
        "1,2",
        "--seeds",
        "1,2",
        "--scores",
        "mcm,energy",
        "--results-dir",
        str(tmp_path),
        "--cache-dir",
        str(cache_dir),
        "--no-progress",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    files = sorted(tmp_path.glob("*.parquet"))
    assert len(files) == 1 + 2 * 2  # zero-shot once (shots 0, first seed), linear probe at 2 shots x 2 seeds
    keys = {(r["method"].iloc[0], int(r["shots"].iloc[0]), int(r["seed"].iloc[0])) for r in map(read_results, files)}
    assert keys == {
        ("zero_shot", 0, 1),
        ("linear_probe", 1, 1),
        ("linear_probe", 1, 2),
        ("linear_probe", 2, 1),
        ("linear_probe", 2, 2),
    }
    assert "mean ± std" in first.output and "5 runs written, 0 already present" in first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "0 runs written, 5 already present" in second.output
    assert sorted(tmp_path.glob("*.parquet")) == files  # nothing rewritten, nothing added


def test_plan_checks_names_and_numbers_before_any_work():
    with pytest.raises(OodbenchError, match="Unknown method"):
        plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["zero_shot", "coopp"], shots=[1], seeds=[1])
    with pytest.raises(OodbenchError, match="shots"):
        plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["coop"], shots=[0, 1], seeds=[1])
    with pytest.raises(OodbenchError, match="seeds"):
        plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["coop"], shots=[1], seeds=[])
    runs = plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["zero_shot", "coop"], shots=[1, 16], seeds=[3, 1])
    assert [(r.method, r.shots, r.seed) for r in runs] == [
        ("zero_shot", 0, 3),
        ("coop", 1, 3),
        ("coop", 1, 1),
        ("coop", 16, 3),
        ("coop", 16, 1),
    ]
    assert len({r.stem for r in runs}) == len(runs)


def test_unknown_score_fails_before_any_run(tmp_path):
    with pytest.raises(OodbenchError, match="Unknown score"):
        run_sweep(
            suite=SUITE,
            backbone=DEMO_BACKBONE,
            methods=["zero_shot"],
            shots=[1],
            seeds=[1],
            scores=["mcn"],
            results_dir=tmp_path,
        )
    assert not list(tmp_path.glob("*.parquet"))


def test_cli_rejects_non_integer_shots(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            "--suite",
            SUITE,
            "--backbone",
            DEMO_BACKBONE,
            "--methods",
            "coop",
            "--shots",
            "1,two",
            "--results-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0
    assert "integers" in str(result.exception)


@pytest.mark.slow
def test_fit_receives_only_the_fewshot_split_and_pool_validation(tmp_path, cache_dir, monkeypatch):
    """No peeking: FitData holds exactly the pool features at the split's train/val indices, nothing of
    the ID test split or any OOD set."""
    cls = METHODS.get("linear_probe")
    seen = []
    original = cls.fit

    def spy(self, data):
        seen.append(data)
        return original(self, data)

    monkeypatch.setattr(cls, "fit", spy)
    harness = Harness()
    result = harness.run(
        RunSpec(
            suite=SUITE,
            backbone=DEMO_BACKBONE,
            method="linear_probe",
            shots=4,
            seed=2,
            scores=["mcm"],
            cache_dir=cache_dir,
            reuse_outputs=False,
        ),
        results_dir=tmp_path,
    )
    assert len(seen) == 1
    data = seen[0]
    from benchmark.features import extract_features
    from benchmark.suites import SUITES

    suite = SUITES.get(SUITE)
    backbone = harness.backbone(DEMO_BACKBONE, torch.device("cpu"), cache_dir)
    pool = harness.dataset(suite.pool, suite, None)
    split = fewshot_split(pool.labels, shots=4, seed=2, pool_sha256=pool.list_sha256)
    assert result.rows["fewshot_hash"].iloc[0] == split.sha256
    pool_feats = np.asarray(extract_features(backbone, pool, cache_dir=cache_dir).array, np.float32)
    np.testing.assert_array_equal(data.train.global_.numpy(), pool_feats[split.train])
    np.testing.assert_array_equal(data.val.global_.numpy(), pool_feats[split.val])
    np.testing.assert_array_equal(data.labels.numpy(), pool.labels[split.train])
    assert data.shots == 4 and len(data.labels) == 4 * 6
    seen_rows = {r.tobytes() for r in np.concatenate([data.train.global_.numpy(), data.val.global_.numpy()])}
    for name in [suite.id_test] + [n for _, n in suite.ood_sets()]:
        test = np.asarray(
            extract_features(backbone, harness.dataset(name, suite, None), cache_dir=cache_dir).array, np.float32
        )
        assert not seen_rows & {r.tobytes() for r in test}, f"fit saw features of {name}"


def test_sweep_passes_the_data_root_to_every_run(tmp_path, monkeypatch):
    import benchmark.sweep as sweep_mod

    seen = []

    def record(self, spec, *, out=None, results_dir=None):
        seen.append(spec.data_root)
        raise KeyboardInterrupt  # stop after the first run: only its spec matters here

    monkeypatch.setattr(sweep_mod.Harness, "run", record)
    with pytest.raises(KeyboardInterrupt):
        sweep_mod.run_sweep(
            suite=SUITE,
            backbone=DEMO_BACKBONE,
            methods=["zero_shot"],
            shots=[1],
            seeds=[1],
            results_dir=tmp_path,
            data_root=tmp_path / "data",
        )
    assert seen == [tmp_path / "data"]
