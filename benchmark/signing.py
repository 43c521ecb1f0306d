"""Reviewers' signatures over verification records, made and checked with OpenSSH's `ssh-keygen -Y`.

A verification record (written by `oodbench reproduce`) names the sha256 of the result file it
checked. Anyone can write such a JSON file, so the leaderboard trusts a record only when a reviewer
signed its exact bytes with a key listed in the repository's `results/allowed_signers`:

    ssh-keygen -Y sign -n oodbench-verification -f KEY RECORD          -> RECORD.sig
    ssh-keygen -Y verify -f allowed_signers -I IDENTITY -n oodbench-verification -s RECORD.sig < RECORD

The namespace `oodbench-verification` keeps a signature made for anything else (a git commit, a
file) from counting here. The signer's identity is looked up from the signature with
`ssh-keygen -Y find-principals`. docs/signing.md is the reviewer's how-to.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import OodbenchError

NAMESPACE = "oodbench-verification"
SIG_SUFFIX = ".sig"
ALLOWED_SIGNERS = Path("results") / "allowed_signers"  # in the repository; changed only by reviewed PRs
VERIFY_TIMEOUT_S = 60


class SigningError(OodbenchError):
    """Signing or checking cannot be done at all: ssh-keygen, the key or the allowed-signers file is missing."""


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking one record's signature: ok with the signer's identity, or the problem."""

    ok: bool
    signer: str | None = None
    problem: str | None = None


def signature_path(record_path: Path) -> Path:
    """Where a record's signature lives: beside it, `<record>.sig`."""
    record_path = Path(record_path)
    return record_path.with_name(record_path.name + SIG_SUFFIX)


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise SigningError(
            "ssh-keygen is not installed, so verification records can be neither signed nor checked. Install "
            "OpenSSH's client (Debian/Ubuntu: `apt-get install openssh-client`; macOS ships it)."
        )
    return exe


def _run(args: list[str], *, data: bytes | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [_ssh_keygen(), *args],
            input=data,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SigningError(f"ssh-keygen {' '.join(args[:2])} did not finish within {timeout}s.") from None


def _stderr(proc: subprocess.CompletedProcess) -> str:
    return " ".join(proc.stderr.decode("utf-8", "replace").split()) or f"exit status {proc.returncode}"


def sign_record(record_path: Path, *, key: Path) -> Path:
    """Sign the record's bytes with the reviewer's SSH key; writes `<record>.sig` atomically and returns its path.

    `key` is the private key file (or, with the key loaded in ssh-agent, its `.pub`). A passphrase is asked
    on the terminal by ssh-keygen itself.
    """
    record_path, key = Path(record_path), Path(key).expanduser()
    if not record_path.is_file():
        raise SigningError(f"No verification record at {record_path}; `oodbench reproduce FILE` writes one.")
    if not key.is_file():
        raise SigningError(
            f"No SSH key at {key}. Pass the private key you listed in {ALLOWED_SIGNERS} (docs/signing.md shows "
            f"how to make one: `ssh-keygen -t ed25519 -f ~/.ssh/oodbench_reviewer`)."
        )
    exe = _ssh_keygen()
    data = record_path.read_bytes()
    out = signature_path(record_path)
    # Sign a private copy of exactly the bytes read, inside the record's folder so the rename is atomic.
    with tempfile.TemporaryDirectory(dir=record_path.parent, prefix=".oodbench-sign-") as tmp:
        copy = Path(tmp) / record_path.name
        copy.write_bytes(data)
        proc = subprocess.run(
            [exe, "-Y", "sign", "-n", NAMESPACE, "-f", str(key), str(copy)],
            capture_output=True,
            check=False,
        )
        made = signature_path(copy)
        if proc.returncode != 0 or not made.is_file():
            raise SigningError(f"ssh-keygen could not sign {record_path} with {key}: {_stderr(proc)}")
        os.replace(made, out)
    return out


def _principals(signature: Path, allowed_signers: Path) -> list[str]:
    proc = _run(["-Y", "find-principals", "-s", str(signature), "-f", str(allowed_signers)], timeout=VERIFY_TIMEOUT_S)
    if proc.returncode != 0:
        return []
    return [line.strip() for line in proc.stdout.decode("utf-8", "replace").splitlines() if line.strip()]


def verify_bytes(data: bytes, signature: Path, *, allowed_signers: Path, identity: str | None = None) -> SignatureCheck:
    """Is `signature` a valid `oodbench-verification` signature over `data` by a key in `allowed_signers`
    (by `identity`, when given)? Bad signatures and signers that are not allowed are told apart."""
    allowed_signers = Path(allowed_signers)
    if not allowed_signers.is_file():
        raise SigningError(
            f"No allowed-signers file at {allowed_signers}; the repository keeps it at {ALLOWED_SIGNERS} "
            f"(docs/signing.md)."
        )
    if not Path(signature).is_file():
        return SignatureCheck(False, problem=f"unsigned: no signature {signature}")
    proc = _run(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(signature)], data=data, timeout=VERIFY_TIMEOUT_S)
    if proc.returncode != 0:
        return SignatureCheck(
            False,
            problem=f"bad signature {signature}: it is not an SSH signature over this record's bytes in namespace "
            f"{NAMESPACE!r} ({_stderr(proc)})",
        )
    principals = _principals(signature, allowed_signers)
    if not principals:
        return SignatureCheck(
            False, problem=f"signer not allowed: the key that made {signature} is not listed in {allowed_signers}"
        )
    if identity is not None and identity not in principals:
        return SignatureCheck(
            False,
            problem=f"signer not allowed: {signature} was made by {', '.join(principals)}, not {identity}",
        )
    problems = []
    for who in [identity] if identity is not None else principals:
        proc = _run(
            ["-Y", "verify", "-f", str(allowed_signers), "-I", who, "-n", NAMESPACE, "-s", str(signature)],
            data=data,
            timeout=VERIFY_TIMEOUT_S,
        )
        if proc.returncode == 0:
            return SignatureCheck(True, signer=who)
        problems.append(f"{who}: {_stderr(proc)}")
    return SignatureCheck(
        False,
        problem=f"signer not allowed for {NAMESPACE!r} signatures at this time (see the key's options in "
        f"{allowed_signers}): {'; '.join(problems)}",
    )


def verify_record(record_path: Path, *, allowed_signers: Path, identity: str | None = None) -> SignatureCheck:
    """Check `<record>.sig` over the record's bytes; the signer must be listed in `allowed_signers` (for
    `identity`, when given). Missing ssh-keygen or allowed-signers file raise SigningError; every problem of
    the record or its signature comes back in the SignatureCheck."""
    record_path = Path(record_path)
    try:
        data = record_path.read_bytes()
    except OSError as err:
        return SignatureCheck(False, problem=f"cannot read the record {record_path}: {err.strerror}")
    return verify_bytes(data, signature_path(record_path), allowed_signers=allowed_signers, identity=identity)
