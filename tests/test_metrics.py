"""Metrics: hand-computed cases, ties, degenerate inputs, and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from benchmark.errors import OodbenchError
from benchmark.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    average_precision,
    curve_metrics,
    fpr_at_95_tpr,
    fpr_at_95_tpr_ood_positive,
    id_accuracy,
    ood_metrics,
    run_counts,
    run_index,
)


def reference_fpr95(id_scores, ood_scores):
    """The MCM/LoCoOp evaluation's rule, written from its description on top of scikit-learn:
    over roc_curve's distinct thresholds (ID positive, no points dropped), up to the first point
    with TPR 1, take the point whose TPR is closest to 0.95, preferring the higher TPR on ties."""
    y = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    s = np.r_[id_scores, ood_scores]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    fpr, tpr = fpr[1:], tpr[1:]  # drop sklearn's (0, 0) point at +inf
    stop = int(np.argmax(tpr >= 1.0))
    fpr, tpr = fpr[: stop + 1][::-1], tpr[: stop + 1][::-1]
    return float(fpr[np.argmin(np.abs(tpr - 0.95))])


def reference_fpr95_ood_positive(id_scores, ood_scores, *, drop_intermediate=True):
    """OpenOOD's rule (openood/evaluators/metrics.py, auc_and_fpr_recall), restated on top of scikit-learn:
    OOD is the positive class and the scores are negated; on roc_curve's points (default
    drop_intermediate=True), the FPR of the first point whose TPR reaches 0.95. With
    drop_intermediate=False it is PyTorch-OOD's rule."""
    ood_indicator = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    fpr, tpr, _ = roc_curve(ood_indicator, -np.r_[id_scores, ood_scores], drop_intermediate=drop_intermediate)
    return float(fpr[np.argmax(tpr >= 0.95)])


def test_perfect_separation():
    m = ood_metrics(np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2]))
    assert (m.fpr95, m.fpr95_ood_positive, m.auroc, m.aupr_in, m.aupr_out) == (0.0, 0.0, 1.0, 1.0, 1.0)
    assert (m.n_id, m.n_ood) == (3, 2)


def test_reversed_separation():
    m = ood_metrics(np.array([0.1, 0.2]), np.array([0.8, 0.9]))
    assert m.fpr95 == 1.0
    assert m.fpr95_ood_positive == 1.0
    assert m.auroc == 0.0


def test_hand_computed_case():
    # ID 20 scores 1..20, OOD 4 scores; TPR 0.95 means accepting 19 ID (threshold 2): OOD 2.5 and 10.5 pass.
    id_s = np.arange(1, 21, dtype=float)
    ood_s = np.array([0.5, 2.5, 10.5, -3.0])
    assert fpr_at_95_tpr(id_s, ood_s) == pytest.approx(2 / 4)
    # AUROC: pairs (id > ood): 0.5 -> 20, 2.5 -> 18, 10.5 -> 10, -3 -> 20 => 68 / 80
    assert auroc(id_s, ood_s) == pytest.approx(68 / 80)


def test_fpr95_tie_between_two_equally_close_points_prefers_higher_tpr():
    # 50 ID: TPR moves in steps of 0.02, so 0.94 and 0.96 are equally close to 0.95.
    id_s = np.arange(50, dtype=float) + 10
    ood_s = np.array([10.5, 11.5, 12.5, 100.0])  # 10.5 accepted only at TPR 1.0; 11.5 only at TPR >= 0.96
    assert fpr_at_95_tpr(id_s, ood_s) == pytest.approx(reference_fpr95(id_s, ood_s))
    # TPR 0.96 (48 ID accepted) holds at two thresholds, 12 (OOD 12.5 and 100 pass) and 11.5 (11.5 too).
    # Walking from the lowest threshold up, as the reference does, the first of them wins: 3 of 4.
    assert fpr_at_95_tpr(id_s, ood_s) == pytest.approx(3 / 4)


def test_tied_scores_across_id_and_ood():
    id_s = np.array([1.0, 1.0, 2.0, 2.0])
    ood_s = np.array([1.0, 2.0])
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score([1, 1, 1, 1, 0, 0], np.r_[id_s, ood_s]))
    assert auroc(id_s, ood_s) == pytest.approx(0.5)  # each pair is tied or balanced


def test_constant_scores():
    m = ood_metrics(np.zeros(10), np.zeros(5))
    assert m.auroc == 0.5
    assert m.fpr95 == 1.0
    assert m.aupr_in == pytest.approx(10 / 15)
    assert m.aupr_out == pytest.approx(5 / 15)
    assert m.fpr95_ood_positive == 1.0  # one threshold: flag everything


