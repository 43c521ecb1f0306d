"""Verification records: what `oodbench reproduce` writes after re-running an entry, and what the
leaderboard reads to mark it verified. This module only reads and writes JSON: the site reads records
through it without importing anything that can run a model.

A record names the result file it checked by its sha256 (`entry_sha256`) and is named after it,
`<entry_sha256[:16]>-<run_id>.json`: reproducing a second file that holds the same run_id writes a second
record instead of replacing the first, and a file changed after verification loses its mark. Records are
validated as strictly as result files (every field, its type, bounded sizes): a malformed record is
skipped with its reasons, never shown.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchmark.atomic import write_json_atomic
from benchmark.errors import OodbenchError
from benchmark.results import RUN_ID_PATTERN, SHA256_PATTERN

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
# optional fields: how an encoder-tuning entry's weights were checked ({"mode": "shipped" | "refit" | "none", ...})
OPTIONAL_FIELDS = {"weights": dict}
WEIGHT_MODES = ("shipped", "refit", "none")
# what the re-run was: the entry page shows every one of these
REPRODUCED_FIELDS = {
    "run_id": str,
    "oodbench_version": str,
    "git_commit": str,
    "device": str,
    "precision": str,
    "package_versions": dict,
}
MAX_RECORD_BYTES = 4 * 2**20
MAX_RECORD_TEXT = 2000  # characters of any one string in a record
MAX_RECORD_ITEMS = 100_000  # mismatches or warnings
NAME_PATTERN = re.compile(r"^([0-9a-f]{16})-([A-Za-z0-9_-]{8,64})\.json$")


@dataclass(frozen=True)
class StoredRecord:
    """A valid record as read from its file: the exact bytes (what a reviewer's signature covers) and their JSON."""

    path: Path
    data: bytes
    record: dict


def record_name(*, entry_sha256: str, run_id: str) -> str:
    """The file name of the record of `run_id` in the result file whose sha256 is `entry_sha256`."""
    return f"{entry_sha256[:16]}-{run_id}.json"


def write_record(path: Path, record: dict) -> Path:
    """Write a verification record atomically; a record that could not be written is one clear error."""
    try:
        return write_json_atomic(path, record)
    except OSError as err:
        raise OodbenchError(
            f"Cannot write the verification record {path}: {err.strerror}. Pass --record-dir "
            f"pointing at a writable folder."
        ) from None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fields(obj: dict, spec: dict[str, type], where: str) -> list[str]:
    problems = []
    for name, kind in spec.items():
        value = obj.get(name)
        if kind is float:
            ok = _is_number(value)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            article = "an" if kind.__name__[0] in "aeiou" else "a"
            problems.append(f"field {where + name!r} must be {article} {kind.__name__}")
    return problems


def _long_strings(obj: object, depth: int = 0) -> bool:
    """Does `obj` hold a string longer than MAX_RECORD_TEXT, or nest deeper than 8 levels?"""
    if depth > 8:
        return True
    if isinstance(obj, str):
        return len(obj) > MAX_RECORD_TEXT
    if isinstance(obj, dict):
        return any(_long_strings(k, depth + 1) or _long_strings(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_long_strings(v, depth + 1) for v in obj)
    return False


def validate_record(record: object) -> list[str]:
    """Problems of one verification record (the JSON `reproduce_file` writes); [] when it is valid."""
    if not isinstance(record, dict):
        return ["a verification record must be a JSON object"]
    problems = _fields(record, RECORD_FIELDS, "")
    if isinstance(record.get("reproduced"), dict):
        problems += _fields(record["reproduced"], REPRODUCED_FIELDS, "reproduced.")
    if problems:
        return problems
    problems += _fields(record, {k: t for k, t in OPTIONAL_FIELDS.items() if k in record}, "")
    if isinstance(record.get("weights"), dict) and record["weights"].get("mode") not in WEIGHT_MODES:
        problems.append(f"field 'weights.mode' must be one of {', '.join(WEIGHT_MODES)}")
    unknown = sorted(set(record) - set(RECORD_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        problems.append(f"unknown fields {', '.join(map(repr, unknown[:5]))}")
    if record["format"] != RECORD_FORMAT:
        problems.append(f"format is {record['format'][:80]!r}; this oodbench reads {RECORD_FORMAT!r}")
    if record["status"] not in STATUSES:
        problems.append(f"status must be one of {STATUSES}")
    if not RUN_ID_PATTERN.match(record["run_id"]):
        problems.append("run_id must be 8-64 letters, digits, '-' or '_'")
    if not SHA256_PATTERN.match(record["entry_sha256"]):
        problems.append("entry_sha256 must be a sha256 (64 lowercase hex digits)")
    if not 0 <= record["tolerance"] < 1 or record["max_abs_diff"] < 0 or record["compared"] < 0:
        problems.append("tolerance must be in [0, 1), max_abs_diff and compared at least 0")
    try:
        datetime.fromisoformat(record["checked_at"])
    except ValueError:
        problems.append("checked_at must be an ISO 8601 time")
    if len(record["mismatches"]) > MAX_RECORD_ITEMS or len(record["warnings"]) > MAX_RECORD_ITEMS:
        problems.append(f"a record lists at most {MAX_RECORD_ITEMS} mismatches and warnings")
    if not all(isinstance(m, dict) for m in record["mismatches"]):
        problems.append("every mismatch must be a JSON object")
    if not all(isinstance(w, str) for w in record["warnings"]):
        problems.append("every warning must be a string")
    if _long_strings(record):
        problems.append(f"a record's strings are at most {MAX_RECORD_TEXT} characters, nested at most 8 deep")
    if record["status"] == "verified" and record["mismatches"]:
        problems.append("a verified record cannot list mismatches")
    return problems


def load_record(path: Path) -> tuple[StoredRecord | None, list[str]]:
    """Read and validate one record file (not its name); (record, []) or (None, problems)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None, [f"the record is larger than {MAX_RECORD_BYTES >> 20} MiB"]
        data = path.read_bytes()
        record = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        return None, [f"not readable JSON ({type(err).__name__}: {str(err)[:200]})"]
    problems = validate_record(record)
    return (None, problems) if problems else (StoredRecord(path, data, record), [])


def name_problems(path: Path, record: dict) -> list[str]:
    """Is the record named after what it checked, `<entry_sha256[:16]>-<run_id>.json`?"""
    expected = record_name(entry_sha256=record["entry_sha256"], run_id=record["run_id"])
    if Path(path).name == expected:
        return []
    return [
        f"the file is named {Path(path).name} but checks run {record['run_id']} in the file with sha256 "
        f"{record['entry_sha256'][:16]}...; records are named <entry_sha256[:16]>-<run_id>.json, so rename it "
        f"to {expected}"
    ]


def read_verifications(folder: Path) -> tuple[list[StoredRecord], list[tuple[Path, list[str]]]]:
    """Valid, correctly named records in `folder`, and (path, problems) for each other `*.json` file."""
    records: list[StoredRecord] = []
    bad: list[tuple[Path, list[str]]] = []
    for p in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        stored, problems = load_record(p)
        if stored is not None:
            problems = name_problems(p, stored.record)
        if problems:
            bad.append((p, problems))
        else:
            records.append(stored)
    return records, bad
