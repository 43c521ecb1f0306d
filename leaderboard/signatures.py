"""Which runs earn the leaderboard's "verified" mark: a reviewer's valid signature over a record of the file as it is.

Not wired into the build yet. A run is marked only when all three hold:

1. `<record>.sig` is a valid `oodbench-verification` signature, by a key in the allowed-signers file, over
   the record's exact bytes (benchmark.signing);
2. those same bytes parse as a valid verification record whose status is "verified";
3. the record's `entry_sha256` equals the sha256 of the result file that holds the run now.

Everything else (no signature, a bad one, a signer not listed, an edited record, a record for an
earlier version of the file, a mismatch) earns no mark and gets a reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmark.records import validate_record
from benchmark.signing import signature_path, verify_bytes


@dataclass(frozen=True)
class Mark:
    """A run's verified mark: who signed, and the record it rests on."""

    run_id: str
    signer: str
    record_path: Path


def verified_runs(
    record_paths: Iterable[Path], *, file_sha256: Mapping[str, str], allowed_signers: Path
) -> tuple[dict[str, Mark], list[tuple[Path, str]]]:
    """Marks by run_id, and (record, reason) for every record that earns none.

    `file_sha256` maps each run on the leaderboard to the sha256 of the result file that holds it now.
    Without an allowed-signers file no run is marked. ssh-keygen missing raises benchmark.signing.SigningError
    (only when there is a record to check).
    """
    marks: dict[str, Mark] = {}
    unmarked: list[tuple[Path, str]] = []
    paths = [Path(p) for p in record_paths]
    if not Path(allowed_signers).is_file():
        return marks, [(p, f"not marked: no allowed-signers file at {allowed_signers}") for p in paths]
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as err:
            unmarked.append((path, f"unreadable: {err.strerror}"))
            continue
        check = verify_bytes(data, signature_path(path), allowed_signers=allowed_signers)
        if not check.ok:
            unmarked.append((path, check.problem or "signature not valid"))
            continue
        try:
            record = json.loads(data)  # the very bytes the signature covers
        except (UnicodeDecodeError, ValueError) as err:
            unmarked.append((path, f"signed, but not readable JSON ({type(err).__name__})"))
            continue
        problems = validate_record(record)
        if problems:
            unmarked.append((path, f"signed, but not a valid record: {'; '.join(problems)}"))
            continue
        run_id = record["run_id"]
        if record["status"] != "verified":
            unmarked.append((path, f"signed by {check.signer}; the reproduction reported {record['status']!r}"))
        elif run_id not in file_sha256:
            unmarked.append((path, f"signed by {check.signer}, for run {run_id}, which is not on the leaderboard"))
        elif record["entry_sha256"] != file_sha256[run_id]:
            unmarked.append(
                (path, f"stale: signed by {check.signer} for another version of the file holding run {run_id}")
            )
        else:
            marks[run_id] = Mark(run_id=run_id, signer=check.signer or "", record_path=path)
    return marks, unmarked
