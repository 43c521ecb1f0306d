"""Is a change against zero-shot real? A paired bootstrap over the same test images, pooled over seeds.

For a fine-tuned entry and its zero-shot baseline (same suite and version, backbone, score with its
parameters, and the same test images: equal `dataset_hashes`), every resample draws test images once and
applies them to the baseline and to every seed of the entry, as `benchmark.stats.paired_delta` does; the
change of a resample is the mean over seeds of the entry's metric minus the baseline's. The interval is the
percentile interval of the resampled changes, and a change is significant when its interval excludes 0.

One resample serves a whole suite: it draws the ID test images once (the ID set is shared by every OOD
set of a run) and then each OOD set's images on their own, from the resample's own generator
`np.random.default_rng(np.random.SeedSequence(seed).spawn(n_resamples)[r])`: ID indices first, then each
OOD set in the suite's order. For the first OOD set this is exactly `paired_delta`'s draw, so its numbers
equal `paired_delta`'s; the near and far changes are the mean over the group's sets of the per-set changes,
computed per resample, so they carry the ID images' shared noise correctly.

What is tested: AUROC per OOD set and its near/far means, and ID accuracy. AUROC is read off each resample
as P(ID score > OOD score) + 1/2 P(equal) over the drawn pairs, from the ID scores sorted once per run:
a resample's cumulative ID counts in that order, looked up at each OOD score's place. This is the value
`benchmark.metrics` computes by the trapezoidal rule (equal up to float rounding, tested), at a fraction of
the cost of recomputing every curve metric: the ID part is shared by all OOD sets, and a site build tests
hundreds of entries. Results are cached under the sha256s of the per-sample score files involved and the
bootstrap settings, so a rebuild reads them back in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import OodbenchError
from benchmark.results import read_scores
from benchmark.stats import Delta
from leaderboard.sitecache import JsonCache

VERSION = 1  # bump when what is computed changes: cached results carry it in their key
N_RESAMPLES, SEED, LEVEL = 1000, 0, 0.95  # benchmark.stats.paired_delta's defaults (tested)
_CELLS = 2_000_000  # resamples per batch x samples: bounds the memory of one batch to tens of MB


@dataclass(frozen=True)
class Settings:
    n_resamples: int = N_RESAMPLES
    seed: int = SEED
    level: float = LEVEL


@dataclass(frozen=True)
class RunScores:
    """One run's per-sample scores of one score variant: the ID test set (with which images the method
    classified correctly) and each OOD set, every array in pinned-list order."""

    id_scores: np.ndarray
    id_correct: np.ndarray
    ood: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Comparison:
    """An entry against its zero-shot baseline: the change of AUROC per OOD set and of its near/far means,
    and of ID accuracy, each with its interval; `n_seeds` of the entry were pooled."""

    per_set: dict[str, Delta]
    groups: dict[str, Delta]
    id_acc: Delta
    n_seeds: int
    settings: Settings = field(default_factory=Settings)

    def to_json(self) -> dict:
        return {
            "per_set": {k: asdict(v) for k, v in self.per_set.items()},
            "groups": {k: asdict(v) for k, v in self.groups.items()},
            "id_acc": asdict(self.id_acc),
            "n_seeds": self.n_seeds,
            "settings": asdict(self.settings),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> Comparison:
        """A comparison read back from the cache; anything but numbers where numbers belong raises."""

        def delta(v: Mapping) -> Delta:
            if not isinstance(v["significant"], bool):
                raise TypeError("significant must be true or false")
            return Delta(
                mean=float(v["mean"]), low=float(v["low"]), high=float(v["high"]), significant=v["significant"]
            )

        settings = data["settings"]
        return cls(
            per_set={str(k): delta(v) for k, v in data["per_set"].items()},
            groups={str(k): delta(v) for k, v in data["groups"].items()},
            id_acc=delta(data["id_acc"]),
            n_seeds=int(data["n_seeds"]),
            settings=Settings(int(settings["n_resamples"]), int(settings["seed"]), float(settings["level"])),
        )


def split_sidecar(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A per-sample scores sidecar's rows per dataset, each in pinned-list order (its `index`)."""
    return {name: g.sort_values("index", kind="stable") for name, g in frame.groupby("dataset", sort=False)}


def read_run_scores(
    sidecar: Path | pd.DataFrame | Mapping[str, pd.DataFrame], *, column: str, id_dataset: str, ood_sets: Sequence[str]
) -> RunScores:
    """The scores of `column` from a per-sample scores sidecar: a path, the sidecar read, or split per dataset."""
    if isinstance(sidecar, Path):
        sidecar = read_scores(sidecar)
    parts = split_sidecar(sidecar) if isinstance(sidecar, pd.DataFrame) else sidecar
    missing = [d for d in (id_dataset, *ood_sets) if d not in parts]
    if missing:
        raise OodbenchError(f"the per-sample scores have no rows of {', '.join(missing)}")
    if column not in parts[id_dataset].columns:
        raise OodbenchError(f"the per-sample scores have no column {column!r}")
    id_rows = parts[id_dataset]
    return RunScores(
        id_scores=id_rows[column].to_numpy(),
        id_correct=id_rows["pred"].to_numpy() == id_rows["label"].to_numpy(),
        ood={name: parts[name][column].to_numpy() for name in ood_sets},
    )


