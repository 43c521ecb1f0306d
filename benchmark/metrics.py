"""OOD detection metrics, the one implementation in the project.

Convention (docs/design.md, docs/fidelity.md): scores are higher-is-more-ID and ID is the positive class. `fpr95`
follows the MCM/LoCoOp reference evaluation: over the ROC curve's distinct thresholds, the point
whose TPR is closest to 0.95 (ties go to the higher TPR), reported as its FPR. `aupr_out` is
average precision with OOD positive on negated scores; this module is the only place a sign flips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.errors import OodbenchError

RECALL_LEVEL = 0.95


@dataclass(frozen=True)
class OODMetrics:
    fpr95: float
    fpr95_ood_positive: float
    auroc: float
    aupr_in: float
    aupr_out: float
    n_id: int
    n_ood: int


def _check(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if id_scores.size == 0 or ood_scores.size == 0:
        raise OodbenchError(
            f"OOD metrics need at least one ID and one OOD score (got {id_scores.size} ID, {ood_scores.size} OOD); "
            "check that both datasets loaded images."
        )
    for what, s in (("ID", id_scores), ("OOD", ood_scores)):
        if not np.all(np.isfinite(s)):
            raise OodbenchError(
                f"{int((~np.isfinite(s)).sum())} {what} scores are NaN or infinite; the method or score produced "
                "invalid values (look for a division by zero or an overflow in its logits)."
            )
    return id_scores, ood_scores


def _curve(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (true positives, false positives) at each distinct threshold, highest first."""
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels)[last_of_run]
    fps = last_of_run + 1 - tps
    return tps, fps


def fpr_at_95_tpr(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    id_scores, ood_scores = _check(id_scores, ood_scores)
    tps, fps = _curve(id_scores, ood_scores)
    stop = int(np.searchsorted(tps, tps[-1]))  # first threshold with TPR = 1
    tpr = tps[: stop + 1][::-1] / tps[-1]  # highest TPR first, so argmin breaks ties towards it
    best = int(np.argmin(np.abs(tpr - RECALL_LEVEL)))
    return float(fps[: stop + 1][::-1][best] / ood_scores.size)


def fpr_at_95_tpr_ood_positive(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """OOD positive (OpenOOD's convention): the fraction of ID samples flagged as OOD at the first threshold
    (scanning from most OOD-like) that catches at least 95% of the OOD samples."""
    id_scores, ood_scores = _check(id_scores, ood_scores)
    tps, fps = _curve(-ood_scores, -id_scores)
    first = int(np.argmax(tps / tps[-1] >= RECALL_LEVEL))
    return float(fps[first] / id_scores.size)


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve (ID positive); tied scores count one half."""
    id_scores, ood_scores = _check(id_scores, ood_scores)
    tps, fps = _curve(id_scores, ood_scores)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr))


def average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision as scikit-learn defines it: sum over thresholds of (R_n - R_{n-1}) P_n."""
    tps, fps = _curve(pos, neg)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def aupr_in(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    id_scores, ood_scores = _check(id_scores, ood_scores)
    return average_precision(id_scores, ood_scores)


def aupr_out(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    id_scores, ood_scores = _check(id_scores, ood_scores)
    return average_precision(-ood_scores, -id_scores)


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> OODMetrics:
    id_scores, ood_scores = _check(id_scores, ood_scores)
    return OODMetrics(
        fpr95=fpr_at_95_tpr(id_scores, ood_scores),
        fpr95_ood_positive=fpr_at_95_tpr_ood_positive(id_scores, ood_scores),
        auroc=auroc(id_scores, ood_scores),
        aupr_in=aupr_in(id_scores, ood_scores),
        aupr_out=aupr_out(id_scores, ood_scores),
        n_id=int(id_scores.size),
        n_ood=int(ood_scores.size),
    )


def id_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy on the ID test split."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0] or labels.size == 0:
        raise OodbenchError(f"id_accuracy needs logits [N, C] and N labels (got {logits.shape} and {labels.shape}).")
    return float(np.mean(np.argmax(logits, axis=1) == labels))
