"""Numbers published in papers (results/reported/*.csv): read, validate, shown beside measured entries.

One CSV row per (paper, setting, score, OOD set). Metrics are fractions in [0, 1] like every other
oodbench number (a paper's 42.74% is written 0.4274). `ood_dataset` `*` marks the paper's own mean
over the `ood_group`, which must agree with the mean of the per-set rows when both are given.
`fpr95_convention` says which FPR95 the paper's number is (`id_positive`: MCM's, oodbench's `fpr95`;
`ood_positive`: OpenOOD's, oodbench's `fpr95_ood_positive`); the validated rows carry it in that column
only, so it is shown and compared only beside measured numbers of the same convention. `protocol`
(optional) says what the method was allowed to use; without it, 0 shots means zero-shot and more means
few-shot. `uses` (optional) lists flags: `extra-data`, `language-model`.
The format is documented in results/reported/README.md.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from benchmark.protocols import EXTRA_DATA, FEW_SHOT, LANGUAGE_MODEL, PROTOCOLS, USES, ZERO_SHOT
from benchmark.results import Validation
from benchmark.suites import OOD_GROUPS, SuiteSpec

TEXT_COLUMNS = (
    "suite",
    "backbone",
    "method",
    "score",
    "ood_group",
    "ood_dataset",
    "citation",
    "source",
    "fpr95_convention",
)
METRICS = ("fpr95", "auroc")
OPTIONAL_METRICS = ("id_acc",)
OPTIONAL_TEXT = ("protocol", "uses")
COLUMNS = TEXT_COLUMNS + ("shots",) + METRICS + OPTIONAL_METRICS
KEY = ("suite", "backbone", "method", "score", "shots", "citation", "ood_group", "ood_dataset")
CONVENTIONS = {"id_positive": "fpr95", "ood_positive": "fpr95_ood_positive"}  # convention -> oodbench column
GROUP_MEAN = "*"
MEAN_TOLERANCE = 0.0005  # papers round each number to 0.01%; their means of rounded numbers differ a little


def _suite_problems(df: pd.DataFrame, suites: Mapping[str, SuiteSpec]) -> list[str]:
    """Rows for a registered suite must name its OOD sets in their groups (unregistered suites are allowed:
    a paper may use a setting oodbench does not run yet)."""
    problems = []
    for name, g in df.groupby("suite", sort=False):
        if name not in suites:
            continue
        expected = set(suites[name].ood_sets())
        found = {(grp, d) for grp, d in zip(g["ood_group"], g["ood_dataset"], strict=False) if d != GROUP_MEAN}
        unknown = sorted(f"{d} ({grp})" for grp, d in found - expected)
        if unknown:
            problems.append(
                f"suite {name!r} has no OOD set {', '.join(unknown)}; it has "
                f"{', '.join(f'{d} ({grp})' for grp, d in suites[name].ood_sets())}"
            )
    return problems


def _problems(df: pd.DataFrame) -> list[str]:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        return [f"missing columns: {', '.join(missing)} (results/reported/README.md lists the format)"]
    if df.empty:
        return ["the file has no rows"]
    problems = []
    for c in TEXT_COLUMNS:
        if df[c].isna().any() or (df[c].astype(str).str.strip() == "").any():
            problems.append(f"column {c} has empty values")
    shots = pd.to_numeric(df["shots"], errors="coerce")
    if shots.isna().any() or (shots < 0).any() or (shots != shots.round()).any():
        problems.append("column shots must hold whole numbers >= 0")
    for c in METRICS + OPTIONAL_METRICS:
        values = pd.to_numeric(df[c], errors="coerce")
        if (values.isna() & df[c].notna()).any():
            problems.append(f"column {c} has values that are not numbers")
        elif c in METRICS and values.isna().any():
            problems.append(f"column {c} has empty values")
        bad = values.dropna()
        bad = bad[(bad < 0) | (bad > 1)]
        if len(bad):
            problems.append(f"column {c} has values outside [0, 1] (first: {bad.iloc[0]!r}); write 42.74% as 0.4274")
    groups = set(df["ood_group"].dropna()) - set(OOD_GROUPS)
    if groups:
        problems.append(f"ood_group must be 'near' or 'far' (found {sorted(map(str, groups))})")
    conventions = set(df["fpr95_convention"].dropna()) - set(CONVENTIONS)
    if conventions:
        problems.append(
            f"fpr95_convention must be id_positive (ID is the positive class: MCM, NegLabel, CSP, LoCoOp) or "
            f"ood_positive (OOD is the positive class: OpenOOD) (found {sorted(map(str, conventions))[:3]})"
        )
    if "protocol" in df.columns:
        bad = set(df["protocol"].dropna()) - set(PROTOCOLS)
        if bad:
            problems.append(
                f"protocol must be empty or one of {', '.join(PROTOCOLS)} (found {sorted(map(str, bad))[:3]})"
            )
    if "uses" in df.columns:
        flags = {f.strip() for v in df["uses"].dropna() for f in str(v).split(";") if f.strip()}
        if flags - set(USES):
            unknown = sorted(flags - set(USES))[:3]
            problems.append(f"uses holds flags separated by ';', each one of {', '.join(USES)} (found {unknown})")
    if problems:
        return problems
    dup = df.duplicated(subset=list(KEY), keep=False)
    if dup.any():
        problems.append(f"{int(dup.sum())} rows share the same key ({', '.join(KEY)})")
    for key, g in df.groupby([c for c in KEY if c != "ood_dataset"], sort=False):
        if g["fpr95_convention"].nunique() > 1:
            problems.append(
                f"{key[2]} / {key[3]} ({key[6]}): the OOD sets of one group mix FPR95 conventions; a group mean "
                f"needs one convention"
            )
        mean_rows, sets = g[g["ood_dataset"] == GROUP_MEAN], g[g["ood_dataset"] != GROUP_MEAN]
        if len(mean_rows) and len(sets):
            for c in METRICS:
                stated, computed = float(mean_rows[c].iloc[0]), float(sets[c].astype(float).mean())
                if not math.isclose(stated, computed, abs_tol=MEAN_TOLERANCE):
                    problems.append(
                        f"{key[2]} / {key[3]} ({key[6]}): the stated mean {c} {stated} differs from the "
                        f"mean of the per-set rows {computed:.4f}; check for a typo"
                    )
    return problems


def validate_reported_file(path: Path, *, suites: Mapping[str, SuiteSpec] | None = None) -> Validation:
    """Read and validate one reported-numbers CSV; never raises for a bad file."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return Validation(path, [f"{path} is not a readable UTF-8 CSV file ({type(err).__name__}: {err})"])
    if not lines:
        return Validation(path, ["the file is empty; it needs a header line and rows"])
    header, body = lines[0], [row for row in lines[1:] if row]
    ragged = [i + 2 for i, row in enumerate(lines[1:]) if row and len(row) != len(header)]
    if ragged:
        lines_text = ", ".join(map(str, ragged[:5]))
        return Validation(
            path,
            [(f"line(s) {lines_text} do not have the header's {len(header)} fields; quote fields that contain commas")],
        )
    df = pd.DataFrame(body, columns=header).replace({"": None})
    problems = _problems(df)
    if not problems and suites is not None:
        problems = _suite_problems(df, suites)
    if problems:
        return Validation(path, problems, None)
    return Validation(path, [], as_rows(df, file=path.name))


