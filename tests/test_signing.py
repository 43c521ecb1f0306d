"""Reviewers' signatures over verification records (OpenSSH `ssh-keygen -Y`), and which runs earn the mark."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.records import RECORD_FORMAT
from benchmark.signing import NAMESPACE, SigningError, sign_record, signature_path, verify_record
from leaderboard.signatures import verified_runs

REPO = Path(__file__).parents[1]
REVIEWER = "reviewer@example.org"


def _keypair(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    """A listed reviewer's key, a stranger's key, and the allowed-signers file that lists only the reviewer."""
    folder = tmp_path / "keys"
    folder.mkdir()
    reviewer, stranger = _keypair(folder, "reviewer"), _keypair(folder, "stranger")
    allowed = folder / "allowed_signers"
    pub = reviewer.with_suffix(".pub").read_text().strip()
    allowed.write_text(f'# test reviewers\n{REVIEWER} namespaces="{NAMESPACE}" {pub}\n')
    return {"reviewer": reviewer, "stranger": stranger, "allowed": allowed}


def _record(folder: Path, run_id: str, *, entry_sha256: str = "a" * 64, status: str = "verified") -> Path:
    record = {
        "format": RECORD_FORMAT,
        "run_id": run_id,
        "status": status,
        "entry_file": f"{run_id}.parquet",
        "entry_sha256": entry_sha256,
        "tolerance": 0.005,
        "max_abs_diff": 0.0 if status == "verified" else 0.2,
        "compared": 140,
        "mismatches": [] if status == "verified" else [{"metric": "auroc"}],
        "warnings": [],
        "checked_at": "2026-01-01T00:00:00+00:00",
        "reproduced": {
            "run_id": "0123456789abcdef",
            "oodbench_version": "0.1.0",
            "git_commit": "",
            "device": "cpu",
            "precision": "fp32",
            "package_versions": {},
        },
    }
    path = folder / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def test_ssh_keygen_is_installed():
    assert shutil.which("ssh-keygen"), "install openssh-client (the Makefile's test target needs it)"


def test_a_signed_record_verifies_and_names_its_signer(keys, tmp_path):
    record = _record(tmp_path / "verifications", "run0000001")
    sig = sign_record(record, key=keys["reviewer"])
    assert sig == signature_path(record) == record.with_name(record.name + ".sig")
    assert sig.read_text().startswith("-----BEGIN SSH SIGNATURE-----")
    assert verify_record(record, allowed_signers=keys["allowed"]).ok
    check = verify_record(record, allowed_signers=keys["allowed"], identity=REVIEWER)
    assert check.ok and check.signer == REVIEWER and check.problem is None
    assert sorted(p.name for p in record.parent.iterdir()) == [record.name, sig.name]  # no temporary files left


def test_an_edited_record_fails(keys, tmp_path):
    record = _record(tmp_path / "verifications", "run0000001", status="mismatch")
    sign_record(record, key=keys["reviewer"])
    text = record.read_text().replace('"mismatch"', '"verified"')
    record.write_text(text)
    check = verify_record(record, allowed_signers=keys["allowed"])
    assert not check.ok and check.signer is None and "bad signature" in check.problem


def test_a_stranger_is_not_an_allowed_signer(keys, tmp_path):
    record = _record(tmp_path / "verifications", "run0000001")
    sign_record(record, key=keys["stranger"])
    check = verify_record(record, allowed_signers=keys["allowed"])
    assert not check.ok and "signer not allowed" in check.problem and "not listed" in check.problem
    sign_record(record, key=keys["reviewer"])  # re-signing replaces the signature
    check = verify_record(record, allowed_signers=keys["allowed"], identity="someone.else@example.org")
    assert not check.ok and "signer not allowed" in check.problem and REVIEWER in check.problem


def test_a_signature_for_another_namespace_does_not_count(keys, tmp_path):
    record = _record(tmp_path / "verifications", "run0000001")
    git_sig = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", "git", "-f", str(keys["reviewer"])],
        input=record.read_bytes(),
        capture_output=True,
        check=True,
    ).stdout
    signature_path(record).write_bytes(git_sig)
    check = verify_record(record, allowed_signers=keys["allowed"])
    assert not check.ok and "bad signature" in check.problem


def test_an_unsigned_or_garbled_signature(keys, tmp_path):
    record = _record(tmp_path / "verifications", "run0000001")
    check = verify_record(record, allowed_signers=keys["allowed"])
    assert not check.ok and check.problem.startswith("unsigned")
    signature_path(record).write_text("not a signature\n")
    check = verify_record(record, allowed_signers=keys["allowed"])
    assert not check.ok and "bad signature" in check.problem


def test_clear_errors_for_a_missing_key_allowed_signers_or_ssh_keygen(keys, tmp_path, monkeypatch):
    record = _record(tmp_path / "verifications", "run0000001")
    with pytest.raises(SigningError, match="No SSH key at .*nope"):
        sign_record(record, key=tmp_path / "nope")
    with pytest.raises(SigningError, match="No verification record"):
        sign_record(tmp_path / "missing.json", key=keys["reviewer"])
    sign_record(record, key=keys["reviewer"])
    with pytest.raises(SigningError, match="No allowed-signers file"):
        verify_record(record, allowed_signers=tmp_path / "no_such_file")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SigningError, match="ssh-keygen is not installed.*openssh-client"):
        verify_record(record, allowed_signers=keys["allowed"])
    with pytest.raises(SigningError, match="ssh-keygen is not installed"):
        sign_record(record, key=keys["reviewer"])


def test_the_repository_allowed_signers_file_is_readable_by_ssh_keygen(keys, tmp_path):
    allowed = REPO / "results" / "allowed_signers"
    lines = [ln for ln in allowed.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for line in lines:  # IDENTITY [options] KEYTYPE KEY: every key restricted to oodbench records
        assert f'namespaces="{NAMESPACE}"' in line, line
    record = _record(tmp_path / "verifications", "run0000001")
    sign_record(record, key=keys["stranger"])
    check = verify_record(record, allowed_signers=allowed)  # a key nobody listed
    assert not check.ok and "signer not allowed" in check.problem


def test_verified_runs_needs_signature_status_and_current_file(keys, tmp_path):
    folder = tmp_path / "verifications"
    current = {f"run000000{i}": f"{i}" * 64 for i in range(1, 7)}
    good = _record(folder, "run0000001", entry_sha256=current["run0000001"])
    _record(folder, "run0000002", entry_sha256=current["run0000002"])
    stale = _record(folder, "run0000003", entry_sha256="0" * 64)
    mismatch = _record(folder, "run0000004", entry_sha256=current["run0000004"], status="mismatch")
    forged = _record(folder, "run0000005", entry_sha256=current["run0000005"])
    edited = _record(folder, "run0000006", entry_sha256="0" * 64)
    for path in (good, stale, mismatch, edited):
        sign_record(path, key=keys["reviewer"])
    sign_record(forged, key=keys["stranger"])
    edited.write_text(edited.read_text().replace("0" * 64, current["run0000006"]))  # pointed at the new file
    paths = sorted(folder.glob("*.json"))
    marks, unmarked = verified_runs(paths, file_sha256=current, allowed_signers=keys["allowed"])
    assert set(marks) == {"run0000001"}
    assert marks["run0000001"].signer == REVIEWER and marks["run0000001"].record_path == good
    reasons = {p.stem: r for p, r in unmarked}
    assert reasons["run0000002"].startswith("unsigned")
    assert reasons["run0000003"].startswith("stale")
    assert "'mismatch'" in reasons["run0000004"]
    assert "signer not allowed" in reasons["run0000005"]
    assert "bad signature" in reasons["run0000006"]
    marks, unmarked = verified_runs(paths, file_sha256=current, allowed_signers=tmp_path / "none")
    assert marks == {} and len(unmarked) == len(paths) and "no allowed-signers file" in unmarked[0][1]
