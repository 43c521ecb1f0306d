"""From result rows to leaderboard entries: per-run means, mean and std over seeds, zero-shot deltas,
protocols, cost, score variants and suite versions.

An entry is one (suite, suite version, result schema version, backbone, method + config, shots): the runs
of its seeds. Its table rows are one per score variant (score with its parameters). Entries of an older
suite version or result schema are kept apart from current ones (`current`), never mixed or ranked with
them. Numbers stay raw fractions here; only templates multiply by 100.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from benchmark.errors import OodbenchError
from benchmark.protocols import FEW_SHOT, PROTOCOLS
from benchmark.protocols import ZERO_SHOT as ZERO_SHOT_PROTOCOL
from benchmark.results import SCHEMA_VERSION
from benchmark.suites import SuiteSpec
from benchmark.summary import group_means
from leaderboard.reported import GROUP_MEAN
from methods.scores import spec_from_row

ENTRY_KEY = ["suite", "suite_version", "schema_version", "backbone", "method", "config_hash", "shots"]
SCORE_KEY = ["score", "score_config"]
GROUPS = ("near", "far")
GROUP_METRICS = ("fpr95", "fpr95_ood_positive", "auroc")
SUMMARY = [f"{g}_{m}" for g in GROUPS for m in GROUP_METRICS] + ["id_acc"]
COST = ("fit_seconds", "predict_seconds", "peak_memory_mb")
FLAGS = (("uses_extra_data", "extra data"), ("uses_language_model", "language model"))
ZERO_SHOT = "zero_shot"  # the method every other one is compared with
BASELINE_KEY = ["suite", "suite_version", "schema_version", "backbone", "score", "score_config", "test_hashes"]
PER_SET = ["fpr95", "fpr95_ood_positive", "auroc", "aupr_in", "aupr_out"]


def entry_id(*parts: object) -> str:
    """A short stable id for an entry page (file name safe whatever the entry's strings are)."""
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()[:16]


def normalise(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of every schema version with the same columns: a version-1 file (before score parameters,
    OOD-positive FPR95, intervals, protocols and cost) gets schema_version 1, an empty score_config, NaN for
    what it did not measure, and the protocol its shots imply (0: zero-shot, otherwise few-shot)."""
    rows = rows.copy()
    n = len(rows)

    def column(name: str, default: object) -> pd.Series:
        return rows[name] if name in rows.columns else pd.Series([default] * n, index=rows.index, dtype=object)

    rows["schema_version"] = pd.to_numeric(column("schema_version", np.nan), errors="coerce").fillna(1).astype(int)
    rows["score_config"] = _text(column("score_config", ""))
    inferred = np.where(rows["shots"].astype(int) > 0, FEW_SHOT, ZERO_SHOT_PROTOCOL)
    protocol = column("protocol", None)
    rows["protocol"] = protocol.where(protocol.isin(PROTOCOLS), pd.Series(inferred, index=rows.index))
    for flag, _ in FLAGS:
        rows[flag] = column(flag, False).fillna(False).astype(bool)
    for c in ("fpr95_ood_positive", *COST):
        rows[c] = pd.to_numeric(column(c, np.nan), errors="coerce").astype(float)
    for c in ("scores_sha256", "dataset_hashes", "device", "source_file"):
        rows[c] = _text(column(c, ""))
    return rows


def _text(s: pd.Series) -> pd.Series:
    """Text with missing values as "": categorical columns (provenance text from many files) stay categorical."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return (s if "" in s.cat.categories else s.cat.add_categories("")).fillna("")
    return s.fillna("").astype(str)


def score_display(score: str, score_config: str) -> tuple[str, bool]:
    """How a score variant is shown, and whether it departs from the score's defaults (`energy:T=0.01`). A
    score this oodbench does not register shows its raw parameters and is not called a variant."""
    try:
        spec = spec_from_row(score, score_config)
    except OodbenchError:
        return (f"{score} {score_config}" if score_config not in ("", "{}") else score), False
    return spec.label, not spec.is_default


def protocol_group(protocol: str, flags: Mapping[str, bool] | None = None) -> str:
    """The ranking group of an entry: its protocol, with what else it drew on (`zero-shot + extra data`).
    Entries are ranked only within their group."""
    extra = [label for flag, label in FLAGS if (flags or {}).get(flag)]
    return " + ".join([protocol, *extra])


def per_run(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, score variant): near/far mean FPR95 (both conventions) and AUROC over the OOD sets,
    and ID accuracy."""
    return group_means(rows, ENTRY_KEY + SCORE_KEY + ["seed", "run_id"])


def test_hashes(dataset_hashes: str, test_sets: Sequence[str]) -> str:
    """The pinned-list hashes of a run's test sets (its ID test set and OOD sets) as canonical JSON: equal for
    two runs exactly when they scored the same test images. A few-shot run also pins its pool, which a
    zero-shot run does not read, so whole `dataset_hashes` differ where the test images do not."""
    try:
        hashes = json.loads(dataset_hashes) if dataset_hashes else {}
    except ValueError:
        hashes = {}
    if not isinstance(hashes, dict):
        hashes = {}
    return json.dumps({name: hashes.get(name, "") for name in sorted(test_sets)}, sort_keys=True)


def _run_info(rows: pd.DataFrame, verification: Mapping[str, Mapping]) -> pd.DataFrame:
    """Per entry: protocol, flags, mean cost, devices, test-image hashes, and each seed's run and sidecar."""
    sets = rows.groupby("run_id", sort=False)["ood_dataset"].agg(lambda s: sorted(set(s)))
    runs = rows.drop_duplicates("run_id").sort_values("seed", kind="stable")
    runs = runs.assign(
        status=[verification.get(r, {}).get("status") for r in runs["run_id"]],
        test_hashes=[
            test_hashes(h, [i, *sets[r]])
            for h, i, r in zip(runs["dataset_hashes"], runs["id_dataset"], runs["run_id"], strict=True)
        ],
    )
    g = runs.groupby(ENTRY_KEY, sort=False)
    info = g.agg(
        protocol=("protocol", "first"),
        uses_extra_data=("uses_extra_data", "any"),
        uses_language_model=("uses_language_model", "any"),
        fit_seconds=("fit_seconds", "mean"),
        predict_seconds=("predict_seconds", "mean"),
        peak_memory_mb=("peak_memory_mb", "max"),
        dataset_hashes=("dataset_hashes", "first"),
        test_hashes=("test_hashes", "first"),
        n_test_hashes=("test_hashes", "nunique"),
        all_seeds=("seed", lambda s: [int(x) for x in s]),
        devices=("device", lambda s: sorted(set(s) - {""})),
        n_verified=("status", lambda s: int((s == "verified").sum())),
        n_failed=("status", lambda s: int((s == "mismatch").sum())),
    )
    return info.reset_index()


def measured_entries(rows: pd.DataFrame, *, verification: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per (entry, score variant) with mean and std (ddof=0, NaN for one seed) over seeds of every
    SUMMARY column, and the entry's protocol, cost and runs."""
    if rows.empty:
        return pd.DataFrame()
    rows = normalise(rows)
    runs = per_run(rows)
    g = runs.groupby(ENTRY_KEY + SCORE_KEY, sort=True)
    table = g[SUMMARY].mean()
    spread = g[SUMMARY].std(ddof=0).add_suffix("_std")
    n_seeds = g.size().rename("n_seeds")
    # the runs of each score variant, in seed order (a variant may be in fewer runs than its entry)
    ordered = runs.sort_values("seed", kind="stable").groupby(ENTRY_KEY + SCORE_KEY, sort=True)
    per_score = ordered.agg(seeds=("seed", lambda s: [int(x) for x in s]), run_ids=("run_id", list))
    table = table.join(spread).join(n_seeds).join(per_score).reset_index()
    table.loc[table["n_seeds"] < 2, [f"{c}_std" for c in SUMMARY]] = np.nan
    by_run = rows.drop_duplicates("run_id").set_index("run_id")
    table["files"] = [[by_run.at[r, "source_file"] for r in ids] for ids in table["run_ids"]]
    table["sidecars"] = [[by_run.at[r, "scores_sha256"] for r in ids] for ids in table["run_ids"]]
    table = table.merge(_run_info(rows, verification), on=ENTRY_KEY, how="left")
    table["kind"] = "measured"
    table["citation"] = ""
    table["fpr95_convention"] = ""
    table["entry_id"] = [entry_id("measured", *k) for k in table[ENTRY_KEY].itertuples(index=False)]
    table["has_scores"] = [all(bool(s) for s in sides) for sides in table["sidecars"]]
    return table


def reported_entries(reported: pd.DataFrame) -> pd.DataFrame:
    """One row per (paper, setting, score); a paper's own group mean wins over the mean of its per-set rows.
    A reported FPR95 fills only the column of its source's convention; the other stays empty."""
    if reported.empty:
        return pd.DataFrame()
    key = ["suite", "backbone", "method", "shots", "score", "citation"]
    out = []
    for k, g in reported.groupby(key, sort=True):
        rec = dict(zip(key, k, strict=True))
        for grp in GROUPS:
            sub = g[g["ood_group"] == grp]
            stated = sub[sub["ood_dataset"] == GROUP_MEAN]
            for m in GROUP_METRICS:
                use = stated if stated[m].notna().any() else sub[sub["ood_dataset"] != GROUP_MEAN]
                values = use[m].dropna()
                rec[f"{grp}_{m}"] = float(values.mean()) if len(values) else np.nan
        rec["id_acc"] = float(g["id_acc"].mean()) if g["id_acc"].notna().any() else np.nan
        for c in SUMMARY:
            rec[f"{c}_std"] = np.nan
        first = g.iloc[0]
        rec.update(
            kind="reported",
            suite_version=np.nan,
            schema_version=np.nan,
            config_hash="",
            score_config="",
            protocol=first["protocol"],
            uses_extra_data=bool(first["uses_extra_data"]),
            uses_language_model=bool(first["uses_language_model"]),
            fpr95_convention=first["fpr95_convention"],
            seeds=[],
            all_seeds=[],
            n_seeds=0,
            run_ids=[],
            sidecars=[],
            files=[],
            devices=[],
            dataset_hashes="",
            test_hashes="",
            n_test_hashes=0,
            n_verified=0,
            n_failed=0,
            has_scores=False,
            entry_id=entry_id("reported", *k),
            **{c: np.nan for c in COST},
        )
        out.append(rec)
    return pd.DataFrame(out)


def add_zero_shot_deltas(entries: pd.DataFrame) -> pd.DataFrame:
    """`delta_<c>` = entry mean - zero-shot mean for every measured entry of another method, against the
    measured zero-shot entry of the same suite, suite version, schema version, backbone, score variant and
    test images (`dataset_hashes`); NaN without one. With several zero-shot configs the one with the most
    seeds (then the smallest config hash) is the baseline, named in `baseline_id`."""
    entries = entries.copy()
    for c in SUMMARY:
        entries[f"delta_{c}"] = np.nan
    entries["baseline_id"] = ""
    if entries.empty or "kind" not in entries.columns:
        return entries
    measured = entries["kind"] == "measured"
    zs = entries[measured & (entries["method"] == ZERO_SHOT)]
    zs = zs.sort_values(["n_seeds", "config_hash"], ascending=[False, True]).drop_duplicates(BASELINE_KEY)
    if zs.empty:
        return entries
    base = zs.set_index(BASELINE_KEY)
    todo = entries.index[measured & (entries["method"] != ZERO_SHOT)]
    keys = pd.MultiIndex.from_frame(entries.loc[todo, BASELINE_KEY])
    found = keys.isin(base.index)
    todo, keys = todo[found], keys[found]
    matched = base.loc[keys]
    for c in SUMMARY:
        entries.loc[todo, f"delta_{c}"] = entries.loc[todo, c].to_numpy() - matched[c].to_numpy()
    entries.loc[todo, "baseline_id"] = matched["entry_id"].to_numpy()
    return entries


def mark_versions(entries: pd.DataFrame, suites: Mapping[str, SuiteSpec]) -> pd.DataFrame:
    """`current`: a reported entry, or a measured one of its suite's current version and this schema version.
    `version` names the (suite version, schema version) of a measured entry, e.g. `suite v1, schema 1`."""
    entries = entries.copy()
    if entries.empty:
        entries["current"], entries["version"] = pd.Series(dtype=bool), pd.Series(dtype=str)
        return entries
    current_suite = entries["suite"].map(lambda s: suites[s].version if s in suites else np.nan)
    measured = entries["kind"] == "measured"
    entries["current"] = ~measured | (
        (entries["suite_version"] == current_suite) & (entries["schema_version"] == SCHEMA_VERSION)
    )
    entries["version"] = [
        f"suite v{int(v)}, result schema {int(s)}" if m else ""
        for m, v, s in zip(measured, entries["suite_version"], entries["schema_version"], strict=True)
    ]
    return entries


def all_entries(
    rows: pd.DataFrame,
    reported: pd.DataFrame,
    *,
    verification: Mapping[str, Mapping],
    suites: Mapping[str, SuiteSpec] | None = None,
) -> pd.DataFrame:
    """Measured and reported entries in one table, with zero-shot deltas, score labels, protocol groups and
    versions (`suites`: the registered suites, default none: every measured entry counts as older)."""
    parts = [p for p in (measured_entries(rows, verification=verification), reported_entries(reported)) if not p.empty]
    if not parts:
        return pd.DataFrame(columns=ENTRY_KEY + SCORE_KEY + ["kind", "entry_id", "current"])
    table = add_zero_shot_deltas(pd.concat(parts, ignore_index=True))
    pairs = list(zip(table["score"], table["score_config"], strict=True))
    known = {p: score_display(*p) for p in set(pairs)}
    shown = [known[p] for p in pairs]
    table["score_label"] = [label for label, _ in shown]
    table["score_variant"] = [variant for _, variant in shown]
    table["protocol_group"] = [
        protocol_group(p, {"uses_extra_data": e, "uses_language_model": lm})
        for p, e, lm in zip(table["protocol"], table["uses_extra_data"], table["uses_language_model"], strict=True)
    ]
    return mark_versions(table, suites or {})


def per_set_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (entry, score variant, OOD set): mean and std over seeds of each PER_SET metric, the mean
    of each interval bound (one seed: its interval), and n_ood. Std is NaN for single-seed entries."""
    rows = normalise(rows)
    keys = ENTRY_KEY + SCORE_KEY + ["ood_group", "ood_dataset"]
    bounds = [c for m in PER_SET for c in (f"{m}_low", f"{m}_high") if c in rows.columns]
    stats = rows.groupby(keys, sort=False)
    table = stats[PER_SET].mean().join(stats[PER_SET].std(ddof=0).add_suffix("_std"))
    if bounds:
        table = table.join(stats[bounds].mean())
    table = table.join(stats["n_ood"].first()).join(stats["seed"].nunique().rename("n_seeds")).reset_index()
    table.loc[table["n_seeds"] < 2, [f"{m}_std" for m in PER_SET]] = np.nan
    return table


def id_acc_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (entry, score variant): ID accuracy mean and std over seeds, and n_id."""
    runs = normalise(rows).drop_duplicates(["run_id", "score", "score_config"])
    stats = runs.groupby(ENTRY_KEY + SCORE_KEY, sort=False)
    table = stats["id_acc"].agg(id_acc="mean", id_acc_std=lambda s: s.std(ddof=0) if len(s) > 1 else np.nan)
    return table.join(stats["n_id"].first()).reset_index()