def test_single_sample_each():
    assert ood_metrics(np.array([1.0]), np.array([0.0])).auroc == 1.0
    assert ood_metrics(np.array([0.0]), np.array([1.0])).fpr95 == 1.0
    assert ood_metrics(np.array([1.0]), np.array([0.0])).fpr95_ood_positive == 0.0
    assert ood_metrics(np.array([0.0]), np.array([1.0])).fpr95_ood_positive == 1.0
    assert ood_metrics(np.array([0.0]), np.array([0.0])).fpr95_ood_positive == 1.0


def test_fpr95_ood_positive_hand_computed():
    # OOD positive: lower scores are flagged first. Catching 95% of 4 OOD samples needs all 4, so the
    # threshold sits at the highest OOD score 10.5, which also flags the ID samples 1..10: 10 of 20.
    id_s = np.arange(1, 21, dtype=float)
    ood_s = np.array([0.5, 2.5, 10.5, -3.0])
    assert fpr_at_95_tpr_ood_positive(id_s, ood_s) == 0.5
    # 20 OOD: 19 of them (95%) are caught at threshold 2.5, the highest of them, which flags ID 1 and 2.
    ood_s = np.r_[np.linspace(-5, 2.5, 19), 30.0]
    assert fpr_at_95_tpr_ood_positive(id_s, ood_s) == pytest.approx(2 / 20)


def test_fpr95_ood_positive_ties_on_the_first_threshold_reaching_95():
    # 19 of 20 OOD samples tie with 10 ID samples at 0: the first threshold already catches 95% of OOD.
    id_s = np.r_[np.zeros(10), np.ones(10)]
    ood_s = np.r_[np.zeros(19), 5.0]
    assert fpr_at_95_tpr_ood_positive(id_s, ood_s) == 0.5


