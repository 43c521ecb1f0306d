"""Result files: the typed result row, the Parquet schema derived from it, the per-sample scores
sidecar, and writing (atomically, never over another file), reading and validating them.

One row per (run, score with its parameters, OOD dataset). `ResultRow` is the one definition of the
columns: their names, types, groups and the schema version that introduced them; the Parquet schema
and every column list below are derived from it. Metrics are floats in [0, 1]; nothing here formats
numbers for people. Files written before a column existed (an older `schema_version`) still
validate: they are checked against the columns of their own version.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_type_hints

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.atomic import atomic_path
from benchmark.errors import OodbenchError
from benchmark.hashing import sha256_file
from benchmark.protocols import PROTOCOLS
from benchmark.registry import suggest
from benchmark.suites import OOD_GROUPS, SUITES, SuiteSpec

SCHEMA_VERSION = 2
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")  # run ids name files (verification records)
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
SCORES_SUFFIX = ".scores.parquet"
WEIGHTS_SUFFIX = ".weights.safetensors"  # tuned encoder weights (or a LoRA delta) an entry may ship


def col(group: str, *, since: int = 1, optional: bool = False, doc: str = "") -> Any:
    """A ResultRow column: its `group`, the schema version that introduced it, and whether it may be
    empty (a string column that is "" or a float column that is NaN)."""
    return field(metadata={"group": group, "since": since, "optional": optional, "doc": doc})


@dataclass(frozen=True)
class ResultRow:
    """One row of a result file. The Parquet schema is derived from these fields."""

    # what the row is about (the key)
    suite: str = col("key")
    suite_version: int = col("key")
    backbone: str = col("key")
    method: str = col("key")
    method_config: str = col("key", doc="canonical JSON of the method's effective config")
    config_hash: str = col("key")
    score: str = col("key")
    score_config: str = col("key", since=2, doc="canonical JSON of the score's parameters")
    shots: int = col("key")
    seed: int = col("key")
    id_dataset: str = col("key")
    ood_dataset: str = col("key")
    ood_group: str = col("key")
    # metrics (fractions in [0, 1])
    fpr95: float = col("metric", doc="FPR at 95% TPR with ID as the positive class (MCM's convention)")
    fpr95_ood_positive: float = col("metric", since=2, doc="FPR at 95% TPR with OOD positive (OpenOOD's)")
    auroc: float = col("metric")
    aupr_in: float = col("metric")
    aupr_out: float = col("metric")
    id_acc: float = col("metric")
    # 95% bootstrap intervals (NaN when the run kept no per-sample scores)
    fpr95_low: float = col("interval", since=2, optional=True)
    fpr95_high: float = col("interval", since=2, optional=True)
    fpr95_ood_positive_low: float = col("interval", since=2, optional=True)
    fpr95_ood_positive_high: float = col("interval", since=2, optional=True)
    auroc_low: float = col("interval", since=2, optional=True)
    auroc_high: float = col("interval", since=2, optional=True)
    aupr_in_low: float = col("interval", since=2, optional=True)
    aupr_in_high: float = col("interval", since=2, optional=True)
    aupr_out_low: float = col("interval", since=2, optional=True)
    aupr_out_high: float = col("interval", since=2, optional=True)
    id_acc_low: float = col("interval", since=2, optional=True)
    id_acc_high: float = col("interval", since=2, optional=True)
    n_id: int = col("count")
    n_ood: int = col("count")
    # what the entry was allowed to use, and how the test images were shown to it
    protocol: str = col("protocol", since=2, doc="zero-shot, few-shot or test-time")
    uses_extra_data: bool = col("protocol", since=2)
    uses_language_model: bool = col("protocol", since=2)
    stream_seed: int = col("protocol", since=2, doc="seed of the interleaved order of test images")
    stream_batch_size: int = col("protocol", since=2, doc="images per predict call")
    # provenance
    run_id: str = col("provenance")
    created_at: datetime = col("provenance")
    oodbench_version: str = col("provenance")
    git_commit: str = col("provenance", optional=True)
    package_versions: str = col("provenance")
    device: str = col("provenance")
    precision: str = col("provenance")
    weights_sha256: str = col("provenance")
    tuned_weights_sha256: str = col("provenance", since=2, optional=True, doc="sha256 of tuned encoder weights")
    fewshot_hash: str = col("provenance", optional=True)
    dataset_hashes: str = col("provenance")
    scores_sha256: str = col("provenance", since=2, optional=True, doc="sha256 of the per-sample scores sidecar")
    schema_version: int = col("provenance", since=2)
    # cost
    fit_seconds: float = col("cost", since=2)
    predict_seconds: float = col("cost", since=2)
    peak_memory_mb: float = col("cost", since=2)


ARROW_TYPES = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: pa.timestamp("us", tz="UTC"),
}
_HINTS = get_type_hints(ResultRow)
COLUMNS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(ResultRow)}
SCHEMA = pa.schema([(name, ARROW_TYPES[_HINTS[name]]) for name in COLUMNS])


def columns(group: str) -> tuple[str, ...]:
    return tuple(n for n, f in COLUMNS.items() if f.metadata["group"] == group)


def required(schema_version: int = SCHEMA_VERSION) -> tuple[str, ...]:
    """The columns a file of `schema_version` must have."""
    return tuple(n for n, f in COLUMNS.items() if f.metadata["since"] <= schema_version)


KEY_COLUMNS = columns("key")
METRIC_COLUMNS = columns("metric")
INTERVAL_COLUMNS = columns("interval")
COUNT_COLUMNS = columns("count")
PROTOCOL_COLUMNS = columns("protocol")
PROVENANCE_COLUMNS = columns("provenance")
COST_COLUMNS = columns("cost")
OPTIONAL_COLUMNS = tuple(n for n, f in COLUMNS.items() if f.metadata["optional"])
# what varies between the rows of one run; everything else is the same on all of them
PER_ROW = (
    "score",
    "score_config",
    "ood_dataset",
    "ood_group",
    "fpr95",
    "fpr95_ood_positive",
    "auroc",
    "aupr_in",
    "aupr_out",
    "n_ood",
) + tuple(c for c in INTERVAL_COLUMNS if not c.startswith("id_acc"))
RUN_CONSTANT = tuple(c for c in COLUMNS if c not in PER_ROW)
INTERVAL_METRICS = tuple(m for m in METRIC_COLUMNS if f"{m}_low" in COLUMNS)


def interval_columns(metric: str) -> tuple[str, str]:
    return f"{metric}_low", f"{metric}_high"


def rows_frame(rows: list[ResultRow]) -> pd.DataFrame:
    """Result rows as a DataFrame with exactly the schema's columns, in its order."""
    return pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=list(COLUMNS))