class _Ranked:
    """One run's scores prepared for AUROC on any resample: the order of its ID scores, and for each OOD
    score how many ID scores lie at or below it (`hi`) and strictly below it (`lo`)."""

    def __init__(self, run: RunScores, sets: Sequence[str]) -> None:
        x = np.asarray(run.id_scores, dtype=np.float64)
        if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
            raise OodbenchError("ID scores must be a non-empty array of finite numbers.")
        self.n = x.size
        self.order = np.argsort(x, kind="stable")
        ordered = x[self.order]
        self.hi, self.lo = {}, {}
        for name in sets:
            y = np.asarray(run.ood[name], dtype=np.float64)
            if y.ndim != 1 or y.size == 0 or not np.isfinite(y).all():
                raise OodbenchError(f"OOD scores of {name} must be a non-empty array of finite numbers.")
            self.hi[name] = np.searchsorted(ordered, y, side="right")
            lo = np.searchsorted(ordered, y, side="left")
            self.lo[name] = None if np.array_equal(lo, self.hi[name]) else lo  # None: no OOD score ties an ID one
        self.correct = np.asarray(run.id_correct, dtype=np.float64)
        if self.correct.shape != (self.n,):
            raise OodbenchError(f"id_correct must have one value per ID sample ({self.n}).")

    def auroc(self, id_counts: np.ndarray, ood_counts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """AUROC of each resample ([B] per OOD set) from how often it drew each ID image ([B, n]) and each
        image of every OOD set ([m, B], one column per resample): the sum over drawn pairs of [x > y] +
        [x == y] / 2, over n m, is 1 - (drawn pairs with x <= y + drawn pairs with x < y) / (2 n m)."""
        rows = id_counts.shape[0]
        below = np.zeros((rows, self.n + 1), dtype=np.int32)  # below[r, j]: drawn ID images among the j lowest
        np.cumsum(np.take(id_counts, self.order, axis=1), axis=1, dtype=np.int32, out=below[:, 1:])
        below = np.ascontiguousarray(below.T)  # [n + 1, B]: gathering whole rows is what is fast
        out = {}
        for name, counts in ood_counts.items():
            pairs = np.take(below, self.hi[name], axis=0)
            at_or_below = np.multiply(pairs, counts, out=pairs if pairs.dtype == counts.dtype else None).sum(
                axis=0, dtype=np.int64
            )
            lo = self.lo[name]
            if lo is None:
                strictly_below = at_or_below
            else:
                pairs = np.take(below, lo, axis=0)
                strictly_below = np.multiply(pairs, counts, out=pairs if pairs.dtype == counts.dtype else None).sum(
                    axis=0, dtype=np.int64
                )
            out[name] = 1.0 - (at_or_below + strictly_below) / (2.0 * self.n * counts.shape[0])
        return out


def _counts(idx: np.ndarray, size: int) -> np.ndarray:
    """How often each of `size` images was drawn, per resample: [B, size] from indices [B, k] (int64)."""
    rows = idx.shape[0]
    cells = idx + (np.arange(rows) * size)[:, None]
    return np.bincount(cells.ravel(), minlength=rows * size).reshape(rows, size)


def _narrow(counts: np.ndarray, *, times: int) -> np.ndarray:
    """Counts in the smallest type that holds them, and their products with numbers up to `times` (uint8 for
    ID counts, which are only summed; int32 for OOD counts, multiplied by counts of ID images)."""
    top = int(counts.max(initial=0))
    if times == 1 and top <= np.iinfo(np.uint8).max:
        return counts.astype(np.uint8)
    return counts.astype(np.int32 if top * times < np.iinfo(np.int32).max else np.int64)


def draws(
    n_id: int, n_ood: Mapping[str, int], settings: Settings
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Batches of resamples as draw counts: ID [B, n_id] and, per OOD set in order, [m, B]. Resample r draws
    from its own generator (SeedSequence(seed).spawn(n_resamples)[r]): ID indices first, then each set's."""
    batch = max(1, _CELLS // (n_id + sum(n_ood.values())))
    children = np.random.SeedSequence(settings.seed).spawn(settings.n_resamples)
    for start in range(0, settings.n_resamples, batch):
        ids, oods = [], {name: [] for name in n_ood}
        for child in children[start : start + batch]:
            rng = np.random.default_rng(child)
            ids.append(rng.integers(0, n_id, n_id))
            for name, m in n_ood.items():
                oods[name].append(rng.integers(0, m, m))
        yield (
            _narrow(_counts(np.stack(ids), n_id), times=1),
            {
                name: np.ascontiguousarray(_narrow(_counts(np.stack(v), n_ood[name]), times=n_id).T)
                for name, v in oods.items()
            },
        )


def _delta(point: float, samples: np.ndarray, level: float) -> Delta:
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])  # as benchmark.stats does
    return Delta(mean=float(point), low=float(low), high=float(high), significant=bool(low > 0 or high < 0))


@dataclass(frozen=True)
class Job:
    """One comparison to make: `tuned` (a run per seed) against `baseline`, each a hashable handle that
    `compare_all` turns into RunScores through its loader."""

    tuned: tuple[object, ...]
    baseline: object


def compare_all(
    jobs: Mapping[object, Job],
    *,
    load: Callable[[object], RunScores],
    id_dataset: str,
    groups: Sequence[tuple[str, str]],
    settings: Settings = Settings(),
) -> dict[object, Comparison]:
    """Every job of one suite (same ID set, same OOD sets `groups` as (group, name) pairs in suite order).

    Each distinct run handle is loaded once (`load(handle) -> RunScores`) and resampled once; all jobs share
    the draws, so a baseline used by many entries costs one evaluation."""
    if not jobs:
        return {}
    sets = [name for _, name in groups]
    handles = list(dict.fromkeys(h for job in jobs.values() for h in (job.baseline, *job.tuned)))
    runs = {h: load(h) for h in handles}
    ranked = {h: _Ranked(run, sets) for h, run in runs.items()}
    first = runs[handles[0]]
    n_id, n_ood = first.id_scores.size, {name: first.ood[name].size for name in sets}
    for h, run in runs.items():
        sizes = (run.id_scores.size, {name: run.ood[name].size for name in sets})
        if sizes != (n_id, n_ood):
            raise OodbenchError(
                f"run {h} has {sizes[0]} ID scores and OOD sizes {sizes[1]}, others {n_id} and {n_ood}; a paired "
                "comparison needs the same test images"
            )
    full_id = np.ones((1, n_id), dtype=np.uint8)  # the full test sets: every image drawn once
    full_ood = {name: np.ones((m, 1), dtype=np.int32) for name, m in n_ood.items()}
    correct = np.stack([ranked[h].correct for h in handles], axis=1)  # [n, handles]: ID accuracy by one product
    point = {h: (r.auroc(full_id, full_ood), ranked[h].correct.mean(keepdims=True)) for h, r in ranked.items()}
    samples: dict[object, tuple[dict[str, list[np.ndarray]], list[np.ndarray]]] = {
        h: ({name: [] for name in sets}, []) for h in handles
    }
    for id_counts, ood_counts in draws(n_id, n_ood, settings):
        accuracy = (id_counts.astype(np.float64) @ correct) / n_id
        for k, (h, r) in enumerate(ranked.items()):
            au = r.auroc(id_counts, ood_counts)
            for name in sets:
                samples[h][0][name].append(au[name])
            samples[h][1].append(accuracy[:, k])
    resampled = {
        h: ({name: np.concatenate(v) for name, v in per_set.items()}, np.concatenate(acc))
        for h, (per_set, acc) in samples.items()
    }
    out = {}
    for key, job in jobs.items():
        base_au, base_acc = resampled[job.baseline]
        change = {name: np.mean([resampled[t][0][name] for t in job.tuned], axis=0) - base_au[name] for name in sets}
        point_change = {
            name: float(np.mean([point[t][0][name][0] for t in job.tuned]) - point[job.baseline][0][name][0])
            for name in sets
        }
        per_set = {name: _delta(point_change[name], change[name], settings.level) for name in sets}
        by_group: dict[str, Delta] = {}
        for grp in dict.fromkeys(g for g, _ in groups):
            members = [name for g, name in groups if g == grp]
            by_group[grp] = _delta(
                float(np.mean([point_change[n] for n in members])),
                np.mean([change[n] for n in members], axis=0),
                settings.level,
            )
        acc_change = np.mean([resampled[t][1] for t in job.tuned], axis=0) - base_acc
        acc_point = float(np.mean([point[t][1][0] for t in job.tuned]) - point[job.baseline][1][0])
        out[key] = Comparison(
            per_set=per_set,
            groups=by_group,
            id_acc=_delta(acc_point, acc_change, settings.level),
            n_seeds=len(job.tuned),
            settings=settings,
        )
    return out


# ---------------------------------------------------------------- the cache


def cache_key(
    *, baseline_sha: str, tuned_shas: Sequence[str], column: str, groups: Sequence, settings: Settings
) -> str:
    """What a cached comparison depends on: the per-sample score files (by sha256), the score column, the
    OOD sets, the bootstrap settings and the version of this computation."""
    blob = json.dumps(
        {
            "version": VERSION,
            "baseline": baseline_sha,
            "tuned": list(tuned_shas),  # in seed order: pooling is symmetric, but the key stays simple
            "column": column,
            "groups": [list(g) for g in groups],
            "settings": asdict(settings),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class Cache(JsonCache):
    """Comparisons stored as JSON under `folder` (`<cache>/site/significance`), one file per cache key."""

    def __init__(self, folder: Path | None) -> None:
        super().__init__(folder, what="significance")

    def get(self, key: str) -> Comparison | None:
        return self.read(key, Comparison.from_json)

    def put(self, key: str, comparison: Comparison) -> None:
        self.write(key, comparison.to_json())


# ---------------------------------------------------------------- a site build's comparisons


@dataclass(frozen=True)
class Request:
    """One comparison a site build needs: `tuned` (one (sidecar path, sha256) per seed, in seed order)
    against `baseline` on the sidecar column of one score variant."""

    key: tuple
    column: str
    id_dataset: str
    groups: tuple[tuple[str, str], ...]
    baseline: tuple[str, str]
    tuned: tuple[tuple[str, str], ...]

    def cache_key(self, settings: Settings) -> str:
        return cache_key(
            baseline_sha=self.baseline[1],
            tuned_shas=[sha for _, sha in self.tuned],
            column=self.column,
            groups=self.groups,
            settings=settings,
        )


class SidecarReader:
    """Per-sample score files read (and split per dataset) once each while in use; the most recent few are kept."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._parts: dict[str, dict[str, pd.DataFrame]] = {}

    def parts(self, path: str) -> dict[str, pd.DataFrame]:
        if path in self._parts:
            self._parts[path] = self._parts.pop(path)  # most recently used last
            return self._parts[path]
        parts = split_sidecar(read_scores(Path(path)))
        self._parts[path] = parts
        while len(self._parts) > self.keep:
            self._parts.pop(next(iter(self._parts)))
        return parts

    def run_scores(self, path: str, *, column: str, id_dataset: str, ood_sets: Sequence[str]) -> RunScores:
        return read_run_scores(self.parts(path), column=column, id_dataset=id_dataset, ood_sets=ood_sets)


def run_requests(
    requests: Sequence[Request],
    *,
    cache: Cache,
    settings: Settings = Settings(),
    reader: SidecarReader | None = None,
    chunk: int = 96,
) -> dict[tuple, Comparison | str]:
    """Every request's comparison, from the cache or computed (and cached); a request whose scores cannot be
    read gets the reason as a string instead. Requests of one suite are computed together in chunks, so
    their draws and each baseline's resamples are shared and memory stays bounded."""
    reader = reader or SidecarReader()
    out: dict[tuple, Comparison | str] = {}
    todo: dict[tuple, list[Request]] = {}
    for req in requests:
        found = cache.get(req.cache_key(settings))
        if found is not None:
            out[req.key] = found
        else:
            todo.setdefault((req.id_dataset, req.groups), []).append(req)
    for (id_dataset, groups), reqs in todo.items():
        sets = [name for _, name in groups]
        reqs = sorted(reqs, key=lambda r: (r.tuned, r.column))  # one run's columns together: each file read once
        for start in range(0, len(reqs), chunk):
            part = reqs[start : start + chunk]
            loaded: dict[tuple, RunScores] = {}
            failed: dict[tuple, str] = {}
            for req in part:
                for path, _ in (req.baseline, *req.tuned):
                    handle = (path, req.column)
                    if handle in loaded or handle in failed:
                        continue
                    try:
                        loaded[handle] = reader.run_scores(
                            path, column=req.column, id_dataset=id_dataset, ood_sets=sets
                        )
                    except OodbenchError as err:
                        failed[handle] = f"{Path(path).name}: {err}"
            jobs = {}
            for req in part:
                handles = [(p, req.column) for p, _ in (req.baseline, *req.tuned)]
                problems = [failed[h] for h in handles if h in failed]
                if problems:
                    out[req.key] = "; ".join(dict.fromkeys(problems))
                else:
                    jobs[req.key] = Job(tuned=tuple(handles[1:]), baseline=handles[0])
            try:
                done = compare_all(
                    jobs, load=loaded.__getitem__, id_dataset=id_dataset, groups=groups, settings=settings
                )
            except OodbenchError as err:  # e.g. runs whose test sets differ in size
                out.update({k: str(err) for k in jobs})
                continue
            by_key = {req.key: req for req in part}
            for key, comparison in done.items():
                out[key] = comparison
                cache.put(by_key[key].cache_key(settings), comparison)
    return out
