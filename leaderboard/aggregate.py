"""From result rows to leaderboard entries: per-run means, mean and std over seeds, zero-shot deltas.

Numbers stay raw fractions here; only templates multiply by 100.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from benchmark.summary import group_means
from leaderboard.reported import GROUP_MEAN

ENTRY_KEY = ["suite", "backbone", "method", "config_hash", "shots"]
SUMMARY = ["near_fpr95", "near_auroc", "far_fpr95", "far_auroc", "id_acc"]
ZERO_SHOT = "zero_shot"


def entry_id(*parts: object) -> str:
    """A short stable id for an entry page (file name safe whatever the entry's strings are)."""
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:16]


def per_run(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, score): near/far mean FPR95 and AUROC over the OOD sets, and ID accuracy."""
    return group_means(rows, ENTRY_KEY + ["score", "seed", "run_id"])


def measured_entries(rows: pd.DataFrame, *, verification: dict[str, dict]) -> pd.DataFrame:
    """One row per (entry, score) with mean and std (ddof=0) over seeds of every SUMMARY column."""
    if rows.empty:
        return pd.DataFrame()
    runs = per_run(rows)
    out = []
    for key, g in runs.groupby(ENTRY_KEY + ["score"], sort=True):
        rec = dict(zip(ENTRY_KEY + ["score"], key, strict=False))
        for c in SUMMARY:
            rec[c] = g[c].mean()
            rec[f"{c}_std"] = g[c].std(ddof=0) if len(g) > 1 else np.nan  # no spread from one seed
        statuses = [verification.get(r, {}).get("status") for r in g["run_id"]]
        rec.update(
            kind="measured",
            citation="",
            seeds=sorted(int(s) for s in g["seed"]),
            n_seeds=len(g),
            run_ids=list(g["run_id"]),
            n_verified=statuses.count("verified"),
            n_failed=statuses.count("mismatch"),
            entry_id=entry_id("measured", *(rec[k] for k in ENTRY_KEY)),
        )
        out.append(rec)
    return pd.DataFrame(out)


def reported_entries(reported: pd.DataFrame) -> pd.DataFrame:
    """One row per (paper, setting, score); a paper's own group mean wins over the mean of its per-set rows."""
    if reported.empty:
        return pd.DataFrame()
    key = ["suite", "backbone", "method", "shots", "score", "citation"]
    out = []
    for k, g in reported.groupby(key, sort=True):
        rec = dict(zip(key, k, strict=False))
        for grp in ("near", "far"):
            sub = g[g["ood_group"] == grp]
            stated = sub[sub["ood_dataset"] == GROUP_MEAN]
            use = stated if len(stated) else sub
            for m in ("fpr95", "auroc"):
                rec[f"{grp}_{m}"] = float(use[m].mean()) if len(use) else np.nan
        rec["id_acc"] = float(g["id_acc"].mean()) if g["id_acc"].notna().any() else np.nan
        for c in SUMMARY:
            rec[f"{c}_std"] = np.nan
        rec.update(
            kind="reported",
            config_hash="",
            seeds=[],
            n_seeds=0,
            run_ids=[],
            n_verified=0,
            n_failed=0,
            entry_id=entry_id("reported", *k),
        )
        out.append(rec)
    return pd.DataFrame(out)


def add_zero_shot_deltas(entries: pd.DataFrame) -> pd.DataFrame:
    """`delta_<c>` = entry mean - zero-shot mean of the same suite, backbone and score, for every measured
    entry of another method; NaN where there is no measured zero-shot entry. With several zero-shot configs
    the one with the most seeds (then the smallest config hash) is the baseline, named in `baseline_id`."""
    entries = entries.copy()
    for c in SUMMARY:
        entries[f"delta_{c}"] = np.nan
    entries["baseline_id"] = ""
    if entries.empty:
        return entries
    zs = entries[(entries["kind"] == "measured") & (entries["method"] == ZERO_SHOT)]
    zs = zs.sort_values(["n_seeds", "config_hash"], ascending=[False, True])
    key = ["suite", "backbone", "score"]
    base = zs.drop_duplicates(subset=key, keep="first").set_index(key)
    for i, row in entries.iterrows():
        key = (row["suite"], row["backbone"], row["score"])
        if row["kind"] != "measured" or row["method"] == ZERO_SHOT or key not in base.index:
            continue
        b = base.loc[key]
        for c in SUMMARY:
            entries.at[i, f"delta_{c}"] = row[c] - b[c]
        entries.at[i, "baseline_id"] = b["entry_id"]
    return entries


def all_entries(rows: pd.DataFrame, reported: pd.DataFrame, *, verification: dict[str, dict]) -> pd.DataFrame:
    """Measured and reported entries in one table, with zero-shot deltas."""
    parts = [p for p in (measured_entries(rows, verification=verification), reported_entries(reported)) if not p.empty]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ENTRY_KEY + ["score", "kind"])
    return add_zero_shot_deltas(table)


PER_SET = ["fpr95", "auroc", "aupr_in", "aupr_out"]


def per_set_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (entry, score, OOD set): mean and std over seeds of each PER_SET metric, and n_ood.
    Std is NaN for single-seed entries."""
    keys = ENTRY_KEY + ["score", "ood_group", "ood_dataset"]
    stats = rows.groupby(keys, sort=False)
    table = stats[PER_SET].mean().join(stats[PER_SET].std(ddof=0).add_suffix("_std"))
    table = table.join(stats["n_ood"].first()).join(stats["seed"].nunique().rename("n_seeds")).reset_index()
    table.loc[table["n_seeds"] < 2, [f"{m}_std" for m in PER_SET]] = np.nan
    return table


def id_acc_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (entry, score): ID accuracy mean and std over seeds, and n_id."""
    runs = rows.drop_duplicates(["run_id", "score"])
    stats = runs.groupby(ENTRY_KEY + ["score"], sort=False)
    table = stats["id_acc"].agg(id_acc="mean", id_acc_std=lambda s: s.std(ddof=0) if len(s) > 1 else np.nan)
    return table.join(stats["n_id"].first()).reset_index()
