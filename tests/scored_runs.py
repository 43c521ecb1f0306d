"""Fine-tuned runs with per-sample scores, made from the real demo zero-shot run in seconds (no training).

`write_scored_run` moves every OOD score down by `ood_shift` standard deviations of that score (a better
detector when positive), adds seeded noise, and writes a sidecar and rows whose metrics are recomputed from
the new scores by benchmark.metrics, so the file is consistent (only the optional intervals are left empty).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from benchmark.hashing import sha256_file
from benchmark.metrics import ood_metrics
from benchmark.results import (
    INTERVAL_COLUMNS,
    read_results,
    read_scores,
    score_column,
    scores_path,
    write_results,
    write_scores,
)
from methods.base import config_hash

FIXED = ("dataset", "index", "label", "pred")


def write_scored_run(
    base: Path,
    out: Path,
    *,
    method: str,
    shots: int,
    seed: int,
    ood_shift: float = 0.0,
    noise: float = 0.0,
    scores: tuple[str, ...] = ("mcm", "energy", "msp"),
    protocol: str | None = None,
    config: dict | None = None,
) -> Path:
    rows = read_results(base)
    rows = rows[rows["score"].isin(scores)].reset_index(drop=True)
    side = read_scores(scores_path(base))
    rng = np.random.default_rng([seed, shots, len(method)])
    ood = (side["label"] == -1).to_numpy()
    for c in [c for c in side.columns if c not in FIXED]:
        v = side[c].to_numpy(np.float64)
        spread = v.std() or 1.0
        v = v + noise * spread * rng.standard_normal(v.size) - ood_shift * spread * ood
        side[c] = v.astype(np.float32)
    by_set = {name: g.sort_values("index") for name, g in side.groupby("dataset")}
    for i, r in rows.iterrows():
        column = score_column(r["score"], r["score_config"])
        m = ood_metrics(by_set[r["id_dataset"]][column].to_numpy(), by_set[r["ood_dataset"]][column].to_numpy())
        for name in ("fpr95", "fpr95_ood_positive", "auroc", "aupr_in", "aupr_out"):
            rows.loc[i, name] = getattr(m, name)
    for c in INTERVAL_COLUMNS:
        rows[c] = np.nan
    out.parent.mkdir(parents=True, exist_ok=True)
    sidecar = write_scores(side, scores_path(out))
    cfg = json.dumps(config or {"lr": 0.002}, sort_keys=True, separators=(",", ":"))
    rows = rows.assign(
        method=method,
        method_config=cfg,
        config_hash=config_hash(method, cfg),
        shots=shots,
        seed=seed,
        run_id=uuid.uuid4().hex,
        fewshot_hash="f" * 64 if shots else "",
        protocol=protocol or ("few-shot" if shots else "zero-shot"),
        scores_sha256=sha256_file(sidecar),
    )
    return write_results(rows, out)
