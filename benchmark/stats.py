"""Confidence intervals and significance for the OOD metrics, by a seeded, vectorised bootstrap.

A resample draws n_id ID samples and n_ood OOD samples with replacement, each side on its own. Resample r
draws its ID indices, then its OOD indices, from `np.random.default_rng(np.random.SeedSequence(seed).spawn(
n_resamples)[r])`, so a resample does not depend on how many others are drawn or how they are batched.

No resample is sorted again: the scores are ranked once (`metrics.run_index`), a resample is the number of
times it drew each distinct score, and `metrics.curve_metrics`, the one implementation of every metric,
reads all metrics of a batch of resamples off those counts at once. Intervals are percentile intervals.

`paired_delta` tests a fine-tuned entry against zero-shot on the same test images: each resample applies
the same image indices to both (a paired bootstrap), so the noise the two share, the draw of images,
cancels in the difference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.errors import OodbenchError
from benchmark.metrics import CURVE_METRICS, check_scores, curve_metrics, ood_metrics, run_index

METRICS = (*CURVE_METRICS, "id_acc")
# resamples per batch x distinct scores. Small batches bound the memory and run faster: their arrays stay in
# the CPU caches, and the allocator reuses them instead of asking the system for fresh pages each time.
_CHUNK_CELLS = 100_000


@dataclass(frozen=True)
class Delta:
    """The change of a metric from the baseline to the tuned entry: `mean` on the full test sets (averaged
    over the tuned seeds), `low`/`high` its bootstrap interval; `significant` when the interval excludes 0."""

    mean: float
    low: float
    high: float
    significant: bool


class _Resampler:
    """One ID/OOD pair of score arrays, ranked once, turned into the metrics of any batch of resamples."""

    def __init__(self, id_scores: np.ndarray, ood_scores: np.ndarray, id_correct: np.ndarray | None) -> None:
        id_scores, ood_scores = check_scores(id_scores, ood_scores)
        self.n_id, self.n_ood = id_scores.size, ood_scores.size
        self.id_rank, self.ood_rank, self.n_ranks = run_index(id_scores, ood_scores)
        self.id_correct = None if id_correct is None else _check_correct(id_correct, self.n_id)
        self.id_scores, self.ood_scores = id_scores, ood_scores

    def point(self) -> dict[str, float]:
        m = ood_metrics(self.id_scores, self.ood_scores)
        values = {name: getattr(m, name) for name in CURVE_METRICS}
        if self.id_correct is not None:
            values["id_acc"] = float(self.id_correct.mean())
        return values

    def _counts(self, ranks: np.ndarray, idx: np.ndarray) -> np.ndarray:
        rows = idx.shape[0]
        cells = ranks[idx] + np.arange(rows)[:, None] * self.n_ranks
        return np.bincount(cells.ravel(), minlength=rows * self.n_ranks).reshape(rows, self.n_ranks)

    def metrics(self, id_idx: np.ndarray, ood_idx: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric of each resample (a row of ID indices and a row of OOD indices)."""
        values = curve_metrics(self._counts(self.id_rank, id_idx), self._counts(self.ood_rank, ood_idx))
        if self.id_correct is not None:
            values["id_acc"] = self.id_correct[id_idx].mean(axis=1)
        return values


def _check_correct(id_correct: np.ndarray, n_id: int) -> np.ndarray:
    id_correct = np.asarray(id_correct)
    if id_correct.dtype != bool or id_correct.shape != (n_id,):
        raise OodbenchError(
            f"id_correct must be one bool per ID sample ({n_id}), got dtype {id_correct.dtype} and shape "
            f"{id_correct.shape}; pass argmax(logits, axis=1) == labels."
        )
    return id_correct


def _check_settings(n_resamples: int, seed: int, level: float) -> None:
    if not isinstance(n_resamples, (int, np.integer)) or isinstance(n_resamples, bool) or n_resamples < 1:
        raise OodbenchError(f"n_resamples must be a positive integer (got {n_resamples!r}).")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise OodbenchError(f"The bootstrap seed must be a non-negative integer (got {seed!r}).")
    if not 0.0 < level < 1.0:
        raise OodbenchError(f"The interval level must be between 0 and 1, e.g. 0.95 (got {level!r}).")


