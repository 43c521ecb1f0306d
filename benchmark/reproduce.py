"""Re-run the run an entry describes and check every metric; write a verification record.

`reproduce_file` reads a result file, rebuilds each run's RunKey from its provenance (suite,
backbone, method + method_config, shots, seed, scores with their parameters) and runs it with the
entry's precision through the same harness stages as `oodbench run`, into a
temporary folder, compares every metric row by row within an absolute tolerance (counts exactly),
and writes `<record_dir>/<sha256 of the file, first 16 hex digits>-<run_id>.json` atomically (a second
file that holds the same run_id gets its own record). Differences in code or data provenance
(oodbench version, git commit, weights, dataset and few-shot hashes, config hash) are warnings: they
explain a mismatch but do not by themselves fail a reproduction. The leaderboard marks a run
verified only when its record says so and names the sha256 of the very file it checked.

An entry of a method that tunes the encoders is refitted by default. With `weights` (a file, or the
`<entry>.weights.safetensors` shipped beside it) the re-run evaluates those weights instead of training:
their sha256 must equal the rows' `tuned_weights_sha256`, and the record says which way it was checked.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.config import DEFAULT_EXECUTION, DEFAULT_RECORD_DIR, DEFAULT_TOLERANCE, Execution, RunKey
from benchmark.errors import OodbenchError
from benchmark.hashing import sha256_file
from benchmark.progress import Progress
from benchmark.records import RECORD_FORMAT, record_name, write_record
from benchmark.results import COUNT_COLUMNS, METRIC_COLUMNS, registered_suites, validate_file, weights_path
from methods.scores import spec_from_row

ROW_KEY = ("score", "score_config", "ood_dataset")
WARN_IF_DIFFERENT = (
    "oodbench_version",
    "git_commit",
    "weights_sha256",
    "fewshot_hash",
    "dataset_hashes",
    "config_hash",
    "id_dataset",
    "ood_group",
    "tuned_weights_sha256",
)


@dataclass
class Reproduction:
    """The outcome for one run of an entry file."""

    run_id: str
    status: str
    tolerance: float
    compared: int
    max_abs_diff: float
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    record_path: Path | None = None

    @property
    def verified(self) -> bool:
        return self.status == "verified"


def run_key_from_rows(rows: pd.DataFrame) -> RunKey:
    """The RunKey that reproduces one run (rows of one run_id), built only from its recorded fields."""
    from methods import load_methods

    load_methods()  # scores that methods register (neglabel, adaneg, ...) are named in the rows too
    first = rows.iloc[0]
    if "score_config" in rows.columns:
        pairs = rows[["score", "score_config"]].drop_duplicates().itertuples(index=False)
        scores = tuple(spec_from_row(name, cfg).label for name, cfg in pairs)
    else:  # a file from before scores had parameters: their defaults
        scores = tuple(dict.fromkeys(rows["score"]))
    return replace(RunKey.from_rows(first), scores=scores)


def execution_for(rows: pd.DataFrame, execution: Execution, *, weights: Path | None = None) -> Execution:
    """How to re-run: the reviewer's machine settings with the entry's precision, never from the output cache,
    writing nothing beside the re-run but its result; `weights` are evaluated instead of fitting."""
    precision = str(rows.iloc[0].get("precision") or DEFAULT_EXECUTION.precision)
    return replace(execution, precision=precision, reuse_outputs=False, save_weights=False, tuned_weights=weights)


def shipped_weights(path: Path, rows: pd.DataFrame, weights: Path | None) -> Path:
    """The weights file to evaluate for entry `path` (`weights`, or the one shipped beside it), checked
    against the rows' tuned_weights_sha256."""
    expected = str(rows.iloc[0].get("tuned_weights_sha256") or "")
    if not expected:
        raise OodbenchError(
            f"{path.name} names no tuned_weights_sha256: its method does not tune the encoders, or it was written "
            f"before weights were recorded. Reproduce it by refitting (drop --weights/--shipped-weights)."
        )
    file = Path(weights) if weights is not None else weights_path(path)
    if not file.is_file():
        raise OodbenchError(
            f"No weights file {file}; an entry ships its tuned weights as {weights_path(path).name} beside it "
            f"(`oodbench run --save-weights`), or pass --weights FILE."
        )
    digest = sha256_file(file)
    if digest != expected:
        raise OodbenchError(
            f"{file.name} has sha256 {digest}, but the entry's tuned_weights_sha256 is {expected}: these are not "
            f"the weights the entry was measured with."
        )
    return file


