"""ROC curves and score histograms of one run, from its per-sample scores, for the entry pages.

The ROC curve is read off the same counts `benchmark.metrics` computes its metrics from (ID is the positive
class: a threshold accepts the images scoring at or above it; TPR is the fraction of ID images accepted, FPR
the fraction of OOD images accepted). A drawn curve keeps only the vertices needed at the chart's size: the
first vertex reaching each step of 1/`resolution` in FPR and in TPR, plus both ends, all exact points of
the curve.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from benchmark.metrics import check_scores, run_counts

VERSION = 1  # bump when what is drawn changes: cached curves carry it in their key
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


@dataclass(frozen=True)
class RunCurves:
    """One run's ROC curve and histogram per OOD set for one score variant: what an entry page draws, and
    what the site cache keeps (numbers only) so that a rebuild does not read the per-sample scores again."""

    roc: dict[str, Roc]
    histograms: dict[str, Histogram]

    def to_json(self) -> dict:
        return {
            "roc": {k: {"fpr": r.fpr.tolist(), "tpr": r.tpr.tolist()} for k, r in self.roc.items()},
            "histograms": {
                k: {
                    "edges": h.edges.tolist(),
                    "id": h.id_share.tolist(),
                    "ood": h.ood_share.tolist(),
                    "clipped": h.clipped,
                }
                for k, h in self.histograms.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict) -> RunCurves:
        """Read back from the cache; anything but lists of numbers of the right lengths raises."""

        def numbers(values: list) -> np.ndarray:
            out = np.asarray(values, dtype=np.float64)
            if out.ndim != 1 or not np.isfinite(out).all():
                raise ValueError("expected a list of finite numbers")
            return out

        roc_ = {str(k): Roc(fpr=numbers(v["fpr"]), tpr=numbers(v["tpr"])) for k, v in data["roc"].items()}
        if any(r.fpr.size != r.tpr.size for r in roc_.values()):
            raise ValueError("an ROC curve needs as many FPR as TPR values")
        hist = {}
        for k, v in data["histograms"].items():
            edges, ids, oods = numbers(v["edges"]), numbers(v["id"]), numbers(v["ood"])
            if not (ids.size == oods.size == edges.size - 1) or not isinstance(v["clipped"], bool):
                raise ValueError("a histogram needs one share per bin and a clipped flag")
            hist[str(k)] = Histogram(edges=edges, id_share=ids, ood_share=oods, clipped=v["clipped"])
        return cls(roc=roc_, histograms=hist)


def run_curves(id_scores: np.ndarray, ood: dict[str, np.ndarray]) -> RunCurves:
    return RunCurves(
        roc={name: roc(id_scores, y) for name, y in ood.items()},
        histograms={name: histogram(id_scores, y) for name, y in ood.items()},
    )


def curves_key(*, sidecar_sha: str, column: str, sets: list[str]) -> str:
    """The cache key of one run's curves for one score variant."""
    blob = json.dumps(
        {"version": VERSION, "sidecar": sidecar_sha, "column": column, "sets": sets, "bins": BINS, "res": RESOLUTION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()
