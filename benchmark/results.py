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
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmark.atomic import atomic_path
from benchmark.errors import OodbenchError
from benchmark.hashing import sha256_file
from benchmark.protocols import PROTOCOLS
from benchmark.registry import suggest
from benchmark.suites import OOD_GROUPS, SUITES, SuiteSpec
from methods.base import config_hash
from methods.scores import SCORES

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
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises many types for damaged files
        raise OodbenchError(f"{path} is not a readable Parquet file ({type(err).__name__}: {err}).") from None
    for name in table.column_names:
        if _is_text(table.schema.field(name).type):
            try:
                table.column(name).validate(full=True)
            except pa.ArrowInvalid:
                raise OodbenchError(
                    f"{path}: column {name} holds bytes that are not valid UTF-8 text; text columns must be UTF-8 "
                    f"(`oodbench validate {path}` lists every problem)."
                ) from None
    try:
        return table.to_pandas()
    except Exception as err:  # noqa: BLE001 - a column pandas cannot represent
        raise OodbenchError(f"{path} cannot be read as a table ({type(err).__name__}: {err}).") from None


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


# ---------------------------------------------------------------- bounds (the policy: CONTRIBUTING.md, "Bounds")

MAX_FILE_BYTES = 64 * 2**20  # one result file (the demo's are about 21 KB)
MAX_RUNS_PER_FILE = 64
MAX_SCORE_VARIANTS = 128  # scores with their parameters, per run
MAX_TEXT_CHARS = 256  # every text column but the JSON ones: names, versions, hashes, device
MAX_JSON_CHARS = 8192  # method_config, score_config, package_versions, dataset_hashes
JSON_COLUMNS = ("method_config", "score_config", "package_versions", "dataset_hashes")
TEXT_COLUMNS = tuple(n for n in COLUMNS if pa.types.is_string(SCHEMA.field(n).type))
# what identifies a run: two runs (in one file or two) with the same run key are copies of one run
RUN_KEY = ("suite", "suite_version", "backbone", "method", "config_hash", "shots", "seed")
FILE_COLUMN = "_file"  # in a batch's frame: the index of the file each row came from
# text that repeats on every row of a run and is only shown, never grouped by: kept as pandas Categorical in the
# frames of many files (about 1 KB of every 1.5 KB row), so 250,000 rows take tens of MB, not hundreds
PROVENANCE_CATEGORIES = (
    "method_config",
    "package_versions",
    "dataset_hashes",
    "git_commit",
    "weights_sha256",
    "tuned_weights_sha256",
    "fewshot_hash",
    "scores_sha256",
    "oodbench_version",
    "device",
    "precision",
)


def text_limit(column: str) -> int:
    return MAX_JSON_CHARS if column in JSON_COLUMNS else MAX_TEXT_CHARS


def max_rows_per_file(suites: Mapping[str, SuiteSpec] | None = None) -> int:
    """The most rows one result file may hold: MAX_RUNS_PER_FILE runs x MAX_SCORE_VARIANTS score variants x
    the most OOD sets of any version of any registered suite. Checked from the file's footer before its rows
    are read; each run's own count is then checked against its suite."""
    suites = registered_suites() if suites is None else suites
    versions = [v for s in suites.values() for v in (s.at(s.version), *s.history) if v is not None]
    most = max((len(v.ood_sets()) for v in versions), default=1)
    return MAX_RUNS_PER_FILE * MAX_SCORE_VARIANTS * max(most, 1)


# ---------------------------------------------------------------- validation


@dataclass
class Validation:
    """The outcome of validating one file: its problems (sentences), notes that are not problems (an older
    suite version), when readable its rows, and the sha256 of its bytes."""

    path: Path
    problems: list[str] = field(default_factory=list)
    rows: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def registered_suites() -> dict[str, SuiteSpec]:
    """Every registered suite by name: what validation checks suite names, versions and OOD sets against."""
    return dict(SUITES.items())


def _declared_scores() -> set[str]:
    """Score names the built-in method modules declare with `@register_score("name", ...)`, read from their
    source with ast: importing them would import torch."""
    import ast

    import methods

    names: set[str] = set()
    for folder in methods.__path__:
        for path in sorted(Path(folder).glob("*.py")):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (OSError, SyntaxError, UnicodeDecodeError):
                continue
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) == "register_score"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    names.add(node.args[0].value)
    return names