def test_fpr95_ood_positive_follows_openood_inside_a_straight_diagonal():
    # Every score holds one ID and one OOD sample: the ROC curve is one straight diagonal, and
    # scikit-learn's roc_curve keeps only its ends. OpenOOD's first point reaching TPR 0.95 is then the
    # end (FPR 1), where PyTorch-OOD, which keeps every threshold, stops at 19 of 20 (FPR 0.95).
    id_s = ood_s = np.arange(20, dtype=float)
    assert fpr_at_95_tpr_ood_positive(id_s, ood_s) == 1.0
    assert reference_fpr95_ood_positive(id_s, ood_s) == 1.0
    assert reference_fpr95_ood_positive(id_s, ood_s, drop_intermediate=False) == 0.95
    # the diagonal goes on for 500 thresholds past 95% (more than the first search windows), then bends
    id_s = np.r_[np.arange(10000.0), 20000.0 + np.arange(2000)]
    ood_s = np.arange(10000.0)
    assert fpr_at_95_tpr_ood_positive(id_s, ood_s) == reference_fpr95_ood_positive(id_s, ood_s) == 10000 / 12000
    # a diagonal that bends 21 thresholds past 95%, into OOD-only steps
    id_s = np.r_[np.arange(1000.0), 2000.0 + np.arange(50)]
    ood_s = np.r_[np.arange(1000.0), 1500.0 + np.arange(30)]
    assert fpr_at_95_tpr_ood_positive(id_s, ood_s) == reference_fpr95_ood_positive(id_s, ood_s) == 1000 / 1050


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("rounding", [None, 1])
def test_agrees_with_sklearn(seed, rounding):
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(5, 400, size=2)
    id_s = rng.normal(1.0, 1.0, n_id)
    ood_s = rng.normal(0.0, 1.5, n_ood)
    if rounding is not None:  # many ties
        id_s, ood_s = np.round(id_s, rounding), np.round(ood_s, rounding)
    y = np.r_[np.ones(n_id), np.zeros(n_ood)]
    s = np.r_[id_s, ood_s]
    assert auroc(id_s, ood_s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert aupr_in(id_s, ood_s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert aupr_out(id_s, ood_s) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    assert fpr_at_95_tpr(id_s, ood_s) == pytest.approx(reference_fpr95(id_s, ood_s), abs=1e-12)
    assert fpr_at_95_tpr_ood_positive(id_s, ood_s) == reference_fpr95_ood_positive(id_s, ood_s)


@pytest.mark.parametrize("seed", range(40))
def test_fpr95_ood_positive_agrees_with_openood_on_coarse_ties(seed):
    # few distinct values, so that straight stretches (and dropped points) are common
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(1, 60, size=2)
    levels = rng.integers(1, 6)
    id_s, ood_s = rng.integers(0, levels, n_id).astype(float), rng.integers(0, levels, n_ood).astype(float)
    assert fpr_at_95_tpr_ood_positive(id_s, ood_s) == reference_fpr95_ood_positive(id_s, ood_s)
    assert fpr_at_95_tpr(id_s, ood_s) == reference_fpr95(id_s, ood_s)


def test_one_pass_counts():
    id_s = np.array([3.0, 1.0, 3.0, 2.0])
    ood_s = np.array([2.0, 0.0, 3.0])
    id_counts, ood_counts = run_counts(id_s, ood_s)  # distinct scores 3, 2, 1, 0
    assert id_counts.tolist() == [2, 1, 1, 0]
    assert ood_counts.tolist() == [1, 1, 0, 1]
    id_rank, ood_rank, n = run_index(id_s, ood_s)
    assert (id_rank.tolist(), ood_rank.tolist(), n) == ([0, 2, 0, 1], [1, 3, 0], 4)
    assert np.bincount(id_rank, minlength=n).tolist() == id_counts.tolist()


def test_curve_metrics_rows_and_absent_thresholds():
    """A batch of rows gives each row's own metrics, and a threshold with no samples changes nothing (the
    bootstrap relies on both)."""
    rng = np.random.default_rng(3)
    pairs = [(np.round(rng.normal(1, 1, 80), 1), np.round(rng.normal(0, 1, 60), 1)) for _ in range(3)]
    for id_s, ood_s in pairs:
        id_counts, ood_counts = run_counts(id_s, ood_s)
        empty = rng.random(id_counts.size + 30) < 0.3
        padded_id, padded_ood = np.zeros(empty.size, dtype=int), np.zeros(empty.size, dtype=int)
        keep = np.flatnonzero(~empty)[: id_counts.size]
        padded_id[keep], padded_ood[keep] = id_counts, ood_counts
        both = curve_metrics(np.stack([id_counts, id_counts]), np.stack([ood_counts, ood_counts]))
        padded = curve_metrics(padded_id, padded_ood)
        m = ood_metrics(id_s, ood_s)
        for name, values in both.items():
            assert values.tolist() == [getattr(m, name)] * 2
            assert padded[name][0] == pytest.approx(getattr(m, name), abs=1e-15)


def test_float32_scores_match_float64():
    rng = np.random.default_rng(5)
    id_s, ood_s = rng.normal(1, 1, 500).astype(np.float32), rng.normal(0, 1, 400).astype(np.float32)
    assert ood_metrics(id_s, ood_s) == ood_metrics(id_s.astype(np.float64), ood_s.astype(np.float64))


def test_metrics_are_fractions_and_invariant_to_monotone_transform():
    rng = np.random.default_rng(7)
    id_s, ood_s = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    a = ood_metrics(id_s, ood_s)
    b = ood_metrics(np.exp(id_s), np.exp(ood_s))
    assert a == b
    for v in (a.fpr95, a.fpr95_ood_positive, a.auroc, a.aupr_in, a.aupr_out):
        assert 0.0 <= v <= 1.0


@pytest.mark.parametrize("id_s, ood_s", [([], [1.0]), ([1.0], []), ([np.nan, 1.0], [0.0]), ([1.0], [np.inf])])
def test_degenerate_inputs_are_clear_errors(id_s, ood_s):
    with pytest.raises(OodbenchError):
        ood_metrics(np.array(id_s), np.array(ood_s))


@pytest.mark.parametrize("pos, neg", [([], [1.0]), ([np.nan], [0.0]), ([1.0], [-np.inf]), (["a"], [1.0])])
def test_average_precision_checks_its_input(pos, neg):
    with pytest.raises(OodbenchError):
        average_precision(np.array(pos), np.array(neg))


def test_average_precision_agrees_with_sklearn():
    pos, neg = np.array([0.9, 0.4, 0.4, 0.1]), np.array([0.4, 0.2])
    y = np.r_[np.ones(4), np.zeros(2)]
    assert average_precision(pos, neg) == pytest.approx(average_precision_score(y, np.r_[pos, neg]), abs=1e-15)


def test_id_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0]])
    assert id_accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(OodbenchError):
        id_accuracy(logits, np.array([0, 1]))


@pytest.mark.parametrize(
    "logits, labels, message",
    [
        ([[np.nan, 1.0], [0.0, 3.0]], [0, 1], "NaN or infinite"),
        ([[np.nan, np.nan], [np.nan, np.nan]], [0, 0], "NaN or infinite"),
        ([[np.inf, 1.0], [0.0, 3.0]], [0, 1], "NaN or infinite"),
        ([[2.0, 1.0], [0.0, 3.0]], [0, 2], "outside \\[0, 2\\)"),
        ([[2.0, 1.0], [0.0, 3.0]], [-1, 1], "outside \\[0, 2\\)"),
        ([[2.0, 1.0], [0.0, 3.0]], [0.0, 1.0], "integer class indices"),
        ([2.0, 1.0], [0, 1], "logits \\[N, C\\]"),
    ],
)
def test_id_accuracy_rejects_invalid_logits_and_labels(logits, labels, message):
    with pytest.raises(OodbenchError, match=message):
        id_accuracy(np.array(logits), np.array(labels))
