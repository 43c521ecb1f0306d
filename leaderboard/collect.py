"""Read everything under a results folder: entry Parquet files, reported numbers, verification records.

Every input is validated; an invalid one is skipped and named with its reasons, never fatal. Nothing
from an entry is imported or executed: Parquet, CSV and JSON are read as data.

Result files are validated together, as one frame (benchmark.results.validate_parsed): the value checks run
once over every row, each problem still names its file, and memory follows the rows, not the files.
Copies are refused, never resolved by order: two runs with the same run key (suite, suite_version,
backbone, method, config_hash, shots, seed), whatever their run_ids, or one run_id in two files, make every
file involved invalid, each naming the others. A link to a file that is read under its own name is read once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmark.errors import OodbenchError
from benchmark.records import read_verifications
from benchmark.results import (
    FILE_COLUMN,
    SCHEMA,
    Parsed,
    TableChunks,
    max_rows_per_file,
    parse_bytes,
    read_file,
    registered_scores,
    registered_suites,
    result_files,
    validate_parsed,
)
from leaderboard.inside import outside_reason
from leaderboard.parsed_cache import ParsedCache
from leaderboard.reported import validate_reported_file
from leaderboard.signatures import run_verdicts

REPORTED_DIR = "reported"
VERIFICATIONS_DIR = "verifications"
ALLOWED_SIGNERS = "allowed_signers"
RUN_COLUMNS = (
    "run_id",
    "suite",
    "source_file",
    "file_sha256",
    "verification",
    "verification_reason",
    "verification_signer",
)


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to the results folder
    reasons: list[str]


@dataclass
class Inputs:
    rows: pd.DataFrame  # every valid measured row, with `source_file` (relative path); every schema's columns
    reported: pd.DataFrame  # every valid reported row
    # run_id -> {"status": verified|mismatch|unverified, "reason", "signer", "record" (a signed record, else
    # None), "record_path" (relative, or "")}, for every run on the leaderboard
    verification: dict[str, dict]
    skipped: list[Skipped] = field(default_factory=list)
    n_files: int = 0
    runs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(RUN_COLUMNS)))  # one row per run
    cache_hits: int = 0  # result files whose parse came from the cache


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _result_inputs(root: Path, skipped: list[Skipped]) -> list[Path]:
    """The result files to read: inside the results folder, each real file once (a link to a file that is
    read under its own name is skipped and named). Paths are handled as strings: pathlib costs seconds at
    10,000 files."""
    real_root = os.path.realpath(root)
    prefix, top = real_root + os.sep, len(str(root)) + 1
    chosen: dict[str, Path] = {}
    links: list[tuple[Path, str]] = []
    for path in result_files(root):
        try:
            real = os.path.realpath(path, strict=True)
        except OSError:
            real = ""  # a loop or a dangling link: outside_reason names it
        if not real.startswith(prefix):
            skipped.append(Skipped(_rel(path, root), [outside_reason(path, root, real_root=Path(real_root)) or ""]))
            continue
        if real != prefix + str(path)[top:]:  # reached through a link (the file's or a folder's)
            links.append((path, real))
        elif real not in chosen:
            chosen[real] = path
    for path, real in links:
        if real in chosen:
            skipped.append(
                Skipped(
                    _rel(path, root), [f"it is a link to {_rel(chosen[real], root)}, which is read under its own name"]
                )
            )
        else:
            chosen[real] = path
    return sorted(chosen.values())


def _parse(paths: list[Path], cache: ParsedCache, limit: int) -> tuple[list[tuple[Path, str | None, Parsed]], pa.Table]:
    """(path, sha256, Parsed) per file, the cache hits first, and the rows of all of them in that order as one
    table: the hits' rows taken from the cache in one piece, the new files' gathered in chunks (TableChunks)."""
    hits, fresh, chunks = [], [], TableChunks()
    for path in paths:
        data, problem = read_file(path, max_rows=limit)
        if data is None:
            fresh.append((path, None, Parsed(-1, None, [problem or "unreadable"])))
            continue
        sha = hashlib.sha256(data).hexdigest()
        parsed = cache.get(sha)
        if parsed is not None:
            (hits if parsed.rows else fresh).append((path, sha, parsed))
        else:
            fresh.append((path, sha, chunks.add(parse_bytes(data, max_rows=limit))))
    parts = [cache.take([sha for _, sha, _ in hits])] if hits else []
    table = pa.concat_tables([*parts, chunks.table()])
    return hits + fresh, table


def _verification(
    root: Path, runs: pd.DataFrame, allowed_signers: Path, skipped: list[Skipped]
) -> tuple[dict[str, dict], pd.DataFrame]:
    """Every run's verdict (leaderboard.signatures), from the records under verifications/."""
    folder = root / VERIFICATIONS_DIR
    records, bad = read_verifications(folder)
    kept = []
    for stored in records:
        if why := outside_reason(stored.path, root):  # a record linked in from elsewhere
            bad.append((stored.path, [why]))
        else:
            kept.append(stored)
    skipped += [Skipped(_rel(p, root), problems) for p, problems in bad]
    shas = dict(zip(runs["run_id"], runs["file_sha256"], strict=True))
    verdicts, unmarked = run_verdicts(kept, file_sha256=shas, allowed_signers=allowed_signers)
    shown = {v.record_path for v in verdicts.values() if v.record is not None}  # signed: verified or mismatch
    skipped += [
        Skipped(_rel(p, root), [f"not used for the verified mark: {reason}"])
        for p, reason in unmarked
        if p not in shown
    ]
    verification = {
        run: {
            "status": v.status,
            "reason": v.reason,
            "signer": v.signer,
            "record": v.record,
            "record_path": _rel(v.record_path, root) if v.record_path else "",
        }
        for run, v in verdicts.items()
    }
    runs = runs.assign(
        verification=[verdicts[r].status for r in runs["run_id"]],
        verification_reason=[verdicts[r].reason for r in runs["run_id"]],
        verification_signer=[verdicts[r].signer for r in runs["run_id"]],
    )
    return verification, runs


