"""Every registered method runs end to end on the bundled demo through the harness, as `oodbench run` runs it.

A method whose run fails (at build, fit, predict or scoring), writes rows that do not validate, or leaves
out a score that applies to its output fails here, so a new method cannot land without a working demo
run. Few-shot methods run at 1 shot. Each method keeps its defaults except the budget keys below, which
shorten training and mining so that the whole file stays within a few minutes on two CPU cores; the
features come from a copy of the `demo_run` fixture's cache (encoded once per session), so what these runs
add (tuned features, views, mined words) never reaches the tests that read that cache.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.config import Execution, RunKey
from benchmark.harness import STREAM_BATCH, Harness
from benchmark.results import validate_file
from benchmark.suites import SUITES
from methods import METHODS, SCORES, load_methods
from methods.base import fits_split

load_methods()
DEMO_BACKBONE = "oodbench-tiny-fmnist:demo"

# Budget overrides, applied to every method whose Config has the key: training epochs, mining pool sizes
# (max_candidates=700 keeps 105 nouns and 105 adjectives, enough for NegLabel's 100 groups), and
# AdaNeg's label count within that pool.
BUDGET = {
    "epochs": 2,
    "negative_epochs": 2,
    "max_candidates": 700,
    "count": 300,
    "search_steps_alpha": 4,
    "search_steps_beta": 4,
    "coarse_steps": 3,
    "refine_steps": 3,
}


def budget(name: str) -> dict[str, object]:
    fields = {f.name for f in dataclasses.fields(METHODS.get(name).Config)}
    return {k: v for k, v in BUDGET.items() if k in fields}


@pytest.fixture(scope="module")
def harness() -> Harness:
    return Harness()  # one harness: the demo backbone and datasets load once for the whole file


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, demo_run) -> Path:
    copy = tmp_path_factory.mktemp("all-methods") / "cache"
    shutil.copytree(demo_run["cache_dir"], copy)
    return copy


@pytest.mark.parametrize("name", METHODS.names())
def test_method_runs_on_the_demo(name, harness, cache_dir, tmp_path):
    cls = METHODS.get(name)
    shots = 1 if fits_split(cls) else 0
    key = RunKey(suite="fmnist-ood", backbone=DEMO_BACKBONE, method=name, config=budget(name), shots=shots, seed=1)
    out = tmp_path / f"{name}.parquet"
    result = harness.run(key, Execution(device="cpu", cache_dir=cache_dir), out=out)

    check = validate_file(out)
    assert check.ok, check.problems
    rows = check.rows
    suite = SUITES.get("fmnist-ood")
    applicable = sorted(s for s in SCORES.names() if SCORES.get(s).applies_to(frozenset(cls.provides)))
    assert sorted(set(rows["score"])) == applicable
    assert sorted(result.not_applicable) == sorted(set(SCORES.names()) - set(applicable))
    for score, group in rows.groupby("score"):
        assert sorted(group["ood_dataset"]) == sorted(n for _, n in suite.ood_sets()), score
    metrics = rows[["fpr95", "fpr95_ood_positive", "auroc", "aupr_in", "aupr_out", "id_acc"]].to_numpy(float)
    assert np.isfinite(metrics).all() and (metrics >= 0).all() and (metrics <= 1).all()
    assert (rows["protocol"] == cls.protocol).all() and (rows["shots"] == shots).all()
    assert (rows["stream_batch_size"] == STREAM_BATCH).all() and (rows["stream_seed"] == 1).all()
    assert json.loads(rows["method_config"].iloc[0]).items() >= budget(name).items()
    assert (rows["fit_seconds"] >= 0).all() and (rows["predict_seconds"] > 0).all()
    sidecar = result.scores_path
    assert sidecar is not None and sidecar.exists()
