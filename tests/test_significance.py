"""The paired bootstrap of a change against zero-shot: equal to benchmark.stats.paired_delta on one OOD set,
to a plain per-resample recomputation on a group of sets, and cached by the files it read."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from benchmark.errors import OodbenchError
from benchmark.metrics import ood_metrics
from benchmark.stats import paired_delta
from leaderboard.significance import (
    LEVEL,
    N_RESAMPLES,
    SEED,
    Cache,
    Comparison,
    Job,
    RunScores,
    Settings,
    cache_key,
    compare_all,
)

GROUPS = [("near", "a"), ("far", "b"), ("far", "c")]
SIZES = {"a": 40, "b": 40, "c": 25}  # two sets of one size: their draws must still be independent


def _run(rng, *, n_id=50, shift=0.0, ties=False) -> RunScores:
    def draw(loc, n):
        x = rng.normal(loc, 1.0, n)
        return np.round(x) if ties else x

    return RunScores(
        id_scores=draw(1.0 + shift, n_id).astype(np.float32),
        id_correct=rng.random(n_id) < 0.8,
        ood={name: draw(0.0, m).astype(np.float32) for name, m in SIZES.items()},
    )


def _compare(runs: dict, tuned: tuple, settings: Settings) -> Comparison:
    job = {"x": Job(tuned=tuned, baseline="base")}
    return compare_all(job, load=runs.__getitem__, id_dataset="id", groups=GROUPS, settings=settings)["x"]


def test_defaults_are_paired_deltas():
    params = inspect.signature(paired_delta).parameters
    assert (N_RESAMPLES, SEED, LEVEL) == tuple(params[p].default for p in ("n_resamples", "seed", "level"))
    assert Settings() == Settings(N_RESAMPLES, SEED, LEVEL)


@pytest.mark.parametrize("ties", [False, True])
def test_the_first_set_equals_paired_delta(ties):
    rng = np.random.default_rng(3)
    runs = {"base": _run(rng, ties=ties), **{f"t{k}": _run(rng, shift=0.3, ties=ties) for k in range(3)}}
    tuned = ("t0", "t1", "t2")
    settings = Settings(n_resamples=300, seed=5)
    mine = _compare(runs, tuned, settings)
    ref = paired_delta(
        [(runs[t].id_scores, runs[t].ood["a"]) for t in tuned],
        (runs["base"].id_scores, runs["base"].ood["a"]),
        id_correct_tuned=[runs[t].id_correct for t in tuned],
        id_correct_baseline=runs["base"].id_correct,
        n_resamples=300,
        seed=5,
    )
    for got, want in ((mine.per_set["a"], ref["auroc"]), (mine.id_acc, ref["id_acc"])):
        assert got.mean == pytest.approx(want.mean, abs=1e-12)
        assert got.low == pytest.approx(want.low, abs=1e-12)
        assert got.high == pytest.approx(want.high, abs=1e-12)
        assert got.significant == want.significant
    assert mine.n_seeds == 3


def test_group_means_match_a_plain_recomputation_per_resample():
    """Every resample: the ID indices once, then each OOD set's own; AUROC from benchmark.metrics per seed."""
    rng = np.random.default_rng(11)
    runs = {"base": _run(rng, ties=True), "t0": _run(rng, shift=0.4, ties=True), "t1": _run(rng, shift=0.2)}
    settings = Settings(n_resamples=120, seed=2, level=0.9)
    mine = _compare(runs, ("t0", "t1"), settings)

    changes = {name: [] for name in SIZES}
    for child in np.random.SeedSequence(settings.seed).spawn(settings.n_resamples):
        g = np.random.default_rng(child)
        i = g.integers(0, 50, 50)
        picks = {name: g.integers(0, m, m) for name, m in SIZES.items()}
        for name, j in picks.items():

            def au(r: RunScores, i=i, j=j, name=name) -> float:
                return ood_metrics(r.id_scores[i], r.ood[name][j]).auroc

            changes[name].append(np.mean([au(runs["t0"]), au(runs["t1"])]) - au(runs["base"]))
    for grp, members in (("near", ["a"]), ("far", ["b", "c"])):
        samples = np.mean([changes[m] for m in members], axis=0)
        low, high = np.quantile(samples, [0.05, 0.95])
        assert mine.groups[grp].low == pytest.approx(low, abs=1e-12)
        assert mine.groups[grp].high == pytest.approx(high, abs=1e-12)
        point = np.mean(
            [
                np.mean([ood_metrics(runs[t].id_scores, runs[t].ood[m]).auroc for t in ("t0", "t1")])
                - ood_metrics(runs["base"].id_scores, runs["base"].ood[m]).auroc
                for m in members
            ]
        )
        assert mine.groups[grp].mean == pytest.approx(point, abs=1e-12)
    # the two equal-sized far sets were resampled independently: their per-set intervals differ
    assert (mine.per_set["a"].low, mine.per_set["a"].high) != (mine.per_set["b"].low, mine.per_set["b"].high)


def test_a_clear_gain_is_significant_and_no_change_is_not():
    rng = np.random.default_rng(0)
    base = _run(rng, n_id=400)
    better = RunScores(base.id_scores + 1.5, base.id_correct, base.ood)
    runs = {"base": base, "same": base, "better": better}
    settings = Settings(n_resamples=200)
    same = _compare(runs, ("same",), settings)
    assert all(d.mean == d.low == d.high == 0 and not d.significant for d in same.per_set.values())
    assert not same.groups["far"].significant and not same.id_acc.significant
    gain = _compare(runs, ("better",), settings)
    assert all(d.significant and d.low > 0 for d in gain.groups.values())


def test_runs_on_other_test_images_are_refused():
    rng = np.random.default_rng(1)
    runs = {"base": _run(rng), "t": _run(rng, n_id=49)}
    with pytest.raises(OodbenchError, match="same test images"):
        _compare(runs, ("t",), Settings(n_resamples=10))


def test_the_cache_is_keyed_by_the_files_and_settings(tmp_path):
    rng = np.random.default_rng(2)
    runs = {"base": _run(rng), "t": _run(rng, shift=0.2)}
    found = _compare(runs, ("t",), Settings(n_resamples=50))
    key = cache_key(baseline_sha="b" * 64, tuned_shas=["t" * 64], column="mcm {}", groups=GROUPS, settings=Settings())
    assert key != cache_key(
        baseline_sha="b" * 64, tuned_shas=["u" * 64], column="mcm {}", groups=GROUPS, settings=Settings()
    )
    assert key != cache_key(
        baseline_sha="b" * 64, tuned_shas=["t" * 64], column="mcm {}", groups=GROUPS, settings=Settings(seed=1)
    )
    cache = Cache(tmp_path / "site")
    assert cache.get(key) is None
    cache.put(key, found)
    assert Cache(tmp_path / "site").get(key) == found

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    unwritable = Cache(blocked / "site")
    unwritable.put(key, found)  # a cache that cannot be written costs time, never the build
    assert unwritable.get(key) is None and "cannot write the significance cache" in unwritable.warnings[0]
