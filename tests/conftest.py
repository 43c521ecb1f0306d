"""Shared fixtures: one real demo zero-shot run per test session, and schema-valid synthetic runs built from it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.results import read_results, write_results
from methods.base import config_hash

DEMO_BACKBONE = "oodbench-tiny-fmnist:demo"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> dict[str, Path]:
    """The bundled demo's zero-shot run with every score (about 10 s on a CPU), and its feature cache."""
    from benchmark.config import Execution, RunKey
    from benchmark.harness import Harness

    root = tmp_path_factory.mktemp("demo-run")
    key = RunKey(suite="fmnist-ood", backbone=DEMO_BACKBONE, method="zero_shot")
    result = Harness().run(
        key, Execution(device="cpu", cache_dir=root / "cache"), out=root / "results" / "demo-zero-shot.parquet"
    )
    return {"file": result.path, "cache_dir": root / "cache"}


@pytest.fixture
def make_run(demo_run) -> Callable[..., Path]:
    """Write a schema-valid synthetic run derived from the demo rows: `make_run(path, method=..., shots=...,
    seed=..., shift=...)`; `shift` is added to every FPR95 and subtracted from every AUROC (clipped)."""
    base = read_results(demo_run["file"])

    def make(
        path: Path,
        *,
        method: str = "coop",
        shots: int = 4,
        seed: int = 1,
        shift: float = 0.0,
        acc_shift: float = 0.0,
        config: dict | None = None,
        **columns,
    ) -> Path:
        rows = base.copy()
        cfg = json.dumps(config or {"lr": 0.002}, sort_keys=True, separators=(",", ":"))
        rows["method"], rows["method_config"] = method, cfg
        rows["config_hash"] = config_hash(method, cfg)
        rows["shots"], rows["seed"] = shots, seed
        rows["run_id"] = uuid.uuid4().hex
        rows["fewshot_hash"] = "f" * 64 if shots else ""
        rows["fpr95"] = np.clip(rows["fpr95"] + shift, 0, 1)
        rows["auroc"] = np.clip(rows["auroc"] - shift, 0, 1)
        rows["id_acc"] = np.clip(rows["id_acc"] + acc_shift, 0, 1)
        rows["protocol"] = "few-shot" if shots else "zero-shot"
        rows["scores_sha256"] = ""  # a synthetic run has no per-sample scores
        for k, v in columns.items():
            rows[k] = v
        return write_results(pd.DataFrame(rows), Path(path))

    return make


@pytest.fixture
def run_cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """Run `oodbench ARGS...` in-process as a user would; returns (exit code, stdout, stderr)."""
    import sys

    from benchmark.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        old = sys.argv
        sys.argv = ["oodbench", *map(str, args)]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            sys.argv = old
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