def _draws(n_id: int, n_ood: int, n_ranks: int, n_resamples: int, seed: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Batches of resamples: (ID indices [B, n_id], OOD indices [B, n_ood]), B bounded by _CHUNK_CELLS."""
    batch = max(1, _CHUNK_CELLS // max(n_ranks, n_id, n_ood))
    children = np.random.SeedSequence(seed).spawn(n_resamples)
    for start in range(0, n_resamples, batch):
        rngs = [np.random.default_rng(c) for c in children[start : start + batch]]
        draws = [(rng.integers(0, n_id, n_id), rng.integers(0, n_ood, n_ood)) for rng in rngs]
        yield np.stack([d[0] for d in draws]), np.stack([d[1] for d in draws])


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def resampled_metrics(
    id_scores: np.ndarray,
    ood_scores: np.ndarray,
    *,
    id_correct: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Every metric on each of n_resamples bootstrap resamples (ID and OOD resampled separately), one
    array per metric; id_acc only when id_correct (one bool per ID sample) is given."""
    _check_settings(n_resamples, seed, 0.5)
    r = _Resampler(id_scores, ood_scores, id_correct)
    batches = [r.metrics(i, o) for i, o in _draws(r.n_id, r.n_ood, r.n_ranks, n_resamples, seed)]
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def bootstrap_intervals(
    id_scores: np.ndarray,
    ood_scores: np.ndarray,
    *,
    id_correct: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval (low, high) of each metric at the given level; id_acc only when
    id_correct (one bool per ID sample) is given."""
    _check_settings(n_resamples, seed, level)
    samples = resampled_metrics(id_scores, ood_scores, id_correct=id_correct, n_resamples=n_resamples, seed=seed)
    return {name: _interval(v, level) for name, v in samples.items()}


def paired_delta(
    tuned: Sequence[tuple[np.ndarray, np.ndarray]],
    baseline: tuple[np.ndarray, np.ndarray],
    *,
    id_correct_tuned: Sequence[np.ndarray] | None = None,
    id_correct_baseline: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Delta]:
    """The change of every metric from `baseline` (zero-shot) to `tuned` (one (ID, OOD) score pair per seed),
    all scored on the same test images in the same order.

    Each resample draws image indices once and applies them to the baseline and to every seed; its change is
    the mean over seeds of the tuned metric minus the baseline metric. id_acc is included when both
    id_correct_tuned (one array per seed) and id_correct_baseline are given.
    """
    _check_settings(n_resamples, seed, level)
    if len(tuned) == 0:
        raise OodbenchError("paired_delta needs at least one tuned (ID, OOD) score pair.")
    if (id_correct_tuned is None) != (id_correct_baseline is None):
        raise OodbenchError("Give id_correct for both the tuned seeds and the baseline, or for neither.")
    if id_correct_tuned is not None and len(id_correct_tuned) != len(tuned):
        raise OodbenchError(f"id_correct_tuned has {len(id_correct_tuned)} arrays for {len(tuned)} tuned seeds.")
    base = _Resampler(*baseline, id_correct_baseline)
    seeds = [
        _Resampler(i, o, None if id_correct_tuned is None else id_correct_tuned[k]) for k, (i, o) in enumerate(tuned)
    ]
    for k, s in enumerate(seeds):
        if (s.n_id, s.n_ood) != (base.n_id, base.n_ood):
            raise OodbenchError(
                f"Tuned seed {k} has {s.n_id} ID and {s.n_ood} OOD scores but the baseline {base.n_id} and "
                f"{base.n_ood}; a paired comparison needs the same test images in the same order."
            )

    def change(tuned_values: list[dict], base_values: dict) -> dict:
        return {name: np.mean([t[name] for t in tuned_values], axis=0) - base_values[name] for name in base_values}

    point = change([s.point() for s in seeds], base.point())
    n_ranks = max(r.n_ranks for r in (base, *seeds))
    batches = [
        change([s.metrics(i, o) for s in seeds], base.metrics(i, o))
        for i, o in _draws(base.n_id, base.n_ood, n_ranks, n_resamples, seed)
    ]
    out = {}
    for name, value in point.items():
        low, high = _interval(np.concatenate([b[name] for b in batches]), level)
        out[name] = Delta(mean=float(value), low=low, high=high, significant=bool(low > 0 or high < 0))
    return out
