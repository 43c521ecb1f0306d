"""Bootstrap intervals and paired deltas: against a naive loop, and on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark import stats
from benchmark.errors import OodbenchError
from benchmark.metrics import CURVE_METRICS, ood_metrics
from benchmark.stats import bootstrap_intervals, paired_delta, resampled_metrics


def naive_resamples(id_s, ood_s, id_correct, n_resamples, seed):
    """The documented draws (resample r: ID indices, then OOD indices, from the r-th spawned generator),
    each resample re-sorted and scored by ood_metrics."""
    out = {name: [] for name in (*CURVE_METRICS, "id_acc")}
    for child in np.random.SeedSequence(seed).spawn(n_resamples):
        rng = np.random.default_rng(child)
        i, o = rng.integers(0, id_s.size, id_s.size), rng.integers(0, ood_s.size, ood_s.size)
        m = ood_metrics(id_s[i], ood_s[o])
        for name in CURVE_METRICS:
            out[name].append(getattr(m, name))
        out["id_acc"].append(id_correct[i].mean())
    return {name: np.array(v) for name, v in out.items()}


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_based_resamples_equal_a_naive_loop(decimals, seed):
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(2, 90, size=2)
    id_s, ood_s = rng.normal(1, 1, n_id), rng.normal(0, 1.5, n_ood)
    if decimals is not None:  # ties, and thresholds that many resamples miss
        id_s, ood_s = np.round(id_s, decimals), np.round(ood_s, decimals)
    correct = rng.random(n_id) < 0.7
    got = resampled_metrics(id_s, ood_s, id_correct=correct, n_resamples=60, seed=seed)
    want = naive_resamples(id_s, ood_s, correct, 60, seed)
    for name in ("fpr95", "fpr95_ood_positive", "id_acc"):  # ratios of counts: exact
        assert got[name].tolist() == want[name].tolist(), name
    for name in ("auroc", "aupr_in", "aupr_out"):
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-13, err_msg=name)


def test_batching_does_not_change_the_draws(monkeypatch):
    rng = np.random.default_rng(4)
    id_s, ood_s = rng.normal(1, 1, 200), rng.normal(0, 1, 150)
    whole = resampled_metrics(id_s, ood_s, n_resamples=25, seed=9)
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 700)  # two resamples per batch
    batched = resampled_metrics(id_s, ood_s, n_resamples=25, seed=9)
    first = resampled_metrics(id_s, ood_s, n_resamples=10, seed=9)
    for name in CURVE_METRICS:
        assert whole[name].tolist() == batched[name].tolist()
        assert whole[name][:10].tolist() == first[name].tolist()  # resample r does not depend on the count


def test_seeded():
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    a = bootstrap_intervals(id_s, ood_s, n_resamples=50, seed=1)
    assert a == bootstrap_intervals(id_s, ood_s, n_resamples=50, seed=1)
    assert a != bootstrap_intervals(id_s, ood_s, n_resamples=50, seed=2)


def test_intervals_contain_the_estimate_and_narrow_with_n():
    rng = np.random.default_rng(1)
    widths = []
    for n in (300, 6000):
        id_s, ood_s = rng.normal(1, 1, n), rng.normal(0, 1, n)
        correct = rng.random(n) < 0.8
        intervals = bootstrap_intervals(id_s, ood_s, id_correct=correct, n_resamples=400, seed=0)
        m = ood_metrics(id_s, ood_s)
        point = {name: getattr(m, name) for name in CURVE_METRICS} | {"id_acc": correct.mean()}
        assert set(intervals) == set(point)
        for name, (low, high) in intervals.items():
            assert 0.0 <= low <= point[name] <= high <= 1.0, name
        widths.append({name: high - low for name, (low, high) in intervals.items()})
    for name in widths[0]:
        # the width shrinks like 1/sqrt(n): by about sqrt(20) ~ 4.5 here
        assert widths[1][name] < widths[0][name] / 2.5, name


def test_interval_of_a_constant_metric_is_a_point():
    intervals = bootstrap_intervals(np.ones(40), np.zeros(30), n_resamples=30)
    assert intervals["auroc"] == (1.0, 1.0)
    assert intervals["fpr95"] == intervals["fpr95_ood_positive"] == (0.0, 0.0)
    assert "id_acc" not in intervals


def test_identical_inputs_give_zero_delta_not_significant():
    rng = np.random.default_rng(2)
    id_s, ood_s = rng.normal(1, 1, 400), rng.normal(0, 1, 300)
    correct = rng.random(400) < 0.8
    deltas = paired_delta(
        [(id_s, ood_s), (id_s.copy(), ood_s.copy())],
        (id_s, ood_s),
        id_correct_tuned=[correct, correct],
        id_correct_baseline=correct,
        n_resamples=100,
    )
    assert set(deltas) == {*CURVE_METRICS, "id_acc"}
    for name, d in deltas.items():
        assert (d.mean, d.low, d.high, d.significant) == (0.0, 0.0, 0.0, False), name


def test_clearly_better_tuned_scores_are_a_significant_gain():
    rng = np.random.default_rng(3)
    n_id, n_ood = 1500, 1000
    base_id, base_ood = rng.normal(0.5, 1, n_id), rng.normal(0, 1, n_ood)
    tuned = [(base_id + 1.0 + rng.normal(0, 0.2, n_id), base_ood + rng.normal(0, 0.2, n_ood)) for _ in range(3)]
    deltas = paired_delta(tuned, (base_id, base_ood), n_resamples=300)
    auroc = deltas["auroc"]
    assert auroc.significant and 0 < auroc.low <= auroc.mean <= auroc.high
    want = np.mean([ood_metrics(*t).auroc for t in tuned]) - ood_metrics(base_id, base_ood).auroc
    assert auroc.mean == pytest.approx(want, abs=1e-12)
    assert deltas["fpr95"].significant and deltas["fpr95"].high < 0
    assert deltas["fpr95_ood_positive"].significant and deltas["fpr95_ood_positive"].high < 0


def test_delta_pools_the_seeds():
    # seed 1 equals the baseline, seed 2 is better: the change is half of seed 2's
    rng = np.random.default_rng(4)
    base = (rng.normal(0.5, 1, 500), rng.normal(0, 1, 400))
    better = (base[0] + 1.0, base[1])
    one = paired_delta([better], base, n_resamples=200, seed=5)
    pooled = paired_delta([base, better], base, n_resamples=200, seed=5)
    for name in CURVE_METRICS:
        assert pooled[name].mean == pytest.approx(one[name].mean / 2, abs=1e-12)
        assert pooled[name].low == pytest.approx(one[name].low / 2, abs=1e-12)
        assert pooled[name].high == pytest.approx(one[name].high / 2, abs=1e-12)


def test_pairing_narrows_the_interval():
    # The tuned scores are the baseline's plus a small, even shift of the ID scores: most of the spread of
    # either metric comes from which images are drawn, which pairing cancels.
    rng = np.random.default_rng(5)
    base_id, base_ood = rng.normal(1, 1, 800), rng.normal(0, 1, 600)
    tuned_id = base_id + 0.1 + rng.normal(0, 0.05, 800)
    paired = paired_delta([(tuned_id, base_ood)], (base_id, base_ood), n_resamples=400, seed=1)["auroc"]
    unpaired = (
        resampled_metrics(tuned_id, base_ood, n_resamples=400, seed=2)["auroc"]
        - resampled_metrics(base_id, base_ood, n_resamples=400, seed=3)["auroc"]
    )
    unpaired_low, unpaired_high = np.quantile(unpaired, [0.025, 0.975])
    assert paired.high - paired.low < (unpaired_high - unpaired_low) / 3
    assert paired.significant and not (unpaired_low > 0)  # only the paired test sees the small gain


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_resamples": 0}, "n_resamples"),
        ({"n_resamples": 2.5}, "n_resamples"),
        ({"seed": -1}, "seed"),
        ({"level": 1.0}, "level"),
        ({"id_correct": np.ones(5)}, "one bool per ID sample"),
        ({"id_correct": np.ones(4, dtype=bool)}, "one bool per ID sample"),
    ],
)
def test_bootstrap_rejects_bad_settings(kwargs, message):
    with pytest.raises(OodbenchError, match=message):
        bootstrap_intervals(np.arange(5.0), np.arange(3.0), **kwargs)


def test_bootstrap_rejects_bad_scores():
    with pytest.raises(OodbenchError, match="NaN"):
        bootstrap_intervals(np.array([1.0, np.nan]), np.arange(3.0))


def test_paired_delta_rejects_mismatched_inputs():
    base = (np.arange(5.0), np.arange(3.0))
    with pytest.raises(OodbenchError, match="same test images"):
        paired_delta([(np.arange(4.0), np.arange(3.0))], base)
    with pytest.raises(OodbenchError, match="at least one"):
        paired_delta([], base)
    with pytest.raises(OodbenchError, match="or for neither"):
        paired_delta([base], base, id_correct_baseline=np.ones(5, dtype=bool))
    with pytest.raises(OodbenchError, match="2 tuned seeds"):
        paired_delta([base, base], base, id_correct_tuned=[np.ones(5, bool)], id_correct_baseline=np.ones(5, bool))