# ---------------------------------------------------------------- files


def run_stem(*, suite: str, backbone: str, method: str, config_hash: str, shots: int, seed: int) -> str:
    """The file name stem shared by every file of one run key (the run id follows it)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone).strip("_")
    return f"{suite}__{safe}__{method}-{config_hash[:10]}__k{shots}__s{seed}"


def is_scores_file(path: Path) -> bool:
    return Path(path).name.endswith(SCORES_SUFFIX)


def result_files(folder: Path, pattern: str = "*.parquet") -> list[Path]:
    """The result files under `folder` (recursively), sidecars excluded."""
    return sorted(p for p in Path(folder).rglob(pattern) if not is_scores_file(p))


def existing_runs(results_dir: Path, stem: str) -> list[Path]:
    return sorted(p for p in Path(results_dir).glob(f"{stem}__*.parquet") if not is_scores_file(p))


def scores_path(result_path: Path) -> Path:
    """The per-sample scores sidecar of a result file: `<name>.scores.parquet` beside it."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name.removesuffix(".parquet") + SCORES_SUFFIX)


def weights_path(result_path: Path) -> Path:
    """The tuned weights an entry of an encoder-tuning method may ship: `<name>.weights.safetensors` beside it
    (its sha256 is the rows' `tuned_weights_sha256`)."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name.removesuffix(".parquet") + WEIGHTS_SUFFIX)


def to_table(rows: pd.DataFrame) -> pa.Table:
    """Rows as an Arrow table with the schema's types; columns beyond the schema follow, typed as pandas has them."""
    missing = [c for c in SCHEMA.names if c not in rows.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    extra = [c for c in rows.columns if c not in SCHEMA.names]
    schema = SCHEMA
    for c in extra:
        schema = schema.append(pa.field(c, pa.Table.from_pandas(rows[[c]], preserve_index=False).schema.field(c).type))
    return pa.Table.from_pandas(rows[list(schema.names)], schema=schema, preserve_index=False)


def _write_parquet(table: pa.Table, path: Path, *, what: str) -> Path:
    path = Path(path)
    if path.exists():
        raise OodbenchError(
            f"{path} already exists; {what} are never overwritten. Choose another --out or move the old file away."
        )
    try:
        with atomic_path(path, replace=False) as tmp:
            pq.write_table(table, tmp)
    except FileExistsError:
        raise OodbenchError(f"{path} appeared while writing; {what} are never overwritten.") from None
    except OSError as err:
        raise OodbenchError(
            f"Cannot write {what} to {path}: {err.strerror}. Pass --out (or --results-dir) pointing "
            f"at a writable folder."
        ) from None
    return path


def write_results(rows: pd.DataFrame, path: Path) -> Path:
    """Write one run's rows to `path` atomically; an existing file is never replaced."""
    return _write_parquet(to_table(rows), path, what="results")


def write_scores(scores: pd.DataFrame, path: Path) -> Path:
    """Write a per-sample scores sidecar (see `scores_frame`) atomically, never over another file."""
    return _write_parquet(pa.Table.from_pandas(scores, preserve_index=False), path, what="per-sample scores")


def read_parquet(path: Path, *, what: str = "Result file") -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise OodbenchError(f"{what} {path} does not exist.")
    try:
        return pq.read_table(path).to_pandas()
    except Exception as err:  # pyarrow raises many types for damaged files and invalid UTF-8
        raise OodbenchError(f"{path} is not a readable Parquet file ({type(err).__name__}: {err}).") from None


def read_results(path: Path) -> pd.DataFrame:
    return read_parquet(path)


def read_scores(path: Path) -> pd.DataFrame:
    return read_parquet(path, what="Per-sample scores file")


def score_column(score: str, score_config: str) -> str:
    """The sidecar column of one score with its parameters."""
    return f"{score} {score_config}"


def scores_frame(per_dataset: Mapping[str, Mapping[str, Any]], columns_by_score: Mapping[str, str]) -> pd.DataFrame:
    """The sidecar's table: one row per test image (datasets in run order, images in pinned-list order) with
    `dataset`, `index`, `label` (-1 for OOD), `pred` (argmax of the logits) and one float32 column per score.

    `per_dataset[name]` holds "label", "pred" and, per score column name, its values."""
    import numpy as np

    frames = []
    for name, parts in per_dataset.items():
        n = len(parts["label"])
        frame = {
            "dataset": np.full(n, name, dtype=object),
            "index": np.arange(n, dtype=np.int64),
            "label": np.asarray(parts["label"], dtype=np.int64),
            "pred": np.asarray(parts["pred"], dtype=np.int64),
        }
        for column in columns_by_score.values():
            frame[column] = np.asarray(parts[column], dtype=np.float32)
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- validation


@dataclass
class Validation:
    """The outcome of validating one file: its problems (sentences), notes that are not problems (an older
    suite version), and, when readable, its rows."""

    path: Path
    problems: list[str] = field(default_factory=list)
    rows: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def registered_suites() -> dict[str, SuiteSpec]:
    """Every registered suite by name: what validation checks suite names, versions and OOD sets against."""
    return dict(SUITES.items())


def schema_version_of(df: pd.DataFrame) -> int:
    """A frame's schema version: its `schema_version` column, or 1 for files written before that column existed."""
    if "schema_version" not in df.columns or df.empty:
        return 1
    values = pd.to_numeric(df["schema_version"], errors="coerce")
    return int(values.max()) if values.notna().all() else -1


def _is_json_object(s: object) -> bool:
    try:
        return isinstance(json.loads(s), dict)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _type_problems(df: pd.DataFrame, names: tuple[str, ...]) -> list[str]:
    problems = []
    for c in [c for c in names if c in df.columns]:
        expected = SCHEMA.field(c).type
        if pa.types.is_string(expected) and not all(isinstance(v, str) for v in df[c]):
            problems.append(f"column {c} must hold strings")
        elif pa.types.is_boolean(expected) and not pd.api.types.is_bool_dtype(df[c]):
            problems.append(f"column {c} must hold true/false (found {df[c].dtype})")
        elif pa.types.is_integer(expected) and (
            not pd.api.types.is_integer_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
        ):
            problems.append(f"column {c} must hold integers (found {df[c].dtype})")
        elif pa.types.is_floating(expected) and not pd.api.types.is_float_dtype(df[c]):
            problems.append(f"column {c} must hold floats (found {df[c].dtype})")
        elif pa.types.is_timestamp(expected) and not isinstance(df[c].dtype, pd.DatetimeTZDtype):
            problems.append(f"column {c} must hold UTC timestamps (found {df[c].dtype})")
    return problems


def _fraction_problems(df: pd.DataFrame, c: str, *, allow_nan: bool) -> list[str]:
    problems = []
    if not allow_nan and df[c].isna().any():
        problems.append(f"column {c} has {int(df[c].isna().sum())} NaN values")
    bad = df[c].dropna()
    bad = bad[(bad < 0) | (bad > 1)]
    if len(bad):
        problems.append(
            f"column {c} has {len(bad)} values outside [0, 1] (first: {float(bad.iloc[0])}); "
            f"metrics are stored as fractions, not percentages"
        )
    return problems


def _value_problems(df: pd.DataFrame, names: tuple[str, ...]) -> list[str]:
    present = set(names) & set(df.columns)
    problems = []
    for c in [c for c in METRIC_COLUMNS if c in present and pd.api.types.is_float_dtype(df[c])]:
        problems += _fraction_problems(df, c, allow_nan=False)
    for m in INTERVAL_METRICS:
        low, high = interval_columns(m)
        if {low, high} <= present and pd.api.types.is_float_dtype(df[low]) and pd.api.types.is_float_dtype(df[high]):
            problems += _fraction_problems(df, low, allow_nan=True) + _fraction_problems(df, high, allow_nan=True)
            if (df[low].isna() != df[high].isna()).any():
                problems.append(f"interval {low}/{high} has a bound without the other")
            if (df[low] > df[high]).any():
                problems.append(f"interval {low} is above {high} on {int((df[low] > df[high]).sum())} rows")
    for c in COUNT_COLUMNS:
        if c in present and pd.api.types.is_integer_dtype(df[c]) and (df[c] < 1).any():
            problems.append(f"column {c} has values below 1; every metric needs ID and OOD samples")
    for c in ("shots", "seed", "stream_seed", "stream_batch_size"):
        if c in present and pd.api.types.is_integer_dtype(df[c]) and (df[c] < 0).any():
            problems.append(f"column {c} has negative values")
    for c in COST_COLUMNS:
        if c in present and pd.api.types.is_float_dtype(df[c]) and not df[c].between(0, float("inf")).all():
            problems.append(f"column {c} must hold finite values >= 0")
    if "ood_group" in present:
        groups = set(df["ood_group"]) - set(OOD_GROUPS)
        if groups:
            problems.append(f"ood_group must be 'near' or 'far' (found {sorted(map(str, groups))})")
    if "protocol" in present:
        bad = set(df["protocol"]) - set(PROTOCOLS)
        if bad:
            problems.append(f"protocol must be one of {', '.join(PROTOCOLS)} (found {sorted(map(str, bad))[:3]})")
    if "run_id" in present:
        bad_ids = [v for v in df["run_id"].unique() if not (isinstance(v, str) and RUN_ID_PATTERN.match(v))]
        if bad_ids:
            problems.append(f"run_id must be 8-64 letters, digits, '-' or '_' (found {str(bad_ids[0])[:80]!r})")
    for c in ("scores_sha256", "tuned_weights_sha256"):
        if c in present:
            bad = [v for v in df[c].unique() if isinstance(v, str) and v and not SHA256_PATTERN.match(v)]
            if bad:
                problems.append(f"column {c} must be empty or a sha256 (64 hex digits), found {str(bad[0])[:80]!r}")
    for c in ("method_config", "score_config", "package_versions", "dataset_hashes"):
        if c in present and not all(_is_json_object(v) for v in df[c]):
            problems.append(f"column {c} must hold JSON objects")
    for c in [c for c in names if c in present and c not in OPTIONAL_COLUMNS]:
        if pd.api.types.is_string_dtype(df[c]) or df[c].dtype == object:
            if (df[c].astype(str) == "").any() or df[c].isna().any():
                problems.append(f"column {c} has empty values")
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
        score_key = ["score", "score_config"] if "score_config" in g.columns else ["score"]
        per_score = g.groupby(score_key)["ood_dataset"].apply(lambda s: tuple(sorted(s)))
        if per_score.nunique() > 1:
            problems.append(f"run {run_id}: the scores were not all measured on the same OOD sets")
    return problems


def _suite_problems(df: pd.DataFrame, suites: Mapping[str, SuiteSpec]) -> tuple[list[str], list[str]]:
    """Problems, and notes (an older suite version is valid and noted)."""
    problems, notes = [], []
    for (name, version), g in df.groupby(["suite", "suite_version"], sort=False):
        if name not in suites:
            problems.append(
                f"unknown suite {name!r}{suggest(str(name), list(suites))} "
                f"(`oodbench list suites` shows the registered ones)"
            )
            continue
        spec = suites[name]
        at = spec.at(int(version))
        if at is None:
            problems.append(
                f"suite {name!r} is at version {spec.version}, the file has version {version}, which "
                f"this oodbench does not know; re-run the entry with the current suite"
            )
            continue
        if at.version != spec.version:
            notes.append(
                f"suite {name!r} version {version} is older than the current version {spec.version}; "
                f"shown as that older version, apart from current entries"
            )
        expected = set(at.ood_sets())
        found = set(zip(g["ood_group"], g["ood_dataset"], strict=True))
        if found != expected:
            missing = sorted(f"{d} ({grp})" for grp, d in expected - found)
            extra = sorted(f"{d} ({grp})" for grp, d in found - expected)
            problems.append(
                f"suite {name!r} v{version} OOD sets do not match"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; not in the suite {', '.join(extra)}" if extra else "")
            )
        if set(g["id_dataset"]) != {at.id_test}:
            problems.append(
                f"suite {name!r} has ID dataset {at.id_test!r}, the file has {sorted(map(str, set(g['id_dataset'])))}"
            )
    return problems, notes


def validate_frame(
    df: pd.DataFrame, *, suites: Mapping[str, SuiteSpec] | None = None, notes: list[str] | None = None
) -> list[str]:
    """Every problem of a results frame, as sentences; [] when it is valid. Notes that are not problems
    (an older suite version) are appended to `notes` when given.

    Checks the columns of the frame's schema version, types, NaNs, ranges, JSON fields, empty values,
    duplicate keys, that each run_id is one consistent run and, given `suites`, the suite name, version
    and OOD sets."""
    version = schema_version_of(df)
    if not 1 <= version <= SCHEMA_VERSION:
        return [
            f"schema_version must be a whole number from 1 to {SCHEMA_VERSION} (this oodbench's); a newer "
            f"file needs a newer oodbench"
        ]
    names = required(version)
    missing = [c for c in names if c not in df.columns]
    problems = [f"missing required columns: {', '.join(missing)}"] if missing else []
    if df.empty:
        return problems + ["the file has no rows"]
    problems += _type_problems(df, names) + _value_problems(df, names)
    if not missing and not problems:  # structural checks need well-typed columns
        key = [c for c in KEY_COLUMNS if c in df.columns]
        dup = df.duplicated(subset=key, keep=False)
        if dup.any():
            problems.append(f"{int(dup.sum())} rows share the same key ({', '.join(key)})")
        problems += _run_problems(df)
        if suites is not None:
            suite_problems, suite_notes = _suite_problems(df, suites)
            problems += suite_problems
            if notes is not None:
                notes += suite_notes
    return problems


def sidecar_problems(path: Path, rows: pd.DataFrame) -> list[str]:
    """Does the per-sample scores sidecar of result file `path` agree with its rows? Checks its sha256,
    its datasets and counts, and that it has a column for every score of the rows."""
    expected = {v for v in rows.get("scores_sha256", pd.Series(dtype=object)) if isinstance(v, str) and v}
    if not expected:
        return []
    side = scores_path(path)
    if len(expected) > 1:
        return ["the rows name more than one scores_sha256; one result file has one sidecar"]
    if not side.exists():
        return [f"the rows name a per-sample scores file but {side.name} is missing beside the result file"]
    digest = sha256_file(side)
    if digest != next(iter(expected)):
        return [f"{side.name} does not match scores_sha256 in the rows (it was changed or replaced)"]
    try:
        scores = read_scores(side)
    except OodbenchError as err:
        return [str(err)]
    problems = []
    counts = scores.groupby("dataset").size().to_dict() if "dataset" in scores.columns else {}
    first = rows.iloc[0]
    if counts.get(first["id_dataset"]) != int(first["n_id"]):
        problems.append(f"{side.name} has {counts.get(first['id_dataset'], 0)} ID images, the rows say {first['n_id']}")
    for name, n in rows.groupby("ood_dataset")["n_ood"].first().items():
        if counts.get(name) != int(n):
            problems.append(f"{side.name} has {counts.get(name, 0)} images of {name}, the rows say {n}")
    for score, config in rows[["score", "score_config"]].drop_duplicates().itertuples(index=False):
        if score_column(score, config) not in scores.columns:
            problems.append(f"{side.name} has no column for score {score} {config}")
    return problems


def weights_problems(path: Path, rows: pd.DataFrame) -> list[str]:
    """Do shipped tuned weights beside result file `path` (optional) match the rows' `tuned_weights_sha256`?"""
    shipped = weights_path(path)
    if not shipped.exists():
        return []
    expected = {v for v in rows.get("tuned_weights_sha256", pd.Series(dtype=object)) if isinstance(v, str) and v}
    if not expected:
        return [f"{shipped.name} lies beside the result file, but its rows name no tuned_weights_sha256"]
    if sha256_file(shipped) not in expected:
        return [f"{shipped.name} does not match tuned_weights_sha256 in the rows (it was changed or replaced)"]
    return []


def validate_file(path: Path, *, suites: Mapping[str, SuiteSpec] | None = None) -> Validation:
    """Read and validate one result file (and its scores sidecar when the rows name one, and its shipped
    tuned weights when they lie beside it); never raises for a bad file (its problems say what is wrong)."""
    try:
        df = read_results(path)
    except OodbenchError as err:
        return Validation(Path(path), [str(err)])
    notes: list[str] = []
    problems = validate_frame(df, suites=suites, notes=notes)
    if not problems and schema_version_of(df) >= 2:
        problems = sidecar_problems(Path(path), df) + weights_problems(Path(path), df)
    return Validation(Path(path), problems, df, notes)