def _plugin_scores() -> set[str]:
    """Load the installed method plugins (`oodbench.methods` entry points) and return every registered score.
    A plugin that fails to import adds nothing; its scores stay unknown and are named as such."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="oodbench.methods"):
        try:
            ep.load()
        except Exception:  # noqa: BLE001 - a broken plugin only leaves its scores unknown
            continue
    return set(SCORES.names())


class KnownScores:
    """The score names a result file may use: those this oodbench registers (methods.scores, and the ones its
    method modules declare), and those of installed plugins. Plugins are imported only when a file names a
    score that is not built in, so validating ordinary files never imports plugin code."""

    def __init__(self, names: Iterable[str] | None = None) -> None:
        self.builtin = frozenset(SCORES.names()) | _declared_scores() if names is None else frozenset(names)
        self._names = set(self.builtin)
        self._plugins = names is not None  # an explicit list is complete

    def unknown(self, names: Iterable[str]) -> set[str]:
        missing = set(names) - self._names
        if missing and not self._plugins:
            self._plugins = True
            self._names |= _plugin_scores()
            missing -= self._names
        return missing


def registered_scores() -> KnownScores:
    """What validation checks score names against (see KnownScores)."""
    return KnownScores()


def schema_version_of(df: pd.DataFrame) -> int:
    """A frame's schema version: its `schema_version` column, or 1 for files written before that column existed."""
    if "schema_version" not in df.columns or df.empty:
        return 1
    values = pd.to_numeric(df["schema_version"], errors="coerce")
    return int(values.max()) if values.notna().all() else -1


def _is_json_object(s: object) -> bool:
    try:
        return isinstance(json.loads(s), dict)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        return False


# ---------------------------------------------------------------- stage 1: one file's columns and types


@dataclass
class Parsed:
    """One result file as read: its schema version, and its rows as an Arrow table with every column of the
    schema in the schema's types (columns its version lacks are null, `schema_version` is filled in), or None
    with the problems that kept it from being read. A pure function of the file's bytes."""

    version: int
    table: pa.Table | None
    problems: list[str] = field(default_factory=list)
    rows: int = 0  # rows read (the table may have moved into a chunk: see TableChunks)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _type_problem(name: str, t: pa.DataType) -> str | None:
    """Why a column of Arrow type `t` cannot be the schema's column `name`, or None."""
    expected = SCHEMA.field(name).type
    if pa.types.is_null(t):
        return None  # every value empty: the value checks say so
    if pa.types.is_string(expected) and not _is_text(t):
        return f"column {name} must hold strings (found {t})"
    if pa.types.is_boolean(expected) and not pa.types.is_boolean(t):
        return f"column {name} must hold true/false (found {t})"
    if pa.types.is_integer(expected) and not pa.types.is_integer(t):
        return f"column {name} must hold integers (found {t})"
    if pa.types.is_floating(expected) and not pa.types.is_floating(t):
        return f"column {name} must hold floats (found {t})"
    if pa.types.is_timestamp(expected) and not (pa.types.is_timestamp(t) and t.tz):
        return f"column {name} must hold UTC timestamps (found {t})"
    return None


def _version_of(table: pa.Table) -> tuple[int, str | None]:
    newer = (
        f"schema_version must be a whole number from 1 to {SCHEMA_VERSION} (this oodbench's), the same on every "
        f"row; a newer file needs a newer oodbench"
    )
    if "schema_version" not in table.column_names or table.num_rows == 0:
        return 1, None
    column = table.column("schema_version")
    if not pa.types.is_integer(column.type) or column.null_count:
        return -1, newer
    values = pc.unique(column).to_pylist()
    if len(values) != 1 or not 1 <= values[0] <= SCHEMA_VERSION:
        return -1, newer
    return int(values[0]), None


@functools.cache
def _version_schema(version: int) -> pa.Schema:
    return pa.schema([SCHEMA.field(c) for c in required(version)])


def _unified(table: pa.Table, version: int) -> pa.Table:
    """A table of exactly `version`'s columns and types in the current schema: later columns null, the version
    filled in."""
    if version == SCHEMA_VERSION:
        return table
    n = table.num_rows
    columns = [
        table.column(f.name)
        if f.name in table.column_names
        else (pa.array([version] * n, type=f.type) if f.name == "schema_version" else pa.nulls(n, f.type))
        for f in SCHEMA
    ]
    return pa.table(columns, schema=SCHEMA)


def parse_table(table: pa.Table) -> Parsed:
    """Check a table's columns against its schema version (all present, none unknown, each of its type, text
    valid UTF-8) and cast it to the schema's types. Values are checked later, over many files at once."""
    version, problem = _version_of(table)
    if problem:
        return Parsed(version, None, [problem])
    if table.num_rows and table.schema.remove_metadata().equals(_version_schema(version)):  # what the harness writes
        try:
            table.validate(full=True)  # UTF-8 of every text column; the slow path below names a bad one
            return Parsed(version, _unified(table.replace_schema_metadata(None), version), [], table.num_rows)
        except pa.ArrowInvalid:
            pass
    names = table.column_names
    expected = required(version)
    problems = []
    twice = sorted({n for n in names if names.count(n) > 1}) if len(names) != len(set(names)) else []
    if twice:
        problems.append(f"columns {', '.join(twice[:10])} appear more than once")
    missing = [c for c in expected if c not in names]
    if missing:
        problems.append(f"missing required columns: {', '.join(missing)}")
    unknown = [c for c in dict.fromkeys(names) if c not in expected]
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        problems.append(
            f"columns not in result schema version {version}: {', '.join(map(repr, unknown[:10]))}{more}; a result "
            f"file holds exactly its schema version's columns (the harness writes them), nothing else"
        )
    if table.num_rows == 0:
        problems.append("the file has no rows")
    n = table.num_rows
    columns: dict[str, pa.ChunkedArray] = {}
    for name in SCHEMA.names:
        target = SCHEMA.field(name).type
        if name not in expected:
            fill = version if name == "schema_version" else None
            columns[name] = pa.chunked_array([pa.array([fill] * n, type=target)]) if fill else pa.nulls(n, target)
            continue
        if name not in names or name in twice:
            continue
        column = table.column(name)
        problem = _type_problem(name, column.type)
        if problem is None:
            try:
                column = column.cast(target, safe=not pa.types.is_timestamp(target))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                problem = f"column {name} does not fit the schema's {target} ({err})"
        if problem is None and pa.types.is_string(target):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                problem = f"column {name} holds bytes that are not valid UTF-8 text; text columns must be UTF-8"
        if problem:
            problems.append(problem)
        else:
            columns[name] = column
    if problems:
        return Parsed(version, None, problems)
    return Parsed(version, pa.table(columns, schema=SCHEMA), [], n)