def compare_rows(entry: pd.DataFrame, reproduced: pd.DataFrame, *, tolerance: float) -> tuple[list[dict], float, int]:
    """Mismatches (metric beyond `tolerance`, count differing, row missing), the largest metric difference,
    and how many values were compared. Rows are matched by score (with its parameters) and OOD set; a file
    from before score parameters existed is matched by score name."""
    key = [c for c in ROW_KEY if c in entry.columns]
    metrics = [m for m in METRIC_COLUMNS if m in entry.columns]
    ours = reproduced.set_index(key)
    mismatches: list[dict[str, Any]] = []
    max_diff, compared = 0.0, 0
    for _, row in entry.iterrows():
        k = tuple(row[c] for c in key)
        where = {"score": row["score"], "score_config": row.get("score_config", ""), "ood_dataset": row["ood_dataset"]}
        if k not in ours.index:
            mismatches.append(
                {**where, "metric": "(row)", "problem": "the re-run produced no row for this score and OOD set"}
            )
            continue
        got = ours.loc[k]
        for m in metrics:
            diff = abs(float(row[m]) - float(got[m]))
            compared += 1
            max_diff = max(max_diff, diff)
            if not diff <= tolerance:
                mismatches.append(
                    {**where, "metric": m, "entry": float(row[m]), "reproduced": float(got[m]), "abs_diff": diff}
                )
        for c in COUNT_COLUMNS:
            compared += 1
            if int(row[c]) != int(got[c]):
                mismatches.append(
                    {
                        **where,
                        "metric": c,
                        "entry": int(row[c]),
                        "reproduced": int(got[c]),
                        "abs_diff": abs(int(row[c]) - int(got[c])),
                    }
                )
    return mismatches, max_diff, compared


def provenance_warnings(entry: pd.DataFrame, reproduced: pd.DataFrame) -> list[str]:
    """Sentences for each provenance field whose value differs between the entry and the re-run."""
    out = []
    e, r = entry.iloc[0], reproduced.iloc[0]
    for c in WARN_IF_DIFFERENT:
        a, b = e.get(c), r.get(c)
        if c == "dataset_hashes":
            a_d, b_d = json.loads(a), json.loads(b)
            changed = sorted(k for k in set(a_d) | set(b_d) if a_d.get(k) != b_d.get(k))
            if changed:
                out.append(
                    f"dataset hashes differ for {', '.join(changed)}: the images are not the ones the entry used"
                )
        elif a != b:
            out.append(f"{c} differs: entry {a!r}, this run {b!r}")
    return out


def reproduce_file(
    path: Path,
    *,
    execution: Execution,
    tolerance: float = DEFAULT_TOLERANCE,
    record_dir: Path = DEFAULT_RECORD_DIR,
    progress: Progress | None = None,
    weights: Path | None = None,
    use_shipped_weights: bool = False,
) -> list[Reproduction]:
    """Re-run every run in the result file `path`, compare, and write one verification record per run. An
    encoder-tuning entry is refitted, unless `weights` is given or `use_shipped_weights` (the file beside the
    entry) is set: then those weights are evaluated, after their sha256 is checked against the entry's."""
    from benchmark.harness import Harness

    if not (0 <= tolerance < 1):
        raise OodbenchError(
            f"--tolerance {tolerance} is not an absolute difference in [0, 1); metrics are "
            f"fractions, so 0.005 means half a percentage point."
        )
    path = Path(path)
    check = validate_file(path, suites=registered_suites())
    if not check.ok:
        raise OodbenchError(
            f"{path} is not a valid result file, so it cannot be reproduced: "
            f"{'; '.join(check.problems)}. `oodbench validate {path}` shows the same report."
        )
    entry_sha = sha256_file(path)
    harness = Harness(progress=progress)
    out: list[Reproduction] = []
    for run_id, rows in check.rows.groupby("run_id", sort=False):
        file = shipped_weights(path, rows, weights) if weights is not None or use_shipped_weights else None
        with tempfile.TemporaryDirectory(prefix="oodbench-reproduce-") as tmp:
            result = harness.run(
                run_key_from_rows(rows),
                execution_for(rows, execution, weights=file),
                out=Path(tmp) / "reproduced.parquet",
            )
        again = result.rows
        mismatches, max_diff, compared = compare_rows(rows, again, tolerance=tolerance)
        status = "mismatch" if mismatches else "verified"
        warnings = provenance_warnings(rows, again)
        r = again.iloc[0]
        record = {
            "format": RECORD_FORMAT,
            "run_id": str(run_id),
            "status": status,
            "entry_file": path.name,
            "entry_sha256": entry_sha,
            "tolerance": float(tolerance),
            "max_abs_diff": float(max_diff),
            "compared": int(compared),
            "mismatches": mismatches,
            "warnings": warnings,
            "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights": (
                {"mode": "shipped", "file": file.name, "sha256": sha256_file(file)}
                if file is not None
                else {"mode": "refit" if str(rows.iloc[0].get("tuned_weights_sha256") or "") else "none"}
            ),
            "reproduced": {
                "run_id": str(r["run_id"]),
                "oodbench_version": str(r["oodbench_version"]),
                "git_commit": str(r["git_commit"]),
                "device": str(r["device"]),
                "precision": str(r["precision"]),
                "package_versions": json.loads(r["package_versions"]),
            },
        }
        name = record_name(entry_sha256=entry_sha, run_id=str(run_id))  # per file: never over another file's record
        record_path = write_record(Path(record_dir) / name, record)
        out.append(
            Reproduction(
                run_id=str(run_id),
                status=status,
                tolerance=tolerance,
                compared=compared,
                max_abs_diff=max_diff,
                mismatches=mismatches,
                warnings=warnings,
                record_path=record_path,
            )
        )
    return out