def as_rows(df: pd.DataFrame, *, file: str) -> pd.DataFrame:
    """Validated CSV rows as the leaderboard reads them: typed, the FPR95 in its convention's column
    (`fpr95` or `fpr95_ood_positive`, the other NaN), the protocol filled in and the flags as booleans."""
    out = df[list(COLUMNS)].copy()
    out["shots"] = out["shots"].astype("int64")
    for c in METRICS + OPTIONAL_METRICS:
        out[c] = out[c].astype("float64")
    stated = out["fpr95"].copy()
    for convention, column in CONVENTIONS.items():
        out[column] = stated.where(out["fpr95_convention"] == convention)
    inferred = out["shots"].map(lambda k: FEW_SHOT if k > 0 else ZERO_SHOT)
    given = df["protocol"] if "protocol" in df.columns else pd.Series(None, index=df.index, dtype=object)
    out["protocol"] = given.where(given.notna(), inferred)
    flags = df["uses"] if "uses" in df.columns else pd.Series(None, index=df.index, dtype=object)
    sets = flags.map(lambda v: {f.strip() for f in str(v).split(";")} if isinstance(v, str) else set())
    out["uses_extra_data"] = sets.map(lambda f: EXTRA_DATA in f).astype(bool)
    out["uses_language_model"] = sets.map(lambda f: LANGUAGE_MODEL in f).astype(bool)
    out["reported_file"] = file
    return out
