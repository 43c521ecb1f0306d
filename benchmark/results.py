"""The Parquet schema of result rows; write (atomically, never over another file), read, validate.

One row per (run, score, OOD dataset); columns as DESIGN.md lists them. Metrics are floats in
[0, 1]; nothing here formats numbers for people.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.errors import OodbenchError
from benchmark.registry import suggest
from benchmark.suites import OOD_GROUPS, SUITES, SuiteSpec

KEY_COLUMNS = (
    "suite",
    "suite_version",
    "backbone",
    "method",
    "method_config",
    "config_hash",
    "score",
    "shots",
    "seed",
    "id_dataset",
    "ood_dataset",
    "ood_group",
)
METRIC_COLUMNS = ("fpr95", "auroc", "aupr_in", "aupr_out", "id_acc")
COUNT_COLUMNS = ("n_id", "n_ood")
PROVENANCE_COLUMNS = (
    "run_id",
    "created_at",
    "oodbench_version",
    "git_commit",
    "package_versions",
    "device",
    "weights_sha256",
    "fewshot_hash",
    "dataset_hashes",
)
EXTRA_COLUMNS = ("precision",)
OPTIONAL_PROVENANCE = ("fewshot_hash", "git_commit")  # empty for zero-shot runs / outside a git checkout
# Columns that are the same on every row of one run (score, OOD set and metrics vary).
RUN_CONSTANT = (
    "suite",
    "suite_version",
    "backbone",
    "method",
    "method_config",
    "config_hash",
    "shots",
    "seed",
    "id_dataset",
    "id_acc",
    "n_id",
) + PROVENANCE_COLUMNS

SCHEMA = pa.schema(
    [
        ("suite", pa.string()),
        ("suite_version", pa.int64()),
        ("backbone", pa.string()),
        ("method", pa.string()),
        ("method_config", pa.string()),
        ("config_hash", pa.string()),
        ("score", pa.string()),
        ("shots", pa.int64()),
        ("seed", pa.int64()),
        ("id_dataset", pa.string()),
        ("ood_dataset", pa.string()),
        ("ood_group", pa.string()),
        ("fpr95", pa.float64()),
        ("auroc", pa.float64()),
        ("aupr_in", pa.float64()),
        ("aupr_out", pa.float64()),
        ("id_acc", pa.float64()),
        ("n_id", pa.int64()),
        ("n_ood", pa.int64()),
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("oodbench_version", pa.string()),
        ("git_commit", pa.string()),
        ("package_versions", pa.string()),
        ("device", pa.string()),
        ("weights_sha256", pa.string()),
        ("fewshot_hash", pa.string()),
        ("dataset_hashes", pa.string()),
        ("precision", pa.string()),
    ]
)
REQUIRED = KEY_COLUMNS + METRIC_COLUMNS + COUNT_COLUMNS + PROVENANCE_COLUMNS
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")  # run ids name files (verification records)
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
        raise OodbenchError(
            f"{path} already exists; results are never overwritten. Choose another --out or move the old file away."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(to_table(rows), tmp)
        if path.exists():
            tmp.unlink()
            raise OodbenchError(f"{path} appeared while writing; results are never overwritten.")
        tmp.replace(path)
    except OSError as err:
        raise OodbenchError(
            f"Cannot write results to {path}: {err.strerror}. Pass --out (or --results-dir) "
            f"pointing at a writable folder."
        ) from None
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
    """The outcome of validating one file: its problems (sentences) and, when readable, its rows."""

    path: Path
    problems: list[str] = field(default_factory=list)
    rows: pd.DataFrame | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def registered_suites() -> dict[str, SuiteSpec]:
    """Every registered suite by name: what validation checks suite names, versions and OOD sets against."""
    return dict(SUITES.items())


def _is_json_object(s: object) -> bool:
    try:
        return isinstance(json.loads(s), dict)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _type_problems(df: pd.DataFrame) -> list[str]:
    problems = []
    for c in [c for c in REQUIRED if c in df.columns]:
        expected = SCHEMA.field(c).type
        if pa.types.is_string(expected) and not all(isinstance(v, str) for v in df[c]):
            problems.append(f"column {c} must hold strings")
        elif pa.types.is_integer(expected) and not pd.api.types.is_integer_dtype(df[c]):
            problems.append(f"column {c} must hold integers (found {df[c].dtype})")
        elif pa.types.is_floating(expected) and not pd.api.types.is_float_dtype(df[c]):
            problems.append(f"column {c} must hold floats (found {df[c].dtype})")
        elif pa.types.is_timestamp(expected) and not isinstance(df[c].dtype, pd.DatetimeTZDtype):
            problems.append(f"column {c} must hold UTC timestamps (found {df[c].dtype})")
    return problems


def _value_problems(df: pd.DataFrame) -> list[str]:
    problems = []
    for c in METRIC_COLUMNS:
        if c in df.columns and pd.api.types.is_float_dtype(df[c]):
            if df[c].isna().any():
                problems.append(f"column {c} has {int(df[c].isna().sum())} NaN values")
            bad = df[c].dropna()
            bad = bad[(bad < 0) | (bad > 1)]
            if len(bad):
                problems.append(
                    f"column {c} has {len(bad)} values outside [0, 1] (first: {float(bad.iloc[0])}); "
                    f"metrics are stored as fractions, not percentages"
                )
    for c in COUNT_COLUMNS:
        if c in df.columns and pd.api.types.is_integer_dtype(df[c]) and (df[c] < 1).any():
            problems.append(f"column {c} has values below 1; every metric needs ID and OOD samples")
    if "shots" in df.columns and pd.api.types.is_integer_dtype(df["shots"]) and (df["shots"] < 0).any():
        problems.append("column shots has negative values")
    if "ood_group" in df.columns:
        groups = set(df["ood_group"]) - set(OOD_GROUPS)
        if groups:
            problems.append(f"ood_group must be 'near' or 'far' (found {sorted(map(str, groups))})")
    if "run_id" in df.columns:
        bad_ids = [v for v in df["run_id"].unique() if not (isinstance(v, str) and RUN_ID_PATTERN.match(v))]
        if bad_ids:
            problems.append(f"run_id must be 8-64 letters, digits, '-' or '_' (found {str(bad_ids[0])[:80]!r})")
    for c in ("method_config", "package_versions", "dataset_hashes"):
        if c in df.columns and not all(_is_json_object(v) for v in df[c]):
            problems.append(f"column {c} must hold JSON objects")
    for c in PROVENANCE_COLUMNS:
        if c not in df.columns or c in OPTIONAL_PROVENANCE:
            continue
        if df[c].isna().any() or (pd.api.types.is_string_dtype(df[c]) and (df[c].astype(str) == "").any()):
            problems.append(f"provenance column {c} has empty values")
    return problems


def _run_problems(df: pd.DataFrame) -> list[str]:
    """Each run_id describes one run: one key and one provenance, every score on the same OOD sets."""
    problems = []
    constant = [c for c in RUN_CONSTANT if c in df.columns]
    for run_id, g in df.groupby("run_id", sort=False):
        varying = [c for c in constant if g[c].nunique(dropna=False) > 1]
        if varying:
            problems.append(
                f"run {run_id} has more than one value in {', '.join(varying)}; one run_id must describe one run"
            )
        if {"score", "ood_dataset"} <= set(g.columns):
            per_score = g.groupby("score")["ood_dataset"].apply(lambda s: tuple(sorted(s)))
            if per_score.nunique() > 1:
                problems.append(f"run {run_id}: the scores were not all measured on the same OOD sets")
    return problems


def _suite_problems(df: pd.DataFrame, suites: Mapping[str, SuiteSpec]) -> list[str]:
    problems = []
    for (name, version), g in df.groupby(["suite", "suite_version"], sort=False):
        if name not in suites:
            problems.append(
                f"unknown suite {name!r}{suggest(str(name), list(suites))} "
                f"(`oodbench list suites` shows the registered ones)"
            )
            continue
        spec = suites[name]
        if int(version) != spec.version:
            problems.append(
                f"suite {name!r} is at version {spec.version}, the file has version {version}; "
                f"re-run the entry with the current suite"
            )
            continue
        if "ood_dataset" in g.columns and "ood_group" in g.columns:
            expected = set(spec.ood_sets())
            found = set(zip(g["ood_group"], g["ood_dataset"], strict=False))
            if found != expected:
                missing = sorted(f"{d} ({grp})" for grp, d in expected - found)
                extra = sorted(f"{d} ({grp})" for grp, d in found - expected)
                problems.append(
                    f"suite {name!r} v{version} OOD sets do not match"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; not in the suite {', '.join(extra)}" if extra else "")
                )
        if "id_dataset" in g.columns and set(g["id_dataset"]) != {spec.id_test}:
            problems.append(
                f"suite {name!r} has ID dataset {spec.id_test!r}, the file has {sorted(map(str, set(g['id_dataset'])))}"
            )
    return problems


def validate_frame(df: pd.DataFrame, *, suites: Mapping[str, SuiteSpec] | None = None) -> list[str]:
    """Every problem of a results frame, as sentences; [] when it is valid.

    Checks columns, types, NaNs, ranges, JSON fields, empty provenance, duplicate keys, that each
    run_id is one consistent run and, given `suites`, the suite name, version and OOD sets.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    problems = [f"missing required columns: {', '.join(missing)}"] if missing else []
    if df.empty:
        return problems + ["the file has no rows"]
    problems += _type_problems(df) + _value_problems(df)
    if len(missing) == 0 and not problems:  # structural checks need well-typed columns
        dup = df.duplicated(subset=list(KEY_COLUMNS), keep=False)
        if dup.any():
            problems.append(
                f"{int(dup.sum())} rows share the same key (suite, backbone, method, config, score, "
                f"shots, seed, OOD dataset)"
            )
        problems += _run_problems(df)
        if suites is not None:
            problems += _suite_problems(df, suites)
    return problems


def validate_file(path: Path, *, suites: Mapping[str, SuiteSpec] | None = None) -> Validation:
    """Read and validate one result file; never raises for a bad file (its problems say what is wrong)."""
    try:
        df = read_results(path)
    except OodbenchError as err:
        return Validation(Path(path), [str(err)])
    return Validation(Path(path), validate_frame(df, suites=suites), df)
