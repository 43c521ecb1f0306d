"""OOD detection metrics, the one implementation in the project.

Scores are higher-is-more-ID (docs/design.md). This module is the only place a sign or a class role flips.

- `fpr95`: ID is the positive class, as in the MCM/LoCoOp reference evaluation: over the ROC curve's
  distinct thresholds, up to the first one that accepts every ID sample, the point whose TPR is
  closest to 0.95 (ties go to the higher TPR, then to the lower threshold), reported as its FPR: the
  fraction of OOD samples accepted.
- `fpr95_ood_positive`: OOD is the positive class, as OpenOOD defines it
  (Jingkang50/OpenOOD openood/evaluators/metrics.py:L40-L49 at commit 3c35632e, kept unchanged in
  YBZh/OpenOOD-VLM openood/evaluators/metrics.py:L40-L49): the ROC curve of scikit-learn's
  `roc_curve(ood_indicator, -conf)` with its default `drop_intermediate=True`, which removes every
  point lying in the middle of a straight run of equal steps (scikit-learn 1.9.1
  sklearn/metrics/_ranking.py:L1332-L1344); then the first point whose TPR (fraction of OOD flagged)
  is >= 0.95, reported as its FPR: the fraction of ID samples flagged. PyTorch-OOD 0.4.0
  (pytorch_ood/metrics/functional.py:L142-L148) takes the first point with TPR >= 0.95 over all
  distinct thresholds, without dropping any; the two differ only when that point is dropped, i.e.
  lies inside a straight diagonal stretch of the curve (ID and OOD samples tied in equal proportions).
- `auroc`: area under the ROC curve (the same under both conventions); tied scores count one half.
- `aupr_in` / `aupr_out`: average precision as scikit-learn defines it, sum over thresholds of
  (R_n - R_{n-1}) P_n, with ID / OOD as the positive class (OOD on negated scores). OpenOOD instead
  integrates the precision-recall curve by the trapezoidal rule, so its AUPR differs slightly.

Everything comes from one pass: the scores are sorted once (each side sorted, then one linear merge),
reduced to the number of ID and OOD samples at each distinct score, and every metric is read off those
counts by `curve_metrics`. The bootstrap (benchmark.stats) calls the same `curve_metrics` with resampled
counts, so there is a single implementation of each metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.errors import OodbenchError

RECALL_LEVEL = 0.95
CURVE_METRICS = ("fpr95", "fpr95_ood_positive", "auroc", "aupr_in", "aupr_out")


@dataclass(frozen=True)
class OODMetrics:
    fpr95: float
    fpr95_ood_positive: float
    auroc: float
    aupr_in: float
    aupr_out: float
    n_id: int
    n_ood: int


def check_scores(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both score arrays as flat float arrays (float32 stays float32), or a clear error."""
    id_scores, ood_scores = np.asarray(id_scores).ravel(), np.asarray(ood_scores).ravel()
    for what, s in (("ID", id_scores), ("OOD", ood_scores)):
        if s.dtype.kind not in "biuf":
            raise OodbenchError(f"{what} scores must be real numbers (got dtype {s.dtype}); pass a float array.")
    dtype = np.float32 if id_scores.dtype == ood_scores.dtype == np.float32 else np.float64
    id_scores, ood_scores = id_scores.astype(dtype, copy=False), ood_scores.astype(dtype, copy=False)
    if id_scores.size == 0 or ood_scores.size == 0:
        raise OodbenchError(
            f"OOD metrics need at least one ID and one OOD score (got {id_scores.size} ID, {ood_scores.size} OOD); "
            "check that both datasets loaded images."
        )
    for what, s in (("ID", id_scores), ("OOD", ood_scores)):
        if not np.isfinite(s).all():
            raise OodbenchError(
                f"{int((~np.isfinite(s)).sum())} {what} scores are NaN or infinite; the method or score produced "
                "invalid values (look for a division by zero or an overflow in its logits)."
            )
    return id_scores, ood_scores


