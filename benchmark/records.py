"""Verification records: what `oodbench reproduce` writes after re-running an entry, and what the
leaderboard reads to mark it verified. This module only reads and writes JSON: the site reads records
through it without importing anything that can run a model.

A record names the result file it checked by its sha256 (`entry_sha256`), so a file changed after
verification loses its mark.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.atomic import write_json_atomic
from benchmark.errors import OodbenchError
from benchmark.results import RUN_ID_PATTERN

RECORD_FORMAT = "oodbench-verification/1"
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


def write_record(path: Path, record: dict) -> Path:
    """Write a verification record atomically; a record that could not be written is one clear error."""
    try:
        return write_json_atomic(path, record)
    except OSError as err:
        raise OodbenchError(
            f"Cannot write the verification record {path}: {err.strerror}. Pass --record-dir "
            f"pointing at a writable folder."
        ) from None


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