def _reported(root: Path, suites: dict, skipped: list[Skipped]) -> pd.DataFrame:
    frames = []
    for path in sorted((root / REPORTED_DIR).glob("*.csv")):
        if why := outside_reason(path, root):
            skipped.append(Skipped(_rel(path, root), [why]))
            continue
        check = validate_reported_file(path, suites=suites)
        if check.ok:
            frames.append(check.rows)
        else:
            skipped.append(Skipped(_rel(path, root), check.problems))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def collect(results_dir: Path, *, allowed_signers: Path | None = None, cache_dir: Path | None = None) -> Inputs:
    """Validate and merge every input under `results_dir`. Verification records are checked against
    `allowed_signers` (default `<results_dir>/allowed_signers`); parsed result files are cached under
    `cache_dir` when given (leaderboard.parsed_cache)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise OodbenchError(
            f"Results folder {root} does not exist; pass --results pointing at the folder that "
            f"holds the entries' Parquet files."
        )
    suites = registered_suites()
    skipped: list[Skipped] = []
    paths = _result_inputs(root, skipped)
    n_files = len(paths) + len(skipped)
    cache = ParsedCache(cache_dir)
    items, table = _parse(paths, cache, max_rows_per_file(suites))
    cache.save([(sha, parsed) for _, sha, parsed in items], table)
    rels = [_rel(p, root) for p, _, _ in items]
    batch = validate_parsed(items, suites=suites, scores=registered_scores(), names=rels, table=table)
    del table, items
    skipped += [Skipped(rels[i], c.problems) for i, c in enumerate(batch.checks) if not c.ok]
    shas = [c.sha256 for c in batch.checks]
    rows = batch.valid_rows()
    del batch
    if len(rows):
        owner = rows.pop(FILE_COLUMN).to_numpy()
        rows["source_file"] = pd.Series(pd.Categorical.from_codes(owner, categories=rels), index=rows.index).astype(str)
        first = np.flatnonzero(~rows["run_id"].duplicated().to_numpy())
        runs = pd.DataFrame(
            {
                "run_id": rows["run_id"].to_numpy()[first],
                "suite": rows["suite"].to_numpy()[first],
                "source_file": [rels[o] for o in owner[first]],
                "file_sha256": [shas[o] for o in owner[first]],
            }
        )
    else:  # no valid file: the schema's columns, no rows
        rows = SCHEMA.empty_table().to_pandas().assign(source_file=pd.Series(dtype=str))
        runs = pd.DataFrame({"run_id": [], "suite": [], "source_file": [], "file_sha256": []})
    reported = _reported(root, suites, skipped)
    signers = Path(allowed_signers) if allowed_signers is not None else root / ALLOWED_SIGNERS
    verification, runs = _verification(root, runs, signers, skipped)
    return Inputs(
        rows=rows,
        reported=reported,
        verification=verification,
        skipped=sorted(skipped, key=lambda s: s.path),
        n_files=n_files,
        runs=runs,
        cache_hits=cache.hits,
    )
