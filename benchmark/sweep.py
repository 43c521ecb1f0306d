"""Sweeps: every (method, shots, seed) of a suite and backbone, one Parquet file per run, resumable.

The plan is built with the harness's own `resolve` stage, so every name, config value and score is
checked before any work and a planned run's file name is exactly the one `oodbench run` would write.
All runs go through one Harness, so datasets, the backbone and cached features load once. A run
whose file already exists under the results folder (same suite, backbone, method, config hash,
shots and seed: `results.run_stem`) is skipped, so an interrupted sweep continues where it stopped
and a finished one costs nothing to re-run. Methods that do not train on a split run once per seed
with shots 0; zero-shot ones (which do not depend on the seed) once, with the first seed. A config key
may take several values (`grid`, from a repeated `--config alpha=0 --config alpha=0.5`): every method that
has the key then runs once per value (per combination, for several such keys).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.config import Execution, RunKey
from benchmark.errors import OodbenchError
from benchmark.harness import Harness
from benchmark.progress import Progress
from benchmark.protocols import FEW_SHOT, TEST_TIME
from benchmark.results import existing_runs, read_results
from methods.base import fits_split


@dataclass(frozen=True)
class PlannedRun:
    key: RunKey
    stem: str

    @property
    def method(self) -> str:
        return self.key.method

    @property
    def shots(self) -> int:
        return self.key.shots

    @property
    def seed(self) -> int:
        return self.key.seed


@dataclass
class SweepResult:
    ran: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def rows(self) -> pd.DataFrame:
        """Every row of the sweep's runs, new and previously written."""
        frames = [read_results(p) for p in self.ran + self.skipped]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plan(
    *,
    suite: str,
    backbone: str,
    methods: list[str],
    shots: list[int],
    seeds: list[int],
    scores: list[str] | None = None,
    config: Mapping[str, Any] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    harness: Harness | None = None,
) -> list[PlannedRun]:
    """The runs of a sweep, in order; every name and number is checked before any work. `config` overrides
    apply to every method that has the key (a key no listed method has is an error); `grid` gives several
    values of a key, and each method that has it runs once per value (per combination of several keys)."""
    from methods import METHODS, load_methods
    from methods.base import config_fields

    load_methods()
    harness = harness or Harness()
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
    config = dict(config or {})
    grid = {k: list(v) for k, v in (grid or {}).items()}
    empty = sorted(k for k, v in grid.items() if not v)
    if empty:
        raise OodbenchError(f"--config key(s) {empty} were given no value; pass key=value for each value to sweep.")
    both = sorted(set(config) & set(grid))
    if both:
        raise OodbenchError(f"--config key(s) {both} are given both one value and several; give each key one way.")
    keys_of = {name: set(config_fields(METHODS.get(name).Config)) for name in methods}
    unused = sorted((set(config) | set(grid)) - set().union(*keys_of.values()))
    if unused:
        raise OodbenchError(f"--config key(s) {unused} belong to none of the methods {methods}.")
    runs = []
    for name in methods:
        protocol = METHODS.get(name).protocol
        combos = (
            [(k, s) for k in shots for s in seeds]
            if protocol == FEW_SHOT
            else [(0, s) for s in seeds]
            if protocol == TEST_TIME
            else [(0, seeds[0])]
        )
        fixed = {k: v for k, v in config.items() if k in keys_of[name]}
        swept = {k: v for k, v in grid.items() if k in keys_of[name]}
        for values in itertools.product(*swept.values()):
            overrides = {**fixed, **dict(zip(swept, values, strict=True))}
            for k, s in combos:
                key = RunKey(
                    suite=suite,
                    backbone=backbone,
                    method=name,
                    config=overrides,
                    scores=tuple(scores or ()),
                    shots=k,
                    seed=s,
                )
                runs.append(PlannedRun(key=key, stem=harness.resolve(key).stem()))
    return runs


def run_sweep(
    *,
    suite: str,
    backbone: str,
    methods: list[str],
    shots: list[int],
    seeds: list[int],
    scores: list[str] | None = None,
    config: Mapping[str, Any] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    results_dir: Path,
    execution: Execution,
    progress: Progress | None = None,
    on_run: Callable[[PlannedRun, str, float], None] | None = None,
) -> SweepResult:
    """Run every planned run not already in `results_dir`; `on_run(run, 'ran'|'skipped', seconds)` reports each."""
    harness = Harness(progress=progress)
    runs = plan(
        suite=suite,
        backbone=backbone,
        methods=methods,
        shots=shots,
        seeds=seeds,
        scores=scores,
        config=config,
        grid=grid,
        harness=harness,
    )
    results_dir = Path(results_dir)
    result = SweepResult()
    start = time.perf_counter()
    for run in runs:
        done = existing_runs(results_dir / run.method, run.stem)
        if done:
            result.skipped.append(done[0])
            if on_run:
                on_run(run, "skipped", 0.0)
            continue
        t = time.perf_counter()
        out = harness.run(run.key, execution, results_dir=results_dir)
        if out.path is not None:  # under torchrun only rank 0 writes
            result.ran.append(out.path)
        if on_run:
            on_run(run, "ran", time.perf_counter() - t)
    result.seconds = time.perf_counter() - start
    return result


def prefetch_features(keys: list[RunKey], execution: Execution, *, progress: Progress | None = None) -> int:
    """Encode, once, the feature sets the runs of `keys` share (every test set, and the few-shot pool, per suite
    and backbone, with patch tokens where a run reads them) before the runs start in parallel (a Slurm array):
    for each distinct need, one run's own `features` stage (which also encodes that run's augmented views).
    Returns how many runs' features were prepared."""
    harness = Harness(progress=progress)
    seen = set()
    for key in keys:
        resolved = harness.resolve(key)
        cls = resolved.method_cls
        need = (key.suite, key.backbone, resolved.needs_local, fits_split(cls), "local" in cls.needs)
        if need in seen:
            continue
        seen.add(need)
        harness.features(resolved, harness.prepare(resolved, execution))
    return len(seen)
