"""Reported numbers carry their FPR95 convention and protocol; each FPR95 lands only in its own column."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmark.results import registered_suites
from leaderboard.aggregate import reported_entries
from leaderboard.reported import validate_reported_file

REPO = Path(__file__).parents[1]
HEADER = "suite,backbone,method,score,shots,ood_group,ood_dataset,fpr95,auroc,id_acc,citation,source,fpr95_convention"
ROW = "imagenet1k-far,ViT-B-16:openai,{method},mcm,{shots},far,{ood},{fpr},0.9,,Paper,Table 1,{conv}"


def _write(tmp_path: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "r.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def _row(method="m", shots=0, ood="sun-ood", fpr=0.4, conv="id_positive", extra="") -> str:
    return ROW.format(method=method, shots=shots, ood=ood, fpr=fpr, conv=conv) + extra


def test_the_convention_column_is_required(tmp_path):
    old = HEADER.removesuffix(",fpr95_convention")
    path = _write(tmp_path, ["imagenet1k-far,ViT-B-16:openai,m,mcm,0,far,sun-ood,0.4,0.9,,Paper,Table 1"], old)
    check = validate_reported_file(path)
    assert not check.ok and "missing columns: fpr95_convention" in check.problems[0]


@pytest.mark.parametrize("value", ["openood", "", "ID_POSITIVE"])
def test_an_unknown_convention_is_a_problem(tmp_path, value):
    check = validate_reported_file(_write(tmp_path, [_row(conv=value)]))
    assert not check.ok
    assert any("fpr95_convention" in p for p in check.problems), check.problems


def test_each_fpr95_lands_in_its_own_conventions_column(tmp_path):
    path = _write(
        tmp_path,
        [_row(method="a", fpr=0.25, conv="id_positive"), _row(method="b", fpr=0.35, conv="ood_positive")],
    )
    rows = validate_reported_file(path, suites=registered_suites()).rows.set_index("method")
    assert rows.loc["a", "fpr95"] == 0.25 and math.isnan(rows.loc["a", "fpr95_ood_positive"])
    assert rows.loc["b", "fpr95_ood_positive"] == 0.35 and math.isnan(rows.loc["b", "fpr95"])
    entries = reported_entries(rows.reset_index()).set_index("method")
    assert entries.loc["a", "far_fpr95"] == 0.25 and math.isnan(entries.loc["a", "far_fpr95_ood_positive"])
    assert entries.loc["b", "far_fpr95_ood_positive"] == 0.35 and math.isnan(entries.loc["b", "far_fpr95"])
    assert entries.loc["a", "far_auroc"] == entries.loc["b", "far_auroc"] == 0.9  # AUROC has no convention


def test_one_group_cannot_mix_conventions(tmp_path):
    path = _write(tmp_path, [_row(ood="sun-ood"), _row(ood="places-ood", conv="ood_positive")])
    check = validate_reported_file(path)
    assert any("mix FPR95 conventions" in p for p in check.problems), check.problems


def test_protocol_is_given_or_follows_the_shots(tmp_path):
    header = HEADER + ",protocol,uses"
    path = _write(
        tmp_path,
        [
            _row(method="zs", extra=",,"),
            _row(method="fs", shots=16, extra=",,"),
            _row(method="tta", extra=",test-time,"),
            _row(method="lapt", extra=",zero-shot,extra-data;language-model"),
        ],
        header,
    )
    rows = validate_reported_file(path).rows.set_index("method")
    assert dict(rows["protocol"]) == {"zs": "zero-shot", "fs": "few-shot", "tta": "test-time", "lapt": "zero-shot"}
    assert rows.loc["lapt", "uses_extra_data"] and rows.loc["lapt", "uses_language_model"]
    assert not rows.loc["zs", "uses_extra_data"]
    bad = _write(tmp_path, [_row(extra=",sometimes,"), _row(method="x", extra=",,cloud")], header)
    problems = validate_reported_file(bad).problems
    assert any("protocol must be" in p for p in problems) and any("uses holds flags" in p for p in problems)


def test_the_committed_files_say_their_conventions_and_protocols():
    folder = REPO / "results" / "reported"
    rows = {f.name: validate_reported_file(f, suites=registered_suites()).rows for f in folder.glob("*.csv")}
    assert set(rows["mcm_neurips2022.csv"]["fpr95_convention"]) == {"id_positive"}
    assert rows["mcm_neurips2022.csv"]["fpr95_ood_positive"].isna().all()
    adaneg = rows["adaneg_neurips2024.csv"]
    assert set(adaneg["fpr95_convention"]) == {"ood_positive"} and adaneg["fpr95"].isna().all()
    assert set(adaneg["protocol"]) == {"test-time"}  # never ranked as zero-shot
    lapt = rows["lapt_eccv2024.csv"]
    assert set(lapt["protocol"]) == {"zero-shot"} and lapt["uses_extra_data"].all()