def parse_bytes(data: bytes, *, max_rows: int) -> Parsed:
    """Parse a result file's bytes (checking its row count from the footer before reading any row)."""
    try:
        reader = pq.ParquetFile(pa.BufferReader(data))
        n = reader.metadata.num_rows
        if n > max_rows:
            return Parsed(
                -1,
                None,
                [
                    f"the file has {n} rows; a result file holds at most {max_rows} ({MAX_RUNS_PER_FILE} runs x "
                    f"{MAX_SCORE_VARIANTS} score variants x the OOD sets of the largest suite)"
                ],
            )
        if reader.metadata.num_columns > 4 * len(SCHEMA):
            return Parsed(
                -1, None, [f"the file has {reader.metadata.num_columns} columns; the schema has {len(SCHEMA)}"]
            )
        table = reader.read(use_threads=False, use_pandas_metadata=False)
        index = (table.schema.pandas_metadata or {}).get("index_columns", [])
        table = table.drop_columns([c for c in index if isinstance(c, str) and c in table.column_names])
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for damaged files
        return Parsed(-1, None, [f"not a readable Parquet file ({type(err).__name__}: {str(err)[:300]})"])
    return parse_table(table)


def read_file(path: Path, *, max_rows: int) -> tuple[bytes | None, str | None]:
    """A result file's bytes, or the problem that keeps it from being read (missing, too large, unreadable)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, f"the file is {size / 2**20:.0f} MiB; a result file is at most {MAX_FILE_BYTES >> 20} MiB"
        return path.read_bytes(), None
    except FileNotFoundError:
        return None, f"Result file {path} does not exist."
    except OSError as err:
        return None, f"{path} cannot be read ({err.strerror})"


def _arrow_of(df: pd.DataFrame) -> tuple[pa.Table | None, list[str]]:
    """A pandas frame as an Arrow table, column by column, so that a column of mixed types is named."""
    arrays, problems = {}, []
    for c in df.columns:
        try:
            arrays[str(c)] = pa.array(df[c], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            problems.append(f"column {c} holds values of more than one type")
    return (pa.table(arrays) if not problems else None), problems


# ---------------------------------------------------------------- stage 2: the values of many files at once


class _Report:
    """Problems and notes per file of a batch. A check gives a row mask over the whole frame; each file with a
    flagged row gets one sentence, so a problem always names its file."""

    def __init__(self, owner: np.ndarray, n_files: int) -> None:
        self.owner = owner  # file index of every row (non-decreasing)
        self.problems: list[list[str]] = [[] for _ in range(n_files)]
        self.notes: list[list[str]] = [[] for _ in range(n_files)]

    def rows(self, mask: np.ndarray, sentence: Callable[[int, int], str]) -> None:
        """`sentence(count, first flagged row)` for each file with flagged rows."""
        hit = np.flatnonzero(mask)
        if hit.size == 0:
            return
        files, first, counts = np.unique(self.owner[hit], return_index=True, return_counts=True)
        for f, i, n in zip(files.tolist(), first.tolist(), counts.tolist(), strict=True):
            self.problems[f].append(sentence(n, int(hit[i])))

    def values(self, mask: np.ndarray, values: pd.Series, sentence: Callable[[list[str]], str]) -> None:
        """`sentence(sorted distinct flagged values)` for each file with flagged rows."""
        hit = np.flatnonzero(mask)
        if hit.size == 0:
            return
        pairs = pd.DataFrame({"f": self.owner[hit], "v": values.iloc[hit].astype(str).to_numpy()}).drop_duplicates()
        for f, vals in pairs.groupby("f", sort=True)["v"]:
            self.problems[int(f)].append(sentence(sorted(vals)))

    def clean(self) -> np.ndarray:
        """Rows of files with no problem so far."""
        ok = np.array([not p for p in self.problems], dtype=bool)
        return ok[self.owner]


def _float(df: pd.DataFrame, c: str) -> np.ndarray:
    return df[c].to_numpy(dtype=np.float64, na_value=np.nan)


def _int(df: pd.DataFrame, c: str) -> np.ndarray:
    return df[c].to_numpy(dtype=np.float64, na_value=np.nan)  # float: a v1 row's missing v2 column is NaN


def _first_values(values: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(v[:80]) for v in values[:n])
    return shown + (f" and {len(values) - n} more" if len(values) > n else "")


def _check_text(df: pd.DataFrame, sel: np.ndarray, names: tuple[str, ...], rep: _Report) -> np.ndarray:
    """Lengths and empty values of the text columns; returns rows whose text is within bounds."""
    within = np.ones(len(df), dtype=bool)
    for c in [c for c in TEXT_COLUMNS if c in names]:
        lengths = df[c].str.len().to_numpy(dtype=np.float64, na_value=0.0)
        limit = text_limit(c)
        long = sel & (lengths > limit)
        within &= ~long
        rep.rows(
            long,
            lambda n, i, c=c, limit=limit, lengths=lengths: (
                f"column {c} has {n} values longer than {limit} characters (the longest has {int(lengths[i])}); "
                f"see the bounds in CONTRIBUTING.md"
            ),
        )
        if c not in OPTIONAL_COLUMNS:
            empty = sel & (df[c].isna().to_numpy() | (lengths == 0))
            rep.rows(empty, lambda n, i, c=c: f"column {c} has empty values")
    return within


def _check_metrics(df: pd.DataFrame, sel: np.ndarray, names: tuple[str, ...], rep: _Report) -> None:
    def fractions(c: str, *, allow_nan: bool) -> None:
        v = _float(df, c)
        if not allow_nan:
            rep.rows(sel & np.isnan(v), lambda n, i: f"column {c} has {n} NaN values")
        rep.rows(
            sel & ((v < 0) | (v > 1)),
            lambda n, i: (
                f"column {c} has {n} values outside [0, 1] (first: {float(v[i])}); "
                f"metrics are stored as fractions, not percentages"
            ),
        )

    for c in [c for c in METRIC_COLUMNS if c in names]:
        fractions(c, allow_nan=False)
    for m in INTERVAL_METRICS:
        low, high = interval_columns(m)
        if {low, high} <= set(names):
            fractions(low, allow_nan=True)
            fractions(high, allow_nan=True)
            lo, hi = _float(df, low), _float(df, high)
            rep.rows(
                sel & (np.isnan(lo) != np.isnan(hi)),
                lambda n, i, low=low, high=high: f"interval {low}/{high} has a bound without the other",
            )
            rep.rows(sel & (lo > hi), lambda n, i, low=low, high=high: f"interval {low} is above {high} on {n} rows")
    for c in [c for c in COUNT_COLUMNS if c in names]:
        rep.rows(
            sel & (_int(df, c) < 1),
            lambda n, i, c=c: f"column {c} has values below 1; every metric needs ID and OOD samples",
        )
    for c in [c for c in ("suite_version", "shots", "seed", "stream_seed", "stream_batch_size") if c in names]:
        rep.rows(sel & (_int(df, c) < 0), lambda n, i, c=c: f"column {c} has negative values")
    for c in [c for c in COST_COLUMNS if c in names]:
        v = _float(df, c)
        rep.rows(sel & ~(np.isfinite(v) & (v >= 0)), lambda n, i, c=c: f"column {c} must hold finite values >= 0")


def _check_words(
    df: pd.DataFrame, sel: np.ndarray, names: tuple[str, ...], rep: _Report, scores: KnownScores | None
) -> None:
    """Closed vocabularies (OOD group, protocol, score names), patterns (run id, sha256) and JSON objects."""
    if "ood_group" in names:
        bad = sel & ~df["ood_group"].isin(OOD_GROUPS).to_numpy()
        rep.values(bad, df["ood_group"], lambda v: f"ood_group must be 'near' or 'far' (found {v[:5]})")
    if "protocol" in names:
        bad = sel & ~df["protocol"].isin(PROTOCOLS).to_numpy()
        rep.values(bad, df["protocol"], lambda v: f"protocol must be one of {', '.join(PROTOCOLS)} (found {v[:3]})")
    ids = df["run_id"].str.fullmatch(RUN_ID_PATTERN.pattern.strip("^$"))
    bad = sel & ~ids.fillna(False).to_numpy(dtype=bool)
    rep.values(bad, df["run_id"], lambda v: f"run_id must be 8-64 letters, digits, '-' or '_' (found {v[0][:80]!r})")
    for c in ("scores_sha256", "tuned_weights_sha256"):
        if c in names:
            filled = df[c].str.len().to_numpy(dtype=np.float64, na_value=0.0) > 0
            sha = df[c].str.fullmatch(SHA256_PATTERN.pattern.strip("^$")).fillna(False).to_numpy(dtype=bool)
            bad = sel & filled & ~sha
            rep.values(
                bad, df[c], lambda v, c=c: f"column {c} must be empty or a sha256 (64 hex digits), found {v[0][:80]!r}"
            )
    for c in [c for c in JSON_COLUMNS if c in names]:
        codes, uniques = pd.factorize(df[c])
        ok = np.array([_is_json_object(u) for u in uniques] + [False], dtype=bool)  # codes -1 (missing) -> False
        rep.rows(sel & ~ok[codes], lambda n, i, c=c: f"column {c} must hold JSON objects")
    if scores is not None:
        present = pd.unique(df["score"][sel])
        unknown = scores.unknown(str(s) for s in present)
        if unknown:
            rep.values(
                sel & df["score"].isin(unknown).to_numpy(),
                df["score"],
                lambda v: (
                    f"{len(v)} unknown score name(s): {_first_values(v)}; this oodbench registers "
                    f"{', '.join(sorted(scores.builtin))} (a plugin's scores count where the plugin is installed)"
                ),
            )


def _pair_codes(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A code per row for the pair (a, b), and the first row of each code (missing values are values too)."""
    ca, _ = pd.factorize(a, use_na_sentinel=False)
    cb, _ = pd.factorize(b, use_na_sentinel=False)
    codes, _ = pd.factorize(ca.astype(np.int64) * (int(cb.max(initial=0)) + 1) + cb)
    first = np.full(int(codes.max(initial=-1)) + 1, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return codes, first


def _check_config_hash(df: pd.DataFrame, sel: np.ndarray, rep: _Report) -> None:
    """config_hash is recomputed from method and method_config: an edited config behind an old hash is found."""
    codes, first = _pair_codes(df["method"], df["method_config"])
    methods, configs = df["method"].to_numpy(dtype=object), df["method_config"].to_numpy(dtype=object)
    expected = np.array([config_hash(str(methods[i]), str(configs[i])) for i in first], dtype=object)
    given = df["config_hash"].to_numpy(dtype=object)
    bad = sel & (expected[codes] != given)
    rep.rows(
        bad,
        lambda n, i: (
            f"config_hash {str(given[i])[:12]}... does not match method and method_config on {n} rows (their sha256 "
            f"is {expected[codes[i]][:12]}...): the config was edited after the run, or the hash was; re-run the entry"
        ),
    )


def _runs(df: pd.DataFrame) -> np.ndarray:
    """A code per row for its (file, run_id): the run it belongs to."""
    return df.groupby([FILE_COLUMN, "run_id"], sort=False, dropna=False).ngroup().to_numpy()


def _check_runs(df: pd.DataFrame, sel: np.ndarray, rep: _Report) -> None:
    """Each run_id describes one run (one key and one provenance), every score variant on the same OOD sets, no
    row twice; at most MAX_RUNS_PER_FILE runs per file and MAX_SCORE_VARIANTS score variants per run."""
    run = _runs(df)
    n_runs = run.max() + 1 if len(run) else 0
    first = np.full(n_runs, -1, dtype=np.int64)
    order = np.arange(len(run))
    first[run[::-1]] = order[::-1]  # the first row of each run
    run_ids = df["run_id"].astype(str).to_numpy()
    varying: dict[int, list[str]] = {}
    for c in [c for c in RUN_CONSTANT if c in df.columns and c != "run_id"]:
        codes, _ = pd.factorize(df[c], use_na_sentinel=False)
        for r in np.unique(run[sel & (codes != codes[first[run]])]).tolist():
            varying.setdefault(r, []).append(c)
    for r, cols in varying.items():
        rep.problems[int(rep.owner[first[r]])].append(
            f"run {run_ids[first[r]]} has more than one value in {', '.join(cols)}; one run_id must describe one run"
        )
    key = ["score", "score_config", "ood_dataset"]
    dup = sel & pd.DataFrame({"run": run, **{k: df[k] for k in key}}).duplicated().to_numpy()
    rep.rows(dup, lambda n, i: f"{n} rows share the same key (run_id, {', '.join(key)})")
    variant, _ = _pair_codes(df["score"], df["score_config"])
    ood, _ = pd.factorize(df["ood_dataset"], use_na_sentinel=False)
    per_run = pd.DataFrame({"run": run[sel], "variant": variant[sel], "ood": ood[sel]})
    stats = per_run.groupby("run").agg(rows=("ood", "size"), variants=("variant", "nunique"), sets=("ood", "nunique"))
    for r, rows, variants, sets in stats.itertuples():
        row = first[r]
        if variants > MAX_SCORE_VARIANTS:
            rep.problems[int(rep.owner[row])].append(
                f"run {run_ids[row]} has {variants} score variants; at most {MAX_SCORE_VARIANTS} per run"
            )
        elif rows != variants * sets:
            rep.problems[int(rep.owner[row])].append(
                f"run {run_ids[row]}: the scores were not all measured on the same OOD sets"
            )
    runs_per_file = np.bincount(rep.owner[first[np.unique(run[sel])]], minlength=len(rep.problems))
    for f in np.flatnonzero(runs_per_file > MAX_RUNS_PER_FILE).tolist():
        rep.problems[f].append(f"the file holds {runs_per_file[f]} runs; at most {MAX_RUNS_PER_FILE} per file")


def _check_suites(df: pd.DataFrame, sel: np.ndarray, rep: _Report, suites: Mapping[str, SuiteSpec]) -> None:
    """Suite name, version, ID dataset and exact OOD sets, per (file, suite, version); an older version is a note."""
    cols = [FILE_COLUMN, "suite", "suite_version", "id_dataset", "ood_group", "ood_dataset"]
    found: dict[tuple, tuple[set, set]] = {}
    for f, name, version, id_ds, group, ood in df.loc[sel, cols].drop_duplicates().itertuples(index=False):
        sets, ids = found.setdefault((int(f), name, int(version)), (set(), set()))
        sets.add((group, ood))
        ids.add(id_ds)
    for (f, name, version), (sets, ids) in found.items():
        problems = rep.problems[f]
        if name not in suites:
            problems.append(
                f"unknown suite {str(name)[:80]!r}{suggest(str(name), list(suites))} "
                f"(`oodbench list suites` shows the registered ones)"
            )
            continue
        spec = suites[name]
        at = spec.at(version)
        if at is None:
            problems.append(
                f"suite {name!r} is at version {spec.version}, the file has version {version}, which "
                f"this oodbench does not know; re-run the entry with the current suite"
            )
            continue
        if at.version != spec.version:
            rep.notes[f].append(
                f"suite {name!r} version {version} is older than the current version {spec.version}; "
                f"shown as that older version, apart from current entries"
            )
        expected = set(at.ood_sets())
        if sets != expected:
            missing = sorted(f"{d} ({g})" for g, d in expected - sets)
            extra = sorted(f"{str(d)[:80]} ({g})" for g, d in sets - expected)
            problems.append(
                f"suite {name!r} v{version} OOD sets do not match"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; not in the suite {_first_values(extra, 5)}" if extra else "")
            )
        if ids != {at.id_test}:
            problems.append(
                f"suite {name!r} has ID dataset {at.id_test!r}, the file has {_first_values(sorted(ids), 3)}"
            )


def _check_frame(
    df: pd.DataFrame, rep: _Report, *, suites: Mapping[str, SuiteSpec] | None, scores: KnownScores | None
) -> None:
    """Every per-file check over the rows of many files (`df` has FILE_COLUMN; `rep.owner` is that column)."""
    versions = df["schema_version"].to_numpy()
    for version in np.unique(versions).tolist():
        names = required(int(version))
        sel = versions == version
        sel &= _check_text(df, sel, names, rep)
        _check_metrics(df, sel, names, rep)
        _check_words(df, sel, names, rep, scores)
        _check_config_hash(df, sel, rep)
    clean = rep.clean()  # structural checks need values that passed the checks above
    if clean.any():
        _check_runs(df, clean, rep)
        if suites is not None:
            _check_suites(df, clean, rep, suites)


def _describe_run(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {str(row[k])[:60]}" for k in RUN_KEY)


def cross_file_problems(df: pd.DataFrame, names: Sequence[str], rep: _Report) -> None:
    """Copies across files: two runs with the same run key (suite, suite_version, backbone, method, config_hash,
    shots, seed), whatever their run_ids, or one run_id in two files. Every file involved gets a problem naming the
    others: which copy is genuine cannot be told from the files, so none is published."""
    clean = rep.clean()
    runs = df.loc[clean, [FILE_COLUMN, "run_id", *RUN_KEY]].drop_duplicates([FILE_COLUMN, "run_id"])
    if runs.empty:
        return

    def others(group: pd.DataFrame, f: int, run_id: str) -> str:
        rest = group[(group[FILE_COLUMN] != f) | (group["run_id"] != run_id)]
        where = [
            f"run {r} in {'this file' if g == f else names[g]}"
            for g, r in zip(rest[FILE_COLUMN], rest["run_id"], strict=True)
        ]
        return ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")

    fix = "neither copy is published; keep the genuine file and remove the other"
    same_key = runs[runs.duplicated(list(RUN_KEY), keep=False)]
    for _, group in same_key.groupby(list(RUN_KEY), sort=False, dropna=False):
        for f, run_id, *_ in group.itertuples(index=False):
            rep.problems[int(f)].append(
                f"run {run_id} is a copy of the same run ({_describe_run(group.iloc[0])}) as "
                f"{others(group, int(f), run_id)}; {fix}"
            )
    same_id = runs[runs.duplicated("run_id", keep=False)]
    for run_id, group in same_id.groupby("run_id", sort=False):
        if group[FILE_COLUMN].nunique() > 1 and not group[list(RUN_KEY)].duplicated(keep=False).all():
            for f in group[FILE_COLUMN].unique().tolist():
                rest = [names[g] for g in group[FILE_COLUMN].unique().tolist() if g != f]
                rep.problems[int(f)].append(
                    f"run_id {run_id} is also in {', '.join(rest[:3])}"
                    + (f" and {len(rest) - 3} more" if len(rest) > 3 else "")
                    + f"; a run_id names one run in one file; {fix}"
                )


def encode_text(table: pa.Table) -> pa.Table:
    """`table` with every text column dictionary-encoded: a result file's text repeats on every row of a run
    (provenance, JSON configs), so a frame of 250,000 rows takes tens of MB instead of hundreds."""
    columns = [
        pc.dictionary_encode(c.combine_chunks())
        if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)
        else c
        for c in table.columns
    ]
    return pa.table(columns, names=table.column_names)


class TableChunks:
    """Parsed files' tables gathered into dictionary-encoded chunks of CHUNK_FILES files, so that reading
    10,000 small files costs memory in proportion to their rows, not their number (each small Arrow table
    and its reader cost about 100 KB)."""

    CHUNK_FILES = 256

    def __init__(self) -> None:
        self.chunks: list[pa.Table] = []
        self._pending: list[pa.Table] = []

    def add(self, parsed: Parsed) -> Parsed:
        """Keep `parsed`'s rows; returns it without its table (its row count stays)."""
        if parsed.table is None:
            return parsed
        self._pending.append(parsed.table)
        if len(self._pending) >= self.CHUNK_FILES:
            self._flush()
        return Parsed(parsed.version, None, parsed.problems, parsed.rows)

    def _flush(self) -> None:
        if self._pending:
            self.chunks.append(encode_text(pa.concat_tables(self._pending)))
            self._pending = []

    def table(self) -> pa.Table:
        """Every kept row, in the order the files were added."""
        self._flush()
        return pa.concat_tables(self.chunks) if self.chunks else encode_text(SCHEMA.empty_table())


@dataclass
class Batch:
    """Many files validated together: one Validation per file (in input order; rows not attached), and the rows
    of every file that could be read as result rows (`table`: all schema versions in the current schema's
    columns, text dictionary-encoded; `owner`: the index of each row's file)."""

    checks: list[Validation]
    table: pa.Table
    owner: np.ndarray

    def rows(self, mask: np.ndarray | None = None) -> pd.DataFrame:
        """The rows (all, or those of `mask`) as a frame in the schema's types, with FILE_COLUMN; the bulky
        provenance text (PROVENANCE_CATEGORIES) stays encoded, as pandas Categorical columns."""
        table, owner = (self.table, self.owner) if mask is None else (self.table.filter(mask), self.owner[mask])
        target = pa.schema([f if f.name in PROVENANCE_CATEGORIES else SCHEMA.field(f.name) for f in table.schema])
        df = table.cast(target).to_pandas(split_blocks=True, self_destruct=True)
        df[FILE_COLUMN] = owner
        return df

    def valid_rows(self) -> pd.DataFrame:
        """The rows of the valid files, in input order (with FILE_COLUMN)."""
        ok = np.array([c.ok for c in self.checks], dtype=bool)
        return self.rows(None if ok[self.owner].all() else ok[self.owner])

    def file_rows(self, i: int) -> pd.DataFrame:
        """The rows of file `i`, in the columns of its own schema version (empty if it could not be read)."""
        frame = self.rows(self.owner == i).drop(columns=[FILE_COLUMN])
        for c in PROVENANCE_CATEGORIES:  # one file: plain text, as read_results gives it
            frame[c] = frame[c].astype(str)  # missing values stay missing
        if frame.empty:
            return frame
        return frame[list(required(int(frame["schema_version"].iloc[0])))]


def validate_parsed(
    items: Sequence[tuple[Path, str | None, Parsed]],
    *,
    suites: Mapping[str, SuiteSpec] | None = None,
    scores: KnownScores | Iterable[str] | None = None,
    names: Sequence[str] | None = None,
    across_files: bool = True,
    table: pa.Table | None = None,
    beside: bool = True,
) -> Batch:
    """Validate many parsed files at once: (path, sha256, Parsed) each; `names` are how problems name other files
    (default: the paths). The value checks run once over the rows of all files; every problem names its file.
    With `across_files`, copies of a run in two files are problems of both (cross_file_problems). `table` may
    give the rows of every item, one after the other in item order (TableChunks, or a cache that holds them
    as one table); the items' own tables are then not used, only their row counts. With `beside` (files on disk)
    the scores sidecar and shipped weights beside each file are checked too."""
    if scores is not None and not isinstance(scores, KnownScores):
        scores = KnownScores(scores)
    names = [str(p) for p, _, _ in items] if names is None else list(names)
    checks = [Validation(Path(p), list(parsed.problems), None, [], sha) for p, sha, parsed in items]
    counts = [parsed.rows for _, _, parsed in items]
    owner = np.repeat(np.arange(len(items), dtype=np.int64), counts)
    if table is None:
        tables = [parsed.table for _, _, parsed in items if parsed.table is not None]
        table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    table = encode_text(table)
    if table.num_rows != len(owner):
        raise ValueError(f"the table has {table.num_rows} rows, the items {len(owner)}")
    if not len(owner):
        return Batch(checks, table, owner)
    df = table.to_pandas(split_blocks=True)
    df[FILE_COLUMN] = owner
    rep = _Report(owner, len(items))
    for i, check in enumerate(checks):
        rep.problems[i] = check.problems
    _check_frame(df, rep, suites=suites, scores=scores)
    starts = np.searchsorted(owner, np.arange(len(items) + 1))  # the rows of file i: starts[i]:starts[i + 1]
    named = df["scores_sha256"].str.len().to_numpy(dtype=np.float64, na_value=0.0) > 0
    for i in (
        np.unique(owner[named]).tolist() if beside else []
    ):  # the sidecar of each file that names one and is valid so far
        path, _, parsed = items[i]
        if not checks[i].problems and parsed.version >= 2:
            checks[i].problems += sidecar_problems(Path(path), df.iloc[starts[i] : starts[i + 1]])
    for i in np.unique(owner).tolist() if beside else []:  # shipped tuned weights, where a file has them beside it
        path, _, parsed = items[i]
        if not checks[i].problems and parsed.version >= 2:
            checks[i].problems += weights_problems(Path(path), df.iloc[starts[i] : starts[i + 1]])
    if across_files:
        cross_file_problems(df, names, rep)
    for i, check in enumerate(checks):
        check.notes = rep.notes[i]
    return Batch(checks, table, owner)


def validate_files(
    paths: Sequence[Path],
    *,
    suites: Mapping[str, SuiteSpec] | None = None,
    scores: KnownScores | Iterable[str] | None = None,
    names: Sequence[str] | None = None,
    across_files: bool = True,
) -> Batch:
    """Read and validate many result files at once (see validate_parsed); never raises for a bad file."""
    limit = max_rows_per_file(suites)
    items, chunks = [], TableChunks()
    for path in paths:
        data, problem = read_file(path, max_rows=limit)
        if data is None:
            items.append((Path(path), None, Parsed(-1, None, [problem or "unreadable"])))
        else:
            items.append((Path(path), hashlib.sha256(data).hexdigest(), chunks.add(parse_bytes(data, max_rows=limit))))
    return validate_parsed(
        items, suites=suites, scores=scores, names=names, across_files=across_files, table=chunks.table()
    )


def validate_frame(
    df: pd.DataFrame,
    *,
    suites: Mapping[str, SuiteSpec] | None = None,
    notes: list[str] | None = None,
    scores: KnownScores | Iterable[str] | None = None,
) -> list[str]:
    """Every problem of a results frame, as sentences; [] when it is valid. Notes that are not problems
    (an older suite version) are appended to `notes` when given.

    Checks the columns of the frame's schema version, types, NaNs, ranges, text lengths, JSON fields, empty
    values, config_hash against the config, duplicate keys, that each run_id is one consistent run, the bounds
    and, given `suites` and `scores`, the suite name, version and OOD sets and the score names."""
    table, problems = _arrow_of(df)
    if table is None:
        return problems
    parsed = parse_table(table)
    check = validate_parsed([(Path("<frame>"), None, parsed)], suites=suites, scores=scores, beside=False).checks[0]
    if notes is not None:
        notes += check.notes
    return check.problems


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
        reader = pq.ParquetFile(side)
        present = set(reader.schema_arrow.names)
        datasets = reader.read(columns=["dataset"]).column("dataset").to_pandas() if "dataset" in present else None
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for damaged files
        return [f"{side} is not a readable Parquet file ({type(err).__name__}: {str(err)[:300]})."]
    problems = []
    counts = datasets.value_counts().to_dict() if datasets is not None else {}
    first = rows.iloc[0]
    if counts.get(first["id_dataset"]) != int(first["n_id"]):
        problems.append(f"{side.name} has {counts.get(first['id_dataset'], 0)} ID images, the rows say {first['n_id']}")
    for name, n in rows.groupby("ood_dataset")["n_ood"].first().items():
        if counts.get(name) != int(n):
            problems.append(f"{side.name} has {counts.get(name, 0)} images of {name}, the rows say {n}")
    for score, config in rows[["score", "score_config"]].drop_duplicates().itertuples(index=False):
        if score_column(score, config) not in present:
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


def validate_file(
    path: Path,
    *,
    suites: Mapping[str, SuiteSpec] | None = None,
    scores: KnownScores | Iterable[str] | None = None,
) -> Validation:
    """Read and validate one result file (and its scores sidecar when the rows name one, and its shipped tuned
    weights when they lie beside it); never raises for a bad file (its problems say what is wrong). `rows` holds
    its rows when they could be read, in the columns of its own schema version."""
    batch = validate_files([path], suites=suites, scores=scores)
    check = batch.checks[0]
    if batch.table.num_rows:
        check.rows = batch.file_rows(0)
    return check
