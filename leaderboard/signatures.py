"""Which runs earn the leaderboard's "verified" mark: a reviewer's valid signature over a record of the file as it is.

Every run on the leaderboard gets a verdict. A run is marked "verified" only when all three hold:

1. its record's `entry_sha256` equals the sha256 of the result file that holds the run now;
2. `<record>.sig` is a valid `oodbench-verification` signature, by a key in the allowed-signers file, over
   the record's exact bytes (benchmark.signing);
3. the record says "verified".

A signed record that says "mismatch" gives the verdict "mismatch" (the reproduction failed, on a reviewer's
word). Everything else is "unverified", with its reason: no record, a record for another version of the file
(stale), no signature, a bad one, a signer who is not listed, no allowed-signers file, no ssh-keygen.
An unsigned record is never shown as a claim, neither "verified" nor "mismatch": anyone can write one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmark.records import StoredRecord, load_record
from benchmark.signing import SignatureCheck, SigningError, signature_path, verify_bytes

VERIFIED, MISMATCH, UNVERIFIED = "verified", "mismatch", "unverified"
NO_RECORD = "no verification record"
CHECK_THREADS = 8  # ssh-keygen runs as a subprocess per record: checked side by side


@dataclass(frozen=True)
class Verdict:
    """What the site says about one run: its status, why, who signed, and the record it rests on (the record
    is given only when its signature is valid)."""

    run_id: str
    status: str  # VERIFIED | MISMATCH | UNVERIFIED
    reason: str
    signer: str = ""
    record_path: Path | None = None
    record: dict | None = None


@dataclass(frozen=True)
class Mark:
    """A run's verified mark: who signed, and the record it rests on."""

    run_id: str
    signer: str
    record_path: Path


def _check(stored: StoredRecord, allowed_signers: Path) -> SignatureCheck:
    try:
        return verify_bytes(stored.data, signature_path(stored.path), allowed_signers=allowed_signers)
    except SigningError as err:
        return SignatureCheck(False, problem=str(err))


def run_verdicts(
    records: Iterable[StoredRecord], *, file_sha256: Mapping[str, str], allowed_signers: Path
) -> tuple[dict[str, Verdict], list[tuple[Path, str]]]:
    """A verdict for every run in `file_sha256` (run_id -> sha256 of the result file holding it now), and
    (record, reason) for every record that earns no mark. Records of runs that are not on the leaderboard are
    listed with that reason. Only records of the current files are signature-checked."""
    verdicts = {run: Verdict(run, UNVERIFIED, NO_RECORD) for run in file_sha256}
    unmarked: list[tuple[int, Path, str]] = []  # (position in `records`, record, reason): reported in input order
    current: list[tuple[int, StoredRecord]] = []
    for k, stored in enumerate(records):
        run_id, sha = stored.record["run_id"], stored.record["entry_sha256"]
        if run_id not in file_sha256:
            unmarked.append((k, stored.path, f"for run {run_id}, which is not on the leaderboard"))
        elif sha != file_sha256[run_id]:
            reason = (
                f"stale: the record checks another version of the file holding run {run_id} (sha256 {sha[:16]}...), "
                f"not the one published"
            )
            unmarked.append((k, stored.path, reason))
            if verdicts[run_id].reason == NO_RECORD:
                verdicts[run_id] = Verdict(run_id, UNVERIFIED, reason, record_path=stored.path)
        else:
            current.append((k, stored))
    if current and not Path(allowed_signers).is_file():
        checks = [
            SignatureCheck(False, problem=f"unsigned: no signature {signature_path(s.path)}")
            if not signature_path(s.path).exists()
            else SignatureCheck(False, problem=f"not marked: no allowed-signers file at {allowed_signers}")
            for _, s in current
        ]
    else:
        with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
            checks = list(pool.map(lambda c: _check(c[1], Path(allowed_signers)), current))
    for (k, stored), check in zip(current, checks, strict=True):
        run_id, status = stored.record["run_id"], stored.record["status"]
        if not check.ok:
            reason = check.problem or "signature not valid"
            unmarked.append((k, stored.path, reason))
            verdicts[run_id] = Verdict(run_id, UNVERIFIED, reason, record_path=stored.path)
        elif status == VERIFIED:
            verdicts[run_id] = Verdict(
                run_id,
                VERIFIED,
                f"reproduced within tolerance, signed by {check.signer}",
                check.signer or "",
                stored.path,
                stored.record,
            )
        else:
            reason = f"signed by {check.signer}; the reproduction reported {status!r}"
            unmarked.append((k, stored.path, reason))
            verdicts[run_id] = Verdict(run_id, MISMATCH, reason, check.signer or "", stored.path, stored.record)
    return verdicts, [(path, reason) for _, path, reason in sorted(unmarked, key=lambda u: u[0])]


def verified_runs(
    record_paths: Iterable[Path], *, file_sha256: Mapping[str, str], allowed_signers: Path
) -> tuple[dict[str, Mark], list[tuple[Path, str]]]:
    """Marks by run_id, and (record, reason) for every record that earns none (see run_verdicts); records that
    are not valid JSON records are listed with their problems."""
    records, unmarked = [], []
    for path in record_paths:
        stored, problems = load_record(Path(path))
        if stored is None:
            unmarked.append((Path(path), f"not a valid record: {'; '.join(problems)}"))
        else:
            records.append(stored)
    verdicts, rest = run_verdicts(records, file_sha256=file_sha256, allowed_signers=allowed_signers)
    marks = {r: Mark(r, v.signer, v.record_path) for r, v in verdicts.items() if v.status == VERIFIED and v.record_path}
    return marks, unmarked + rest