def run_counts(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number of ID and of OOD samples at each distinct score, highest score first (checked inputs).

    Each side is sorted on its own (a plain sort, much cheaper than an argsort), then a stable argsort
    of the two sorted halves merges them in linear time; its indices tell which side each value came from.
    """
    merged = np.concatenate([id_scores, ood_scores])
    merged[: id_scores.size].sort()
    merged[id_scores.size :].sort()
    order = np.argsort(merged, kind="stable")
    is_ood = (order >= id_scores.size).view(np.int8)
    values = merged[order]
    new_value = values[1:] != values[:-1]
    if new_value.all():  # no ties: one sample per distinct score
        return (1 - is_ood)[::-1], is_ood[::-1]
    ends = np.append(np.flatnonzero(new_value), values.size - 1)  # last position of each run of equal scores
    ood_counts = np.diff(np.cumsum(is_ood)[ends], prepend=0)
    id_counts = np.diff(ends, prepend=-1) - ood_counts
    return id_counts[::-1], ood_counts[::-1]


def run_index(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """For each ID and each OOD sample, the rank of its distinct score, highest first, and the number of
    distinct scores (checked inputs). Counting samples per rank gives `run_counts`; counting a resample's
    indices per rank gives that resample's counts without sorting again."""
    scores = np.concatenate([id_scores, ood_scores])
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(scores.size, dtype=np.int64)
    ranks[order] = np.concatenate([[0], np.cumsum(np.diff(scores[order]) != 0)])
    return ranks[: id_scores.size], ranks[id_scores.size :], int(ranks[order[-1]]) + 1


def _first_at_least(cum: np.ndarray, value: np.ndarray, side: str = "left") -> np.ndarray:
    """Per row of nondecreasing counts, the first index whose count is >= value (side="left") or > value."""
    return np.array([np.searchsorted(row, v, side=side) for row, v in zip(cum, value, strict=True)], dtype=np.int64)


def _count_reaching(n: np.ndarray) -> np.ndarray:
    """The smallest count c with c / n >= RECALL_LEVEL as floating point evaluates it, per total n."""
    c = np.ceil(n * RECALL_LEVEL).astype(np.int64)
    c -= (c - 1) / n >= RECALL_LEVEL
    return c + (c / n < RECALL_LEVEL)


def _fpr_closest(tps: np.ndarray, fps: np.ndarray) -> np.ndarray:
    """The MCM/LoCoOp FPR at 95% TPR per row (thresholds highest first): among thresholds up to the first with
    TPR 1, the FPR at the TPR closest to 0.95; on equal distance the lowest threshold wins (the higher TPR,
    then more false positives).

    TPR only grows along the thresholds, so the closest TPR is at the first threshold reaching 0.95 (c) or
    the one before it; TPR - 0.95 is exact above 0.95, so only thresholds with the same count as c tie it."""
    rows = np.arange(tps.shape[0])
    n_pos = tps[:, -1]
    c = _first_at_least(tps, _count_reaching(n_pos))
    # the last threshold with the same TPR as c, but never past the first one with TPR 1
    last_equal = np.where(tps[rows, c] == n_pos, c, _first_at_least(tps, tps[rows, c], side="right") - 1)
    gap_at = np.abs(tps[rows, c] / n_pos - RECALL_LEVEL)
    gap_before = np.where(c > 0, np.abs(tps[rows, c - 1] / n_pos - RECALL_LEVEL), np.inf)
    best = np.where(gap_before < gap_at, c - 1, last_equal)
    return fps[rows, best] / fps[:, -1]


def _fpr_first_reaching(tps: np.ndarray, fps: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """OpenOOD's FPR at 95% TPR per row: on the curve of scikit-learn's roc_curve(drop_intermediate=True),
    the FPR of the first point with TPR >= 0.95. pos/neg are the counts per threshold, tps/fps their
    cumulative sums; thresholds where both are zero do not exist for that row (absent from a resample).

    scikit-learn drops a point when the steps into and out of it are equal (it lies inside a straight run).
    The first point reaching 95% is such a point only inside a run of equal steps; the first point that is
    kept is then the end of that run: the point before the next present threshold with a different step,
    or the last point. The first present point is always kept."""
    rows, width = np.arange(tps.shape[0]), tps.shape[1]
    q = _first_at_least(tps, _count_reaching(tps[:, -1]))
    step_pos, step_neg = pos[rows, q], neg[rows, q]
    is_first = tps[rows, q] - step_pos + fps[rows, q] - step_neg == 0  # the first present point is kept
    end = np.where(is_first, q, width - 1)
    todo = ~is_first & (q < width - 1)  # rows still looking for the end of the run through q
    window = 64
    while todo.any():
        r = rows[todo]
        cols = q[r, None] + 1 + np.arange(window)
        inside = cols < width
        cols = np.minimum(cols, width - 1)
        p, n = pos[r[:, None], cols], neg[r[:, None], cols]
        turns = inside & (p + n > 0) & ((p != step_pos[r, None]) | (n != step_neg[r, None]))
        found = turns.any(axis=1)
        end[r[found]] = cols[found, np.argmax(turns[found], axis=1)] - 1
        todo[r[found | ~inside[:, -1]]] = False  # no turn up to the last point: the run ends there
        window *= 4
    return fps[rows, end] / fps[:, -1]


def curve_metrics(id_counts: np.ndarray, ood_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Every curve metric from the ID and OOD counts at each distinct score, highest score first.

    Accepts one row of counts ([T]) or a batch of weightings of the same thresholds ([R, T], e.g. bootstrap
    resamples, where a count may be 0) and returns one value per row for each name in CURVE_METRICS. The
    arithmetic is scikit-learn's, step for step, so the values equal its own to the last bit or nearly. Three
    work arrays are reused throughout: on large inputs, fresh memory costs more than the arithmetic.
    """
    id_counts, ood_counts = np.atleast_2d(id_counts), np.atleast_2d(ood_counts)
    rows, width = id_counts.shape
    # samples at or above each threshold (ID positive), after a leading 0; float64 counts are exact below 2**53
    above_id, above_ood = np.zeros((rows, width + 1)), np.zeros((rows, width + 1))
    np.cumsum(id_counts, axis=1, out=above_id[:, 1:])
    np.cumsum(ood_counts, axis=1, out=above_ood[:, 1:])
    n_id, n_ood = above_id[:, -1:], above_ood[:, -1:]
    tps, fps = above_id[:, 1:], above_ood[:, 1:]
    a, b, c = np.empty_like(above_id), np.empty_like(above_id), np.empty_like(above_id)
    values = {"fpr95": _fpr_closest(tps, fps)}

    # OOD positive, on negated scores: samples at or below each threshold (before a trailing 0), read
    # backwards so that the thresholds go lowest first
    below_ood, below_id = np.subtract(n_ood, above_ood, out=a), np.subtract(n_id, above_id, out=b)
    values["fpr95_ood_positive"] = _fpr_first_reaching(
        below_ood[:, -2::-1], below_id[:, -2::-1], ood_counts[:, ::-1], id_counts[:, ::-1]
    )
    # AUPR-out: sum of (R_n - R_{n-1}) P_n over thresholds, lowest first, as scikit-learn's average precision
    accepted = np.add(below_ood, below_id, out=b)[:, :-1]
    precision = np.divide(below_ood[:, :-1], np.maximum(accepted, 1.0, out=accepted), out=accepted)
    recall = np.divide(below_ood, n_ood, out=a)
    terms = np.multiply(np.subtract(recall[:, :-1], recall[:, 1:], out=c[:, 1:]), precision, out=c[:, 1:])
    values["aupr_out"] = np.sum(terms[:, ::-1], axis=1)

    # AUPR-in: the same sum with ID positive, thresholds highest first
    tpr = np.divide(above_id, n_id, out=a)
    accepted = np.add(tps, fps, out=b[:, 1:])
    precision = np.divide(tps, np.maximum(accepted, 1.0, out=accepted), out=accepted)
    terms = np.multiply(np.subtract(tpr[:, 1:], tpr[:, :-1], out=c[:, 1:]), precision, out=c[:, 1:])
    values["aupr_in"] = np.sum(terms, axis=1)
    # AUROC by the trapezoidal rule, as np.trapezoid(tpr, fpr) computes it
    fpr = np.divide(above_ood, n_ood, out=b)
    sides = np.add(tpr[:, 1:], tpr[:, :-1], out=c[:, 1:])
    widths = np.subtract(fpr[:, 1:], fpr[:, :-1], out=a[:, 1:])  # tpr is not needed after sides
    values["auroc"] = np.sum(np.divide(np.multiply(widths, sides, out=sides), 2.0, out=sides), axis=1)
    return values


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> OODMetrics:
    """All curve metrics of one ID/OOD pair, from one sort and one input check."""
    id_scores, ood_scores = check_scores(id_scores, ood_scores)
    values = curve_metrics(*run_counts(id_scores, ood_scores))
    return OODMetrics(
        **{name: float(v[0]) for name, v in values.items()}, n_id=int(id_scores.size), n_ood=int(ood_scores.size)
    )


def fpr_at_95_tpr(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """FPR95 with ID positive (MCM/LoCoOp); see the module docstring."""
    return ood_metrics(id_scores, ood_scores).fpr95


def fpr_at_95_tpr_ood_positive(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """FPR95 with OOD positive (OpenOOD); see the module docstring."""
    return ood_metrics(id_scores, ood_scores).fpr95_ood_positive


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve (ID positive); tied scores count one half."""
    return ood_metrics(id_scores, ood_scores).auroc


def average_precision(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision as scikit-learn defines it, with `pos` the positive class (higher is more positive)."""
    return ood_metrics(pos, neg).aupr_in


def aupr_in(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    return ood_metrics(id_scores, ood_scores).aupr_in


def aupr_out(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    return ood_metrics(id_scores, ood_scores).aupr_out


def id_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy on the ID test split; NaN/inf logits and labels outside [0, C) are errors."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0] or labels.size == 0:
        raise OodbenchError(f"id_accuracy needs logits [N, C] and N labels (got {logits.shape} and {labels.shape}).")
    if logits.dtype.kind not in "biuf":
        raise OodbenchError(f"id_accuracy needs numeric logits (got dtype {logits.dtype}).")
    if not np.isfinite(logits).all():
        raise OodbenchError(
            f"{int((~np.isfinite(logits)).any(axis=1).sum())} of {logits.shape[0]} ID samples have NaN or infinite "
            "logits; the method produced invalid values (look for a division by zero or an overflow)."
        )
    if labels.dtype.kind not in "iu":
        raise OodbenchError(f"ID labels must be integer class indices (got dtype {labels.dtype}).")
    bad = (labels < 0) | (labels >= logits.shape[1])
    if bad.any():
        raise OodbenchError(
            f"{int(bad.sum())} ID labels are outside [0, {logits.shape[1]}) (first: {labels[bad][0]}); the labels "
            "do not match the method's classes (check the dataset's class list)."
        )
    return float(np.mean(np.argmax(logits, axis=1) == labels))
