"""The Parquet schema of result rows; write (atomically, never over another file), read, validate.

One row per (run, score, OOD dataset); columns as DESIGN.md lists them. Metrics are floats in
[0, 1]; nothing here formats numbers for people.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.errors import OodbenchError

KEY_COLUMNS = ("suite", "suite_version", "backbone", "method", "method_config", "config_hash", "score",
               "shots", "seed", "id_dataset", "ood_dataset", "ood_group")
METRIC_COLUMNS = ("fpr95", "auroc", "aupr_in", "aupr_out", "id_acc")
COUNT_COLUMNS = ("n_id", "n_ood")
PROVENANCE_COLUMNS = ("run_id", "created_at", "oodbench_version", "git_commit", "package_versions", "device",
                      "weights_sha256", "fewshot_hash", "dataset_hashes")
EXTRA_COLUMNS = ("precision",)

SCHEMA = pa.schema([
    ("suite", pa.string()), ("suite_version", pa.int64()), ("backbone", pa.string()), ("method", pa.string()),
    ("method_config", pa.string()), ("config_hash", pa.string()), ("score", pa.string()), ("shots", pa.int64()),
    ("seed", pa.int64()), ("id_dataset", pa.string()), ("ood_dataset", pa.string()), ("ood_group", pa.string()),
    ("fpr95", pa.float64()), ("auroc", pa.float64()), ("aupr_in", pa.float64()), ("aupr_out", pa.float64()),
    ("id_acc", pa.float64()), ("n_id", pa.int64()), ("n_ood", pa.int64()),
    ("run_id", pa.string()), ("created_at", pa.timestamp("us", tz="UTC")), ("oodbench_version", pa.string()),
    ("git_commit", pa.string()), ("package_versions", pa.string()), ("device", pa.string()),
    ("weights_sha256", pa.string()), ("fewshot_hash", pa.string()), ("dataset_hashes", pa.string()),
    ("precision", pa.string()),
])
REQUIRED = KEY_COLUMNS + METRIC_COLUMNS + COUNT_COLUMNS + PROVENANCE_COLUMNS
RUN_KEY = ("suite", "suite_version", "backbone", "method", "config_hash", "shots", "seed")


def run_stem(*, suite: str, backbone: str, method: str, config_hash: str, shots: int, seed: int) -> str:
    """The file name stem shared by every file of one run key (the run id follows it)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone).strip("_")
    return f"{suite}__{safe}__{method}-{config_hash[:10]}__k{shots}__s{seed}"


def existing_runs(results_dir: Path, stem: str) -> list[Path]:
    return sorted(results_dir.glob(f"{stem}__*.parquet"))


def to_table(rows: pd.DataFrame) -> pa.Table:
    missing = [c for c in SCHEMA.names if c not in rows.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    extra = [c for c in rows.columns if c not in SCHEMA.names]
    schema = SCHEMA
    for c in extra:  # more columns may follow the required ones
        schema = schema.append(pa.field(c, pa.Table.from_pandas(rows[[c]], preserve_index=False).schema.field(c).type))
    return pa.Table.from_pandas(rows[list(schema.names)], schema=schema, preserve_index=False)


def write_results(rows: pd.DataFrame, path: Path) -> Path:
    """Write one run's rows to `path` atomically; an existing file is never replaced."""
    path = Path(path)
    if path.exists():
        raise OodbenchError(f"{path} already exists; results are never overwritten. Choose another --out "
                            f"or move the old file away.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(to_table(rows), tmp)
        if path.exists():
            tmp.unlink()
            raise OodbenchError(f"{path} appeared while writing; results are never overwritten.")
        tmp.replace(path)
    except OSError as err:
        raise OodbenchError(f"Cannot write results to {path}: {err.strerror}. Pass --out (or --results-dir) "
                            f"pointing at a writable folder.") from None
    return path


def read_results(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise OodbenchError(f"Result file {path} does not exist.")
    try:
        return pq.read_table(path).to_pandas()
    except Exception as err:
        raise OodbenchError(f"{path} is not a readable Parquet file ({type(err).__name__}: {err}).") from None


@dataclass
class Validation:
    path: Path
    problems: list[str] = field(default_factory=list)
    rows: pd.DataFrame | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _is_json_object(s: object) -> bool:
    try:
        return isinstance(json.loads(s), dict)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def validate_frame(df: pd.DataFrame, *, known_suites: dict[str, int] | None = None) -> list[str]:
    """Every problem of a results frame, as sentences; [] when it is valid."""
    problems: list[str] = []
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        problems.append(f"missing required columns: {', '.join(missing)}")
    if df.empty:
        problems.append("the file has no rows")
    present = [c for c in REQUIRED if c in df.columns]
    for c in present:
        expected = SCHEMA.field(c).type
        if pa.types.is_string(expected) and not all(isinstance(v, str) for v in df[c]):
            problems.append(f"column {c} must hold strings")
        elif pa.types.is_integer(expected) and not pd.api.types.is_integer_dtype(df[c]):
            problems.append(f"column {c} must hold integers (found {df[c].dtype})")
        elif pa.types.is_floating(expected) and not pd.api.types.is_float_dtype(df[c]):
            problems.append(f"column {c} must hold floats (found {df[c].dtype})")
    for c in METRIC_COLUMNS:
        if c in df.columns and pd.api.types.is_float_dtype(df[c]):
            if df[c].isna().any():
                problems.append(f"column {c} has {int(df[c].isna().sum())} NaN values")
            bad = df[c].dropna()
            bad = bad[(bad < 0) | (bad > 1)]
            if len(bad):
                problems.append(f"column {c} has {len(bad)} values outside [0, 1] (first: {bad.iloc[0]!r}); "
                                f"metrics are stored as fractions, not percentages")
    for c in COUNT_COLUMNS + ("shots",):
        if c in df.columns and pd.api.types.is_integer_dtype(df[c]) and (df[c] < 0).any():
            problems.append(f"column {c} has negative values")
    if "ood_group" in df.columns:
        groups = set(df["ood_group"]) - {"near", "far"}
        if groups:
            problems.append(f"ood_group must be 'near' or 'far' (found {sorted(map(str, groups))})")
    for c in ("method_config", "package_versions", "dataset_hashes"):
        if c in df.columns and not all(_is_json_object(v) for v in df[c]):
            problems.append(f"column {c} must hold JSON objects")
    for c in PROVENANCE_COLUMNS:
        if c in df.columns and df[c].dtype == object and any(v in ("", None) for v in df[c]):
            if c not in ("fewshot_hash", "git_commit"):
                problems.append(f"provenance column {c} has empty values")
    key = [c for c in KEY_COLUMNS if c in df.columns]
    if len(key) == len(KEY_COLUMNS):
        dup = df.duplicated(subset=list(KEY_COLUMNS), keep=False)
        if dup.any():
            problems.append(f"{int(dup.sum())} rows share the same key (suite, backbone, method, config, score, "
                            f"shots, seed, OOD dataset)")
    if known_suites is not None and {"suite", "suite_version"} <= set(df.columns):
        for (suite, version), _ in df.groupby(["suite", "suite_version"]):
            if suite not in known_suites:
                problems.append(f"unknown suite {suite!r}")
            elif int(version) != known_suites[suite]:
                problems.append(f"suite {suite!r} is at version {known_suites[suite]}, the file has version {version}")
    return problems


def validate_file(path: Path, *, known_suites: dict[str, int] | None = None) -> Validation:
    try:
        df = read_results(path)
    except OodbenchError as err:
        return Validation(Path(path), [str(err)])
    return Validation(Path(path), validate_frame(df, known_suites=known_suites), df)
