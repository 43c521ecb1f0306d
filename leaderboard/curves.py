"""ROC curves and score histograms of one run, from its per-sample scores, for the entry pages.

The ROC curve is read off the same counts `benchmark.metrics` computes its metrics from (ID is the positive
class: a threshold accepts the images scoring at or above it; TPR is the fraction of ID images accepted, FPR
the fraction of OOD images accepted). A drawn curve keeps only the vertices needed at the chart's size: the
first vertex reaching each step of 1/`resolution` in FPR and in TPR, plus both ends, all exact points of
the curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.metrics import check_scores, run_counts

RESOLUTION = 200  # vertices per axis a drawn ROC curve keeps at most
BINS = 30


@dataclass(frozen=True)
class Roc:
    fpr: np.ndarray  # from 0 to 1
    tpr: np.ndarray


@dataclass(frozen=True)
class Histogram:
    edges: np.ndarray  # BINS + 1
    id_share: np.ndarray  # fraction of ID images per bin
    ood_share: np.ndarray  # fraction of OOD images per bin
    clipped: bool  # the outer bins also hold the scores beyond the shown range


def roc(id_scores: np.ndarray, ood_scores: np.ndarray, *, resolution: int = RESOLUTION) -> Roc:
    """The ROC curve (thresholds from the highest score down), thinned to at most ~2 x resolution vertices."""
    id_scores, ood_scores = check_scores(id_scores, ood_scores)
    id_counts, ood_counts = run_counts(id_scores, ood_scores)
    tpr = np.concatenate([[0.0], np.cumsum(id_counts) / id_scores.size])
    fpr = np.concatenate([[0.0], np.cumsum(ood_counts) / ood_scores.size])
    grid = np.linspace(0.0, 1.0, resolution + 1)
    keep = np.unique(
        np.concatenate(
            [
                [0, tpr.size - 1],
                np.minimum(np.searchsorted(fpr, grid, side="left"), tpr.size - 1),
                np.minimum(np.searchsorted(tpr, grid, side="left"), tpr.size - 1),
            ]
        )
    )
    return Roc(fpr=fpr[keep], tpr=tpr[keep])


def histogram(id_scores: np.ndarray, ood_scores: np.ndarray, *, bins: int = BINS) -> Histogram:
    """ID and OOD scores on shared bins spanning the 0.5th to 99.5th percentile of all scores (the outer
    bins take what lies beyond, so a few extreme scores do not squash the picture), as fractions per set."""
    id_scores, ood_scores = check_scores(id_scores, ood_scores)
    both = np.concatenate([id_scores, ood_scores]).astype(np.float64)
    lo, hi = np.quantile(both, [0.005, 0.995])
    if not hi > lo:
        lo, hi = float(both.min()), float(both.max())
    if not hi > lo:  # every score equal
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def share(x: np.ndarray) -> np.ndarray:
        counts, _ = np.histogram(np.clip(x.astype(np.float64), lo, hi), bins=edges)
        return counts / x.size

    clipped = bool((both < lo).any() or (both > hi).any())
    return Histogram(edges=edges, id_share=share(id_scores), ood_share=share(ood_scores), clipped=clipped)
