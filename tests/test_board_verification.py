"""The verified mark in the build (issue 14 items 3, 4, 21): only a reviewer's valid signature over a record of the
published file earns it; malformed records are skipped with a reason; records are keyed by the file's sha256."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.hashing import sha256_file
from benchmark.records import read_verifications, record_name
from benchmark.results import read_results, scores_path, write_results
from benchmark.signing import NAMESPACE, sign_record
from leaderboard.build import build_site
from leaderboard.collect import collect
from tests.records import verification_record, write_verification

REPO = Path(__file__).parents[1]
REVIEWER = "reviewer@example.org"


def _keypair(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


@pytest.fixture
def board(tmp_path, demo_run) -> dict:
    """A results folder with the demo entry, the reviewer's allowed_signers inside it, and keys."""
    root = tmp_path / "results"
    (root / "zero_shot").mkdir(parents=True)
    target = root / "zero_shot" / "demo.parquet"
    shutil.copy(demo_run["file"], target)
    shutil.copy(scores_path(demo_run["file"]), scores_path(target))
    keys = tmp_path / "keys"
    keys.mkdir()
    reviewer, stranger = _keypair(keys, "reviewer"), _keypair(keys, "stranger")
    pub = reviewer.with_suffix(".pub").read_text().strip()
    (root / "allowed_signers").write_text(f'{REVIEWER} namespaces="{NAMESPACE}" {pub}\n')
    return {"root": root, "target": target, "reviewer": reviewer, "stranger": stranger}


def _verdict(board: dict) -> dict:
    inputs = collect(board["root"])
    run_id = read_results(board["target"])["run_id"].iloc[0]
    return inputs.verification[run_id] | {"skipped": {s.path: s.reasons for s in inputs.skipped}}


def _suite_page(site: Path) -> str:
    return next(site.glob("suite-fmnist-ood-*.html")).read_text()


def test_only_a_listed_reviewers_signature_over_the_current_file_earns_the_mark(board, tmp_path):
    path = write_verification(board["root"], verification_record(board["target"]))
    v = _verdict(board)
    assert v["status"] == "unverified" and v["reason"].startswith("unsigned") and v["record"] is None  # self-written
    sign_record(path, key=board["stranger"])
    v = _verdict(board)
    assert v["status"] == "unverified" and "signer not allowed" in v["reason"]
    sign_record(path, key=board["reviewer"])
    v = _verdict(board)
    assert v["status"] == "verified" and v["signer"] == REVIEWER and v["record"]["status"] == "verified"
    build_site(results_dir=board["root"], out=tmp_path / "site")
    assert 'class="badge verified"' in _suite_page(tmp_path / "site")
    # the build takes another allowed-signers file: without the reviewer, the mark is gone
    other = tmp_path / "nobody"
    other.write_text("# no reviewers\n")
    inputs = collect(board["root"], allowed_signers=other)
    assert {v["status"] for v in inputs.verification.values()} == {"unverified"}
    build_site(results_dir=board["root"], out=tmp_path / "site", allowed_signers=other)
    assert 'title="every run reproduced within tolerance">verified' not in _suite_page(tmp_path / "site")


def test_an_edited_record_or_an_edited_file_loses_the_mark(board):
    path = write_verification(board["root"], verification_record(board["target"]))
    sign_record(path, key=board["reviewer"])
    path.write_text(path.read_text().replace('"compared": 192', '"compared": 193'))
    v = _verdict(board)
    assert v["status"] == "unverified" and "bad signature" in v["reason"]
    sign_record(path, key=board["reviewer"])
    rows = read_results(board["target"])
    board["target"].unlink()
    write_results(rows.assign(auroc=rows["auroc"] * 0.99), board["target"])  # the file changed after the check
    v = _verdict(board)
    assert v["status"] == "unverified" and v["reason"].startswith("stale")


def test_a_signed_mismatch_is_shown_an_unsigned_one_is_not(board):
    path = write_verification(board["root"], verification_record(board["target"], status="mismatch"))
    assert _verdict(board)["status"] == "unverified"  # anyone could write it to smear an entry
    sign_record(path, key=board["reviewer"])
    v = _verdict(board)
    assert v["status"] == "mismatch" and REVIEWER in v["reason"]


def test_a_malformed_record_is_skipped_with_its_reason_and_the_build_does_not_crash(board, tmp_path):
    path = write_verification(board["root"], verification_record(board["target"], reproduced={}))
    sign_record(path, key=board["reviewer"])  # even signed: a record the page cannot show is not used
    write_verification(board["root"], {"run_id": "x"} | {"entry_sha256": "0" * 64})
    report = build_site(results_dir=board["root"], out=tmp_path / "site")
    skipped = {s.path: " ".join(s.reasons) for s in report.skipped}
    assert "reproduced.device" in skipped[f"verifications/{path.name}"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert path.name in index and "reproduced.device" in index
    assert _verdict(board)["status"] == "unverified"


def test_a_record_named_by_run_id_only_is_skipped_with_the_name_to_use(board):
    record = verification_record(board["target"])
    folder = board["root"] / "verifications"
    folder.mkdir()
    (folder / f"{record['run_id']}.json").write_text(json.dumps(record))
    v = _verdict(board)
    reason = " ".join(v["skipped"][f"verifications/{record['run_id']}.json"])
    assert record_name(entry_sha256=record["entry_sha256"], run_id=record["run_id"]) in reason


def test_the_committed_records_are_signed_by_a_listed_key_and_verify_their_files():
    """The demo entries' records are signed by the demo reviewer key listed in results/allowed_signers: exactly
    those runs are verified, by that signer, and every other committed run says it has no record."""
    inputs = collect(REPO / "results")
    records, bad = read_verifications(REPO / "results" / "verifications")
    assert len(records) >= 3 and not bad
    for stored in records:
        v = inputs.verification[stored.record["run_id"]]
        assert v["status"] == "verified" and v["signer"] == "demo-reviewer@oodbench.invalid", v
    verified = {r.record["run_id"] for r in records}
    runs = inputs.runs.set_index("run_id")
    assert set(runs.index[runs["verification"] == "verified"]) == verified
    others = runs.drop(index=list(verified))
    assert (others["verification"] == "unverified").all()
    assert (others["verification_reason"] == "no verification record").all()


def test_reproducing_two_files_that_share_a_run_id_writes_two_records(demo_run, tmp_path, monkeypatch):
    from benchmark.config import Execution
    from benchmark.harness import Harness
    from benchmark.reproduce import reproduce_file

    class Same:  # a re-run that reproduces the entry exactly, without the minutes of a real one
        def __init__(self, rows):
            self.rows = rows

    monkeypatch.setattr(Harness, "run", lambda self, key, execution, out: Same(read_results(current["file"])))
    rows = read_results(demo_run["file"]).assign(scores_sha256="")
    first = write_results(rows, tmp_path / "a" / "entry.parquet")
    second = write_results(rows.assign(auroc=rows["auroc"] * 0.98), tmp_path / "b" / "entry.parquet")
    records = tmp_path / "verifications"
    current = {"file": first}
    (one,) = reproduce_file(first, execution=Execution(device="cpu"), record_dir=records)
    current["file"] = second
    (two,) = reproduce_file(second, execution=Execution(device="cpu"), record_dir=records)
    assert one.record_path != two.record_path and one.record_path.exists() and two.record_path.exists()
    assert json.loads(one.record_path.read_text())["entry_sha256"] == sha256_file(first)
    assert json.loads(two.record_path.read_text())["entry_sha256"] == sha256_file(second)
    stored, bad = read_verifications(records)
    assert len(stored) == 2 and not bad
