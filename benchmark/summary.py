"""Summaries of result rows that every reader shares (terminal tables, the sweep, the leaderboard).

Numbers stay raw fractions here; formatting belongs to the renderer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OOD_METRICS = ("fpr95", "fpr95_ood_positive", "auroc")


def group_means(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per `by` key: mean FPR95 (both conventions) and AUROC over the near and over the far OOD sets, and ID
    accuracy (NaN for a group a key has no rows of). One vectorised pass: a leaderboard holds thousands of runs."""
    metrics = [m for m in OOD_METRICS if m in rows.columns]
    by_group = rows.groupby(by + ["ood_group"], sort=False)[metrics].mean().unstack("ood_group")
    out = rows.groupby(by, sort=False)[["id_acc"]].mean()
    for grp in ("near", "far"):
        for m in metrics:
            out[f"{grp}_{m}"] = by_group[(m, grp)] if (m, grp) in by_group.columns else np.nan
    return out.reset_index()
