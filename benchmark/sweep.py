"""Sweeps: every (method, shots, seed) of a suite and backbone, one Parquet file per run, resumable.

All runs go through one Harness, so datasets, the backbone and cached features load once. A run
whose file already exists under the results folder (same suite, backbone, method, config hash,
shots and seed: `results.run_stem`) is skipped, so an interrupted sweep continues where it
stopped and a finished one costs nothing to re-run. Zero-shot methods do not depend on shots or
on the seed: they run once, with shots 0 and the first seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.errors import OodbenchError
from benchmark.harness import Harness, RunSpec
from benchmark.progress import Progress
from benchmark.results import existing_runs, read_results, run_stem
from benchmark.suites import SUITES
from methods import load_methods
from methods.base import METHODS, canonical_config, config_hash, make_config
from methods.scores import SCORES


@dataclass(frozen=True)
class PlannedRun:
    method: str
    shots: int
    seed: int
    stem: str


@dataclass
class SweepResult:
    ran: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def rows(self) -> pd.DataFrame:
        """Every row of the sweep's runs, new and previously written."""
        frames = [read_results(p) for p in self.ran + self.skipped]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plan(*, suite: str, backbone: str, methods: list[str], shots: list[int], seeds: list[int]) -> list[PlannedRun]:
    """The runs of a sweep, in order; every name and number is checked before any work."""
    load_methods()
    spec = SUITES.get(suite)
    if not methods:
        raise OodbenchError("--methods is empty; pass comma-separated method names (`oodbench list methods`).")
    if not seeds:
        raise OodbenchError("--seeds is empty; pass comma-separated seeds, for example --seeds 1,2,3.")
    bad = [k for k in shots if k < 1]
    if bad or not shots:
        raise OodbenchError(
            f"--shots takes positive images-per-class counts such as 1,2,4,8,16 (got {shots}); "
            f"zero-shot methods run once with shots 0 on their own."
        )
    if len(set(methods)) != len(methods):
        raise OodbenchError(f"--methods lists a method twice: {methods}.")
    runs = []
    for name in methods:
        cls = METHODS.get(name)
        cfg_hash = config_hash(name, canonical_config(make_config(cls, None)))
        combos = [(k, s) for k in shots for s in seeds] if cls.trains else [(0, seeds[0])]
        for k, s in combos:
            stem = run_stem(suite=spec.name, backbone=backbone, method=name, config_hash=cfg_hash, shots=k, seed=s)
            runs.append(PlannedRun(method=name, shots=k, seed=s, stem=stem))
    return runs


def run_sweep(
    *,
    suite: str,
    backbone: str,
    methods: list[str],
    shots: list[int],
    seeds: list[int],
    scores: list[str] | None = None,
    results_dir: Path,
    cache_dir: Path | None = None,
    data_root: Path | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    on_run: Callable[[PlannedRun, str, float], None] | None = None,
) -> SweepResult:
    """Run every planned run not already in `results_dir`; `on_run(run, 'ran'|'skipped', seconds)` reports each."""
    runs = plan(suite=suite, backbone=backbone, methods=methods, shots=shots, seeds=seeds)
    for s in scores or []:
        SCORES.get(s)
    results_dir = Path(results_dir)
    harness = Harness(progress=progress)
    result = SweepResult()
    start = time.perf_counter()
    for run in runs:
        done = existing_runs(results_dir, run.stem)
        if done:
            result.skipped.append(done[0])
            if on_run:
                on_run(run, "skipped", 0.0)
            continue
        t = time.perf_counter()
        spec = RunSpec(
            suite=suite,
            backbone=backbone,
            method=run.method,
            scores=scores,
            shots=run.shots,
            seed=run.seed,
            device=device,
            cache_dir=cache_dir,
            data_root=data_root,
        )
        out = harness.run(spec, results_dir=results_dir)
        if out.path is not None:  # under torchrun only rank 0 writes
            result.ran.append(out.path)
        if on_run:
            on_run(run, "ran", time.perf_counter() - t)
    result.seconds = time.perf_counter() - start
    return result
