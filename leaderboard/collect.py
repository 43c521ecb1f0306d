"""Read everything under a results folder: entry Parquet files, reported numbers, verification records.

Every input is validated; an invalid one is skipped and named with its reasons, never fatal. Nothing
from an entry is imported or executed: Parquet, CSV and JSON are read as data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.errors import OodbenchError
from benchmark.hashing import sha256_file
from benchmark.records import read_verifications
from benchmark.results import registered_suites, result_files, validate_file
from leaderboard.inside import outside_reason
from leaderboard.reported import validate_reported_file

REPORTED_DIR = "reported"
VERIFICATIONS_DIR = "verifications"


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to the results folder
    reasons: list[str]


@dataclass
class Inputs:
    rows: pd.DataFrame  # every valid measured row, with `source_file` (relative path)
    reported: pd.DataFrame  # every valid reported row
    verification: dict[str, dict]  # run_id -> {"status": verified|mismatch|stale, "record": {...}}
    skipped: list[Skipped] = field(default_factory=list)
    n_files: int = 0


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def collect(results_dir: Path) -> Inputs:
    """Validate and merge every input under `results_dir`."""
    root = Path(results_dir)
    if not root.is_dir():
        raise OodbenchError(
            f"Results folder {root} does not exist; pass --results pointing at the folder that "
            f"holds the entries' Parquet files."
        )
    suites = registered_suites()
    frames: list[pd.DataFrame] = []
    skipped: list[Skipped] = []
    seen: dict[str, str] = {}  # run_id -> file
    shas: dict[str, str] = {}  # file -> sha256
    files = result_files(root)
    for path in files:
        rel = _rel(path, root)
        if why := outside_reason(path, root):
            skipped.append(Skipped(rel, [why]))
            continue
        check = validate_file(path, suites=suites)
        if not check.ok:
            skipped.append(Skipped(rel, check.problems))
            continue
        runs = list(dict.fromkeys(check.rows["run_id"]))
        clash = [f"run {r} is already in {seen[r]}" for r in runs if r in seen]
        if clash:
            skipped.append(Skipped(rel, clash + ["each run belongs in one file; remove the copy"]))
            continue
        seen.update({r: rel for r in runs})
        shas[rel] = sha256_file(path)
        frames.append(check.rows.assign(source_file=rel))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    reported = []
    for path in sorted((root / REPORTED_DIR).glob("*.csv")):
        if why := outside_reason(path, root):
            skipped.append(Skipped(_rel(path, root), [why]))
            continue
        check = validate_reported_file(path, suites=suites)
        if check.ok:
            reported.append(check.rows)
        else:
            skipped.append(Skipped(_rel(path, root), check.problems))

    records, bad = read_verifications(root / VERIFICATIONS_DIR)
    skipped += [Skipped(_rel(p, root), problems) for p, problems in bad]
    for path in sorted((root / VERIFICATIONS_DIR).glob("*.json")):  # a record <run_id>.json linked from elsewhere
        if why := outside_reason(path, root):
            skipped.append(Skipped(_rel(path, root), [why]))
            records.pop(path.stem, None)
    verification = {}
    for run_id, record in records.items():
        if run_id not in seen:
            continue  # a record for a run that is not (or no longer) on the leaderboard
        current = shas[seen[run_id]] == record["entry_sha256"]
        verification[run_id] = {"status": record["status"] if current else "stale", "record": record}
    return Inputs(
        rows=rows,
        reported=pd.concat(reported, ignore_index=True) if reported else pd.DataFrame(),
        verification=verification,
        skipped=skipped,
        n_files=len(files),
    )
