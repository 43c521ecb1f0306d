"""The `oodbench` command: the demo end to end, and one clear message per user mistake."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmark.results import SCHEMA, read_results, result_files


@pytest.mark.slow
def test_demo_end_to_end_cold_then_warm(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    cmd = [
        sys.executable,
        "-m",
        "benchmark.cli",
        "demo",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--results-dir",
        str(tmp_path / "results"),
        "--no-progress",
    ]
    cold = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert cold.returncode == 0, cold.stderr
    assert "feature cache miss" in cold.stdout
    for score in ("mcm", "msp", "energy", "max_logit", "entropy"):
        assert score in cold.stdout
    files = result_files(tmp_path / "results")
    assert files, cold.stdout
    zs = [read_results(f) for f in files if "__zero_shot-" in f.name]
    assert len(zs) == 1
    rows = zs[0]
    assert list(rows.columns) == SCHEMA.names
    assert len(rows) == 6 * 4  # six scores (gl_mcm included) x four OOD sets
    assert any("__coop-" in f.name and "__k16__s1__" in f.name for f in files)  # CoOp 16-shot beside zero-shot
    assert "How fine-tuning changed OOD detection" in cold.stdout
    assert rows["id_acc"].iloc[0] >= 0.80
    assert (rows[rows.score == "mcm"]["auroc"] >= 0.60).all()

    warm = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert warm.returncode == 0, warm.stderr
    assert "cache hit" in warm.stdout and "nothing was encoded or trained" in warm.stdout
    assert len(result_files(tmp_path / "results")) == 2 * len(files)  # never overwrites
    metrics = ["score", "ood_dataset", "fpr95", "auroc", "aupr_in", "aupr_out", "id_acc"]
    again = result_files(tmp_path / "results", "*__zero_shot-*.parquet")
    first, second = (read_results(f)[metrics].sort_values(metrics[:2]).reset_index(drop=True) for f in again)
    assert first.equals(second)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["run", "--suite", "fmnist-odd", "--backbone", "oodbench-tiny-fmnist:demo", "--method", "zero_shot"],
            "Did you mean 'fmnist-ood'",
        ),
        (
            ["run", "--suite", "fmnist-ood", "--backbone", "oodbench-tiny-fmnist:demo", "--method", "zero_shoot"],
            "Did you mean 'zero_shot'",
        ),
        (
            [
                "run",
                "--suite",
                "fmnist-ood",
                "--backbone",
                "oodbench-tiny-fmnist:demo",
                "--method",
                "zero_shot",
                "--scores",
                "mcm,enrgy",
            ],
            "Did you mean 'energy'",
        ),
        (
            ["run", "--suite", "fmnist-ood", "--backbone", "ViT-B-61:openai", "--method", "zero_shot"],
            "Did you mean 'ViT-B-16'",
        ),
        (
            [
                "run",
                "--suite",
                "fmnist-ood",
                "--backbone",
                "oodbench-tiny-fmnist:demo",
                "--method",
                "zero_shot",
                "--config",
                "alpha",
            ],
            "key=value",
        ),
        (
            [
                "run",
                "--suite",
                "fmnist-ood",
                "--backbone",
                "oodbench-tiny-fmnist:demo",
                "--method",
                "zero_shot",
                "--config",
                "alpha=1",
            ],
            "Unknown config key",
        ),
        (
            [
                "run",
                "--suite",
                "fmnist-ood",
                "--backbone",
                "oodbench-tiny-fmnist:demo",
                "--method",
                "zero_shot",
                "--device",
                "tpu",
            ],
            "Unknown device",
        ),
        (["list", "suits"], "Did you mean 'suites'"),
        (["show", "/no/such/file.parquet"], "does not exist"),
    ],
)
def test_user_mistakes_get_one_clear_message(args, message, run_cli, tmp_path):
    extra = ["--results-dir", str(tmp_path)] if args[0] == "run" else []
    code, out, err = run_cli(*args, *extra)
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.parquet"))


def test_unwritable_results_dir_fails_before_any_work(run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run_cli(
        "run",
        "--suite",
        "fmnist-ood",
        "--backbone",
        "oodbench-tiny-fmnist:demo",
        "--method",
        "zero_shot",
        "--results-dir",
        str(blocker / "results"),
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert code == 2
    assert "Cannot write results into" in " ".join(err.split())
    assert not (tmp_path / "c").exists()  # nothing was encoded


def test_list_and_show(run_cli, tmp_path):
    for what in ("suites", "methods", "scores", "datasets"):
        code, out, _ = run_cli("list", what)
        assert code == 0 and out.strip()
    code, out, _ = run_cli("list", "backbones")
    assert "oodbench-tiny-fmnist:demo" in out
    code, out, err = run_cli(
        "run",
        "--suite",
        "fmnist-ood",
        "--backbone",
        "oodbench-tiny-fmnist:demo",
        "--method",
        "zero_shot",
        "--scores",
        "mcm,energy",
        "--results-dir",
        str(tmp_path),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
    )
    assert code == 0, err
    (path,) = result_files(tmp_path)
    assert sorted(set(read_results(path)["score"])) == ["energy", "mcm"]
    code, out, _ = run_cli("show", str(path))
    assert code == 0 and "weights_sha256" in out and "mcm" in out


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["demo"],
        ["run"],
        ["list"],
        ["show"],
        ["sweep"],
        ["data"],
        ["data", "prepare"],
        ["leaderboard", "build"],
        ["validate"],
        ["reproduce"],
    ],
)
def test_help_everywhere(command):
    out = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", *command, "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "Usage" in out.stdout


@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_a_bad_seed_is_one_clear_error_from_run_and_sweep(run_cli, tmp_path, seed):
    """Issue 14 item 13 through the command line: no traceback, the range named, nothing written."""
    common = ["--suite", "fmnist-ood", "--backbone", "oodbench-tiny-fmnist:demo"]
    for args in (
        ["run", *common, "--method", "coop", "--shots", "4", "--seed", seed, "--results-dir", tmp_path],
        ["sweep", *common, "--methods", "coop", "--shots", "4", "--seeds", seed, "--results-dir", tmp_path],
    ):
        code, out, err = run_cli(*args)
        assert code != 0 and "--seed must be a whole number from 0 to 4294967295" in out + err, (out, err)
        assert "Traceback" not in out + err
    assert not any(tmp_path.iterdir())
