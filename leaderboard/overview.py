"""What a suite page opens with: a ranked summary and the heatmap of changes against zero-shot.

Both read only current entries (the suite's current version and result schema; reported numbers count as
current). The summary keeps, per backbone, protocol group, method and shot count, the entry that is best on
the chosen metric (near or far AUROC), and ranks those within their protocol group only: a test-time entry
or one that used extra data is never ranked against plain zero-shot entries. The heatmap shows, per
backbone and shot count, method x score variant: the change against zero-shot of the chosen metric with its
paired-bootstrap interval; a change whose interval includes 0 is greyed, one that could not be tested (no
per-sample scores) is marked so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from benchmark.stats import Delta
from leaderboard.aggregate import ZERO_SHOT
from leaderboard.significance import Comparison

RANK_METRICS = (("far_auroc", "far AUROC"), ("near_auroc", "near AUROC"))
HEATMAP_METRICS = (("far_auroc", "far AUROC"), ("near_auroc", "near AUROC"), ("id_acc", "ID accuracy"))
PROTOCOL_ORDER = ("zero-shot", "few-shot", "test-time")
MIN_SCALE = 0.02  # a heatmap's colours reach full strength at the largest change shown, but at least 2 points


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def comparison_delta(found: Comparison | str | None, metric: str) -> Delta | None:
    """The tested change of a summary metric (`near_auroc`, `far_auroc`, `id_acc`) from a comparison."""
    if not isinstance(found, Comparison):
        return None
    if metric == "id_acc":
        return found.id_acc
    return found.groups.get(metric.split("_", 1)[0])


def _group_order(group: str) -> tuple:
    base = group.split(" + ")[0]
    return (PROTOCOL_ORDER.index(base) if base in PROTOCOL_ORDER else len(PROTOCOL_ORDER), group)


def default_backbone(entries: pd.DataFrame) -> str:
    """The backbone with the most measured entries (then by name): what the page shows first."""
    if entries.empty:
        return ""
    measured = entries[entries["kind"] == "measured"]
    pool = measured if len(measured) else entries
    counts = pool.groupby("backbone")["entry_id"].nunique()
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def ranked_summary(entries: pd.DataFrame, significance: Mapping[tuple, Comparison | str]) -> dict:
    """Ranked tables per (rank metric, backbone, protocol group) of the best entry per method and shots."""
    tables = []
    metrics = [(m, label) for m, label in RANK_METRICS if m in entries.columns and entries[m].notna().any()]
    for metric, label in metrics:
        pool = entries[entries[metric].notna()]
        # best first; ties: more seeds, then measured before reported, then a stable id
        pool = pool.assign(_reported=pool["kind"] == "reported").sort_values(
            [metric, "n_seeds", "_reported", "entry_id"], ascending=[False, False, True, True], kind="stable"
        )
        best = pool.drop_duplicates(["backbone", "protocol_group", "method", "shots"], keep="first")
        for (backbone, group), g in best.groupby(["backbone", "protocol_group"], sort=True):
            rows = []
            ranks = g[metric].rank(method="min", ascending=False).astype(int)
            for (_, r), rank in zip(g.iterrows(), ranks, strict=True):
                rows.append({**r.to_dict(), "rank": int(rank), "delta": _delta_cell(r, metric, significance)})
            tables.append({"metric": metric, "label": label, "backbone": backbone, "group": group, "rows": rows})
    tables.sort(key=lambda t: (t["metric"], t["backbone"], _group_order(t["group"])))
    groups = sorted({t["group"] for t in tables}, key=_group_order)
    return {
        "tables": tables,
        "metrics": metrics,
        "backbones": sorted({t["backbone"] for t in tables}),
        "default_backbone": default_backbone(entries),
        "protocols": sorted({g.split(" + ")[0] for g in groups}, key=lambda p: _group_order(p)),
    }


def _delta_cell(row: pd.Series, metric: str, significance: Mapping[tuple, Comparison | str]) -> dict | None:
    """The change of `metric` against zero-shot as a cell: tested (with its interval) or only a point."""
    if row["kind"] != "measured" or row["method"] == ZERO_SHOT or _missing(row.get(f"delta_{metric}")):
        return None
    found = significance.get((row["entry_id"], row["score"], row["score_config"]))
    tested = comparison_delta(found, metric)
    if tested is None:
        reason = found if isinstance(found, str) else "no per-sample scores for this entry or its baseline"
        return {"mean": float(row[f"delta_{metric}"]), "tested": False, "reason": reason}
    return {
        "mean": tested.mean,
        "low": tested.low,
        "high": tested.high,
        "significant": tested.significant,
        "tested": True,
        "n_seeds": found.n_seeds,  # type: ignore[union-attr]
    }


def _score_order(entries: pd.DataFrame) -> list[str]:
    """Score labels: each score's default first, its variants after it, scores by name."""
    pairs = entries[["score", "score_label", "score_variant"]].drop_duplicates()
    ordered = pairs.sort_values(["score", "score_variant", "score_label"])
    return list(dict.fromkeys(ordered["score_label"]))


def heatmaps(entries: pd.DataFrame, significance: Mapping[tuple, Comparison | str]) -> dict:
    """One map per (backbone, shot count, metric): rows are methods (with their config when a method has
    several), columns score variants, cells the change against zero-shot."""
    tuned = entries[(entries["kind"] == "measured") & (entries["method"] != ZERO_SHOT)]
    tuned = tuned[tuned["baseline_id"] != ""] if len(tuned) else tuned
    maps = []
    for (backbone, shots), g in tuned.groupby(["backbone", "shots"], sort=True):
        scores = _score_order(g)
        configs = g.groupby("method")["config_hash"].nunique()
        for metric, label in HEATMAP_METRICS:
            cells_by_row: dict[tuple, dict] = {}
            for _, r in g.sort_values(["method", "config_hash"]).iterrows():
                key = (r["method"], r["config_hash"])
                name = f"{r['method']} [{r['config_hash'][:8]}]" if configs[r["method"]] > 1 else r["method"]
                row = cells_by_row.setdefault(
                    key, {"label": name, "method": r["method"], "page": f"entry-{r['entry_id']}.html", "cells": {}}
                )
                cell = _delta_cell(r, metric, significance)
                if cell is not None:
                    row["cells"][r["score_label"]] = {**cell, "page": f"entry-{r['entry_id']}.html"}
            rows = [{**row, "cells": [row["cells"].get(s) for s in scores]} for row in cells_by_row.values()]
            shown = [abs(c["mean"]) for row in rows for c in row["cells"] if c and c.get("significant")]
            scale = max([MIN_SCALE, *shown])
            for row in rows:
                for c in row["cells"]:
                    if c is not None:
                        c["strength"] = min(1.0, abs(c["mean"]) / scale)
            maps.append(
                {
                    "backbone": backbone,
                    "shots": int(shots),
                    "metric": metric,
                    "label": label,
                    "scores": scores,
                    "rows": rows,
                    "n_tested": sum(1 for row in rows for c in row["cells"] if c and c["tested"]),
                    "n_significant": sum(1 for row in rows for c in row["cells"] if c and c.get("significant")),
                }
            )
    shots = sorted({m["shots"] for m in maps})
    return {
        "maps": maps,
        "shots": shots,
        "default_shots": max(shots) if shots else None,
        "metrics": [(m, label) for m, label in HEATMAP_METRICS],
        "backbones": sorted({m["backbone"] for m in maps}),
        "default_backbone": default_backbone(tuned) if len(tuned) else "",
    }
