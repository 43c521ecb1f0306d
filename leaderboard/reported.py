"""Numbers published in papers (results/reported/*.csv): read, validate, shown beside measured entries.

One CSV row per (paper, setting, score, OOD set). Metrics are fractions in [0, 1] like every other
oodbench number (a paper's 42.74% is written 0.4274). `ood_dataset` `*` marks the paper's own mean
over the `ood_group`, which must agree with the mean of the per-set rows when both are given.
The format is documented in results/reported/README.md.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from benchmark.results import Validation
from benchmark.suites import OOD_GROUPS, SuiteSpec

TEXT_COLUMNS = ("suite", "backbone", "method", "score", "ood_group", "ood_dataset", "citation", "source")
METRICS = ("fpr95", "auroc")
OPTIONAL_METRICS = ("id_acc",)
COLUMNS = TEXT_COLUMNS + ("shots",) + METRICS + OPTIONAL_METRICS
KEY = ("suite", "backbone", "method", "score", "shots", "citation", "ood_group", "ood_dataset")
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
    if problems:
        return problems
    dup = df.duplicated(subset=list(KEY), keep=False)
    if dup.any():
        problems.append(f"{int(dup.sum())} rows share the same key ({', '.join(KEY)})")
    for key, g in df.groupby([c for c in KEY if c != "ood_dataset"], sort=False):
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
    df = df[list(COLUMNS)].copy()
    df["shots"] = df["shots"].astype("int64")
    for c in METRICS + OPTIONAL_METRICS:
        df[c] = df[c].astype("float64")
    df["reported_file"] = path.name
    return Validation(path, [], df)
