"""Metrics: hand-computed cases, ties, degenerate inputs, and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from benchmark.errors import OodbenchError
from benchmark.metrics import aupr_in, aupr_out, auroc, fpr_at_95_tpr, id_accuracy, ood_metrics


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


def test_perfect_separation():
    m = ood_metrics(np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2]))
    assert (m.fpr95, m.auroc, m.aupr_in, m.aupr_out) == (0.0, 1.0, 1.0, 1.0)
    assert (m.n_id, m.n_ood) == (3, 2)


def test_reversed_separation():
    m = ood_metrics(np.array([0.1, 0.2]), np.array([0.8, 0.9]))
    assert m.fpr95 == 1.0
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


def test_single_sample_each():
    assert ood_metrics(np.array([1.0]), np.array([0.0])).auroc == 1.0
    assert ood_metrics(np.array([0.0]), np.array([1.0])).fpr95 == 1.0


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


def test_metrics_are_fractions_and_invariant_to_monotone_transform():
    rng = np.random.default_rng(7)
    id_s, ood_s = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    a = ood_metrics(id_s, ood_s)
    b = ood_metrics(np.exp(id_s), np.exp(ood_s))
    assert a == b
    for v in (a.fpr95, a.auroc, a.aupr_in, a.aupr_out):
        assert 0.0 <= v <= 1.0


@pytest.mark.parametrize("id_s, ood_s", [([], [1.0]), ([1.0], []), ([np.nan, 1.0], [0.0]), ([1.0], [np.inf])])
def test_degenerate_inputs_are_clear_errors(id_s, ood_s):
    with pytest.raises(OodbenchError):
        ood_metrics(np.array(id_s), np.array(ood_s))


def test_id_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0]])
    assert id_accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(OodbenchError):
        id_accuracy(logits, np.array([0, 1]))
