"""Sweeps on the demo (resumable, one file per run) and the harness's no-peeking guarantee."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from benchmark.backbones import DEMO_BACKBONE
from benchmark.cli import app
from benchmark.config import Execution
from benchmark.errors import OodbenchError
from benchmark.results import read_results, result_files
from benchmark.sweep import plan, run_sweep
from methods import load_methods

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
    files = result_files(tmp_path)
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
    assert result_files(tmp_path) == files  # nothing rewritten, nothing added


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
            execution=Execution(),
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


def test_sweep_passes_the_data_root_to_every_run(tmp_path, monkeypatch):
    import benchmark.sweep as sweep_mod

    seen = []

    def record(self, key, execution, *, out=None, results_dir=None):
        seen.append((execution.data_root, execution.precision, key.config))
        raise KeyboardInterrupt  # stop after the first run: only its settings matter here

    monkeypatch.setattr(sweep_mod.Harness, "run", record)
    with pytest.raises(KeyboardInterrupt):
        sweep_mod.run_sweep(
            suite=SUITE,
            backbone=DEMO_BACKBONE,
            methods=["zero_shot"],
            shots=[1],
            seeds=[1],
            results_dir=tmp_path,
            execution=Execution(data_root=tmp_path / "data", precision="bf16"),
        )
    assert seen == [(tmp_path / "data", "bf16", {})]


def test_sweep_config_applies_to_the_methods_that_have_the_key():
    runs = plan(
        suite=SUITE,
        backbone=DEMO_BACKBONE,
        methods=["zero_shot", "coop", "cocoop"],
        shots=[1],
        seeds=[1],
        config={"n_ctx": 4},
    )
    assert {r.method: r.key.config for r in runs} == {"zero_shot": {}, "coop": {"n_ctx": 4}, "cocoop": {"n_ctx": 4}}
    default = plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["coop"], shots=[1], seeds=[1])
    assert runs[1].stem != default[0].stem  # another config hash, another file
    with pytest.raises(OodbenchError, match="belong to none of the methods"):
        plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["coop"], shots=[1], seeds=[1], config={"alpha": 1.0})
    with pytest.raises(OodbenchError, match="outside its allowed range"):
        plan(suite=SUITE, backbone=DEMO_BACKBONE, methods=["coop"], shots=[1], seeds=[1], config={"n_ctx": 10**9})
