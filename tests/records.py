"""Verification records for tests: a well-formed record of a result file, as `oodbench reproduce` writes one,
and writing it under the name the site looks for (`<sha256[:16]>-<run_id>.json` in `<results>/verifications/`)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.hashing import sha256_file
from benchmark.records import RECORD_FORMAT, record_name
from benchmark.results import read_results


def verification_record(target: Path, *, status: str = "verified", sha: str | None = None, **over) -> dict:
    """A valid record of result file `target` (`sha` overrides the file's sha256); `over` replaces fields."""
    return {
        "format": RECORD_FORMAT,
        "run_id": read_results(target)["run_id"].iloc[0],
        "status": status,
        "entry_file": target.name,
        "entry_sha256": sha or sha256_file(target),
        "tolerance": 0.005,
        "max_abs_diff": 0.0 if status == "verified" else 0.2,
        "compared": 192,
        "mismatches": [] if status == "verified" else [{"metric": "auroc", "abs_diff": 0.2}],
        "warnings": [],
        "checked_at": "2026-01-01T00:00:00+00:00",
        "reproduced": {
            "run_id": "0123456789abcdef",
            "oodbench_version": "0.1.0",
            "git_commit": "",
            "device": "cpu",
            "precision": "fp32",
            "package_versions": {"torch": "2"},
        },
        **over,
    }


def write_verification(root: Path, record: dict) -> Path:
    """Write `record` into `root`/verifications under its proper name; returns its path."""
    folder = root / "verifications"
    folder.mkdir(exist_ok=True)
    path = folder / record_name(entry_sha256=record["entry_sha256"], run_id=record["run_id"])
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path
