"""`oodbench rescore`: recompute every metric and interval of a result file from its per-sample scores.

No model is loaded. For every row the ID and OOD scores of the row's score variant are read from the
sidecar (`<result>.scores.parquet`, columns dataset/index/label/pred/<score columns>), the metrics come
from `benchmark.metrics.ood_metrics`, ID accuracy from `pred == label` on the ID rows, and the 95%
intervals from `benchmark.stats.bootstrap_intervals` with its defaults and `id_correct=pred == label`,
exactly as the harness's `rows` stage computes them. Every value that differs from the stored one by more
than `TOLERANCE` is reported. A submitted file is never rewritten.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.errors import OodbenchError
from benchmark.metrics import ood_metrics
from benchmark.results import (
    COUNT_COLUMNS,
    INTERVAL_METRICS,
    METRIC_COLUMNS,
    interval_columns,
    read_results,
    read_scores,
    result_files,
    schema_version_of,
    score_column,
    scores_path,
    sidecar_problems,
)
from benchmark.stats import bootstrap_intervals

TOLERANCE = 1e-9  # absolute, on fractions: anything larger is a real difference, not float noise
CHECKED, DIFFERENT, NOT_CHECKED, UNREADABLE = "checked", "different", "not checked", "cannot check"


@dataclass(frozen=True)
class Difference:
    """One stored value that the per-sample scores do not give back."""

    run_id: str
    score: str
    score_config: str
    ood_dataset: str
    column: str
    stored: float
    recomputed: float

    @property
    def abs_diff(self) -> float:
        if math.isnan(self.stored) and math.isnan(self.recomputed):
            return 0.0
        if math.isnan(self.stored) or math.isnan(self.recomputed):
            return math.inf
        return abs(self.stored - self.recomputed)


@dataclass
class Rescore:
    """The outcome for one result file."""

    path: Path
    status: str
    rows: int = 0
    values: int = 0  # values compared
    differences: list[Difference] = field(default_factory=list)
    reason: str = ""  # why a file was not checked or could not be checked


def _equal(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= TOLERANCE


def _by_dataset(scores: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Sidecar rows per dataset, in pinned-list order (the `index` column)."""
    return {name: g.sort_values("index", kind="stable") for name, g in scores.groupby("dataset", sort=False)}


def recompute_row(row: pd.Series, sets: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Every metric, count and interval of one result row, from its run's sidecar split by dataset."""
    column = score_column(row["score"], row["score_config"])
    id_rows, ood_rows = sets.get(row["id_dataset"]), sets.get(row["ood_dataset"])
    if id_rows is None or ood_rows is None:
        missing = row["id_dataset"] if id_rows is None else row["ood_dataset"]
        raise OodbenchError(f"the per-sample scores have no rows of {missing}")
    if column not in id_rows.columns:
        raise OodbenchError(f"the per-sample scores have no column {column!r}")
    id_scores = id_rows[column].to_numpy()
    ood_scores = ood_rows[column].to_numpy()
    id_correct = id_rows["pred"].to_numpy() == id_rows["label"].to_numpy()
    m = ood_metrics(id_scores, ood_scores)
    out = {c: float(getattr(m, c)) for c in METRIC_COLUMNS if c != "id_acc"}
    out["id_acc"] = float(id_correct.mean())
    out["n_id"], out["n_ood"] = float(m.n_id), float(m.n_ood)
    for metric, (low, high) in bootstrap_intervals(id_scores, ood_scores, id_correct=id_correct).items():
        out[interval_columns(metric)[0]], out[interval_columns(metric)[1]] = low, high
    return out


def compared_columns(rows: pd.DataFrame) -> list[str]:
    """The stored columns rescoring checks: every metric, count and interval bound the rows have."""
    names = [*METRIC_COLUMNS, *COUNT_COLUMNS, *(c for m in INTERVAL_METRICS for c in interval_columns(m))]
    return [c for c in names if c in rows.columns]


def rescore_file(path: Path) -> Rescore:
    """Recompute every row of one result file from its sidecar and list the values that differ."""
    path = Path(path)
    try:
        rows = read_results(path)
    except OodbenchError as err:
        return Rescore(path, UNREADABLE, reason=str(err))
    named = {v for v in rows.get("scores_sha256", pd.Series(dtype=object)) if isinstance(v, str) and v}
    if schema_version_of(rows) < 2 or not named:
        return Rescore(path, NOT_CHECKED, rows=len(rows), reason="no per-sample scores, not checked")
    problems = sidecar_problems(path, rows)
    if problems:
        return Rescore(path, UNREADABLE, rows=len(rows), reason="; ".join(problems))
    try:
        sets = _by_dataset(read_scores(scores_path(path)))
    except OodbenchError as err:
        return Rescore(path, UNREADABLE, rows=len(rows), reason=str(err))
    columns = compared_columns(rows)
    out = Rescore(path, CHECKED, rows=len(rows))
    for _, row in rows.iterrows():
        try:
            fresh = recompute_row(row, sets)
        except OodbenchError as err:
            return Rescore(path, UNREADABLE, rows=len(rows), reason=f"{row['score']} / {row['ood_dataset']}: {err}")
        for c in columns:
            stored, recomputed = float(row[c]), fresh[c]
            out.values += 1
            if not _equal(stored, recomputed):
                out.differences.append(
                    Difference(
                        run_id=str(row["run_id"]),
                        score=str(row["score"]),
                        score_config=str(row["score_config"]),
                        ood_dataset=str(row["ood_dataset"]),
                        column=c,
                        stored=stored,
                        recomputed=recomputed,
                    )
                )
    if out.differences:
        out.status = DIFFERENT
    return out


def rescore_paths(paths: Iterable[Path]) -> list[Rescore]:
    """Rescore the given result files, and every result file under the given folders (sidecars excluded)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += result_files(p)
        elif p.exists():
            files.append(p)
        else:
            raise OodbenchError(f"{p} does not exist; pass a result Parquet file or a folder of them.")
    if not files:
        raise OodbenchError(f"No result files (.parquet) in {', '.join(map(str, paths))}.")
    return [rescore_file(f) for f in files]


def largest_difference(outcomes: Iterable[Rescore]) -> float:
    diffs = [d.abs_diff for o in outcomes for d in o.differences]
    return max(diffs) if diffs else 0.0
