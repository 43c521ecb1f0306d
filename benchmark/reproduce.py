"""Re-run the run an entry describes and check every metric; write a verification record.

`reproduce_file` reads a result file, rebuilds each run's RunSpec from its provenance (suite,
backbone, method + method_config, shots, seed, scores, precision), runs it with the harness into a
temporary folder, compares every metric row by row within an absolute tolerance (counts exactly),
and writes `<record_dir>/<run_id>.json` atomically. Differences in code or data provenance
(oodbench version, git commit, weights, dataset and few-shot hashes, config hash) are warnings: they
explain a mismatch but do not by themselves fail a reproduction. The leaderboard marks a run
verified only when its record says so and names the sha256 of the very file it checked.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import OodbenchError
from benchmark.hashing import sha256_file
from benchmark.results import COUNT_COLUMNS, METRIC_COLUMNS, RUN_ID_PATTERN, registered_suites, validate_file

RECORD_FORMAT = "oodbench-verification/1"
DEFAULT_TOLERANCE = 0.005  # absolute, on metrics stored in [0, 1]: half a percentage point
DEFAULT_RECORD_DIR = Path("results") / "verifications"
ROW_KEY = ("score", "ood_dataset")
WARN_IF_DIFFERENT = (
    "oodbench_version",
    "git_commit",
    "weights_sha256",
    "fewshot_hash",
    "dataset_hashes",
    "config_hash",
    "id_dataset",
    "ood_group",
)
STATUSES = ("verified", "mismatch")
RECORD_FIELDS = {
    "format": str,
    "run_id": str,
    "status": str,
    "entry_file": str,
    "entry_sha256": str,
    "tolerance": float,
    "max_abs_diff": float,
    "compared": int,
    "mismatches": list,
    "warnings": list,
    "checked_at": str,
    "reproduced": dict,
}


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


def spec_from_rows(
    rows: pd.DataFrame,
    *,
    device: str,
    cache_dir: Path | None,
    data_root: Path | None,
    batch_size: int,
    num_workers: int,
):
    """The RunSpec that reproduces one run (rows of one run_id), built only from its recorded fields."""
    from benchmark.harness import RunSpec

    r = rows.iloc[0]
    precision = str(r["precision"]) if "precision" in rows.columns and isinstance(r["precision"], str) else "fp32"
    return RunSpec(
        suite=str(r["suite"]),
        backbone=str(r["backbone"]),
        method=str(r["method"]),
        method_config=json.loads(r["method_config"]),
        scores=sorted(set(rows["score"])),
        shots=int(r["shots"]),
        seed=int(r["seed"]),
        device=device,
        precision=precision,
        batch_size=batch_size,
        num_workers=num_workers,
        cache_dir=cache_dir,
        data_root=data_root,
        reuse_outputs=False,
    )


def compare_rows(entry: pd.DataFrame, reproduced: pd.DataFrame, *, tolerance: float) -> tuple[list[dict], float, int]:
    """Mismatches (metric beyond `tolerance`, count differing, row missing), the largest metric difference,
    and how many values were compared."""
    mismatches: list[dict[str, Any]] = []
    ours = reproduced.set_index(list(ROW_KEY))
    max_diff, compared = 0.0, 0
    for _, row in entry.iterrows():
        key = tuple(row[c] for c in ROW_KEY)
        if key not in ours.index:
            mismatches.append(
                {
                    "score": key[0],
                    "ood_dataset": key[1],
                    "metric": "(row)",
                    "problem": "the re-run produced no row for this score and OOD set",
                }
            )
            continue
        got = ours.loc[key]
        for m in METRIC_COLUMNS:
            diff = abs(float(row[m]) - float(got[m]))
            compared += 1
            max_diff = max(max_diff, diff)
            if not diff <= tolerance:
                mismatches.append(
                    {
                        "score": key[0],
                        "ood_dataset": key[1],
                        "metric": m,
                        "entry": float(row[m]),
                        "reproduced": float(got[m]),
                        "abs_diff": diff,
                    }
                )
        for c in COUNT_COLUMNS:
            compared += 1
            if int(row[c]) != int(got[c]):
                mismatches.append(
                    {
                        "score": key[0],
                        "ood_dataset": key[1],
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
    tolerance: float = DEFAULT_TOLERANCE,
    record_dir: Path = DEFAULT_RECORD_DIR,
    device: str = "auto",
    cache_dir: Path | None = None,
    data_root: Path | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    progress=None,
) -> list[Reproduction]:
    """Re-run every run in the result file `path`, compare, and write one verification record per run."""
    from benchmark.features import write_json_atomic
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
        spec = spec_from_rows(
            rows,
            device=device,
            cache_dir=cache_dir,
            data_root=data_root,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        with tempfile.TemporaryDirectory(prefix="oodbench-reproduce-") as tmp:
            result = harness.run(spec, out=Path(tmp) / "reproduced.parquet")
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
            "reproduced": {
                "run_id": str(r["run_id"]),
                "oodbench_version": str(r["oodbench_version"]),
                "git_commit": str(r["git_commit"]),
                "device": str(r["device"]),
                "precision": str(r["precision"]),
                "package_versions": json.loads(r["package_versions"]),
            },
        }
        record_path = Path(record_dir) / f"{run_id}.json"
        try:
            write_json_atomic(record_path, record)
        except OSError as err:
            raise OodbenchError(
                f"Cannot write the verification record {record_path}: {err.strerror}. Pass "
                f"--record-dir pointing at a writable folder."
            ) from None
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


def validate_record(record: object) -> list[str]:
    """Problems of one verification record (the JSON `reproduce_file` writes); [] when it is valid."""
    if not isinstance(record, dict):
        return ["a verification record must be a JSON object"]
    problems = []
    for name, kind in RECORD_FIELDS.items():
        value = record.get(name)
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            problems.append(f"field {name!r} must be a {kind.__name__}")
    if problems:
        return problems
    if record["format"] != RECORD_FORMAT:
        problems.append(f"format is {record['format']!r}; this oodbench reads {RECORD_FORMAT!r}")
    if record["status"] not in STATUSES:
        problems.append(f"status must be one of {STATUSES}")
    if not RUN_ID_PATTERN.match(record["run_id"]):
        problems.append("run_id must be 8-64 letters, digits, '-' or '_'")
    if record["status"] == "verified" and record["mismatches"]:
        problems.append("a verified record cannot list mismatches")
    return problems


def read_verifications(folder: Path) -> tuple[dict[str, dict], list[tuple[Path, list[str]]]]:
    """Valid records in `folder` by run_id, and (path, problems) for each invalid one."""
    records: dict[str, dict] = {}
    bad: list[tuple[Path, list[str]]] = []
    for p in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            bad.append((p, [f"not readable JSON ({type(err).__name__}: {err})"]))
            continue
        problems = validate_record(record)
        if not problems and p.stem != record["run_id"]:
            problems = [f"the file is named {p.name} but describes run {record['run_id']}"]
        if problems:
            bad.append((p, problems))
        else:
            records[record["run_id"]] = record
    return records, bad
