"""The tables of docs/demo-study.md and the README, computed from the committed result files.

Every number comes from `results/<method>/*.parquet` (read and validated like any entry): near and far
metrics are means over the suite's near and far OOD sets of each run, then mean ± std over seeds (the
population std, as the site shows it). Δ is the change against the zero-shot run with the same score
variant, in percentage points; "*" marks a change of near/far AUROC or ID accuracy whose 95% paired-bootstrap
interval (leaderboard.significance, the site's own comparison, seeds pooled) excludes zero. A score only
one method brings (neglabel, adaneg) is compared with zero-shot MCM instead, marked "†", without an interval.

    python scripts/demo_study_tables.py                     # every table, as Markdown
    python scripts/demo_study_tables.py --only readme       # the README's compact table
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.results import read_results, result_files, score_column, scores_path
from benchmark.suites import SUITES
from leaderboard.aggregate import score_display
from leaderboard.significance import Cache, Comparison, Request, Settings, run_requests
from methods import load_methods

ROOT = Path(__file__).resolve().parents[1]
SUITE = "fmnist-ood"
ZERO_SHOT = "zero_shot"
# the order the tables list methods in: the protocols, then families
ORDER = (
    "zero_shot",
    "neglabel",
    "csp",
    "adaneg",
    "coop",
    "cocoop",
    "locoop",
    "negprompt",
    "gallop",
    "clip_adapter",
    "tip_adapter",
    "tip_adapter_f",
    "linear_probe",
    "lp_ft",
    "full_ft",
    "wise_ft",
    "flyp",
    "clip_lora",
)
SCORE_ORDER = ("mcm", "gl_mcm", "msp", "energy", "max_logit", "entropy")


def load(results: Path) -> pd.DataFrame:
    frames = []
    for path in result_files(results):
        rows = read_results(path)
        rows["file"] = str(path)
        frames.append(rows[rows["suite"] == SUITE])
    rows = pd.concat(frames, ignore_index=True)
    for column, missing in (("score_config", "{}"), ("scores_sha256", ""), ("fit_seconds", np.nan)):
        if column not in rows:  # files of result schema 1
            rows[column] = missing
    rows["predict_seconds"] = rows.get("predict_seconds", np.nan)
    rows["score_label"] = [score_display(s, c)[0] for s, c in zip(rows["score"], rows["score_config"], strict=True)]
    return rows


def per_run(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, score variant): near/far means of FPR95 and AUROC, ID accuracy, fit seconds."""
    key = ["method", "config_hash", "score", "score_config", "score_label", "shots", "seed", "run_id"]
    out = []
    for k, g in rows.groupby(key, sort=False):
        near, far = g[g["ood_group"] == "near"], g[g["ood_group"] == "far"]
        out.append(
            dict(
                zip(key, k, strict=True),
                near_fpr=100 * near["fpr95"].mean(),
                near_auroc=100 * near["auroc"].mean(),
                far_fpr=100 * far["fpr95"].mean(),
                far_auroc=100 * far["auroc"].mean(),
                id_acc=100 * g["id_acc"].iloc[0],
                fit_s=g["fit_seconds"].iloc[0],
                predict_s=g["predict_seconds"].iloc[0],
                file=g["file"].iloc[0],
                scores_sha256=g["scores_sha256"].iloc[0],
            )
        )
    return pd.DataFrame(out)


METRICS = ("near_fpr", "near_auroc", "far_fpr", "far_auroc", "id_acc")


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (method, score variant, shots)."""
    g = runs.groupby(["method", "score", "score_config", "score_label", "shots"], sort=False)
    mean = g[list(METRICS) + ["fit_s"]].mean()
    std = g[list(METRICS)].std(ddof=0).add_suffix("_std")
    seeds = g["seed"].nunique().rename("seeds")
    return pd.concat([mean, std, seeds], axis=1).reset_index()


def significance(runs: pd.DataFrame, shots: int) -> dict[tuple[str, str, str], Comparison]:
    """Paired bootstrap of every method at `shots` against zero-shot, per score variant (the site's test)."""
    spec = SUITES.get(SUITE)
    base = runs[runs["method"] == ZERO_SHOT]
    requests = []
    mine = runs[runs["shots"].isin([0, shots]) & (runs["method"] != ZERO_SHOT)]  # zero-shot/test-time methods too
    for (method, score, config), g in mine.groupby(["method", "score", "score_config"]):
        b = base[(base["score"] == score) & (base["score_config"] == config)]
        if b.empty or (g["scores_sha256"] == "").any():
            continue
        g = g.sort_values("seed")
        requests.append(
            Request(
                key=(method, score, config),
                column=score_column(score, config),
                id_dataset=spec.id_test,
                groups=tuple(spec.ood_sets()),
                baseline=(str(scores_path(Path(b["file"].iloc[0]))), b["scores_sha256"].iloc[0]),
                tuned=tuple((str(scores_path(Path(f))), s) for f, s in zip(g["file"], g["scores_sha256"], strict=True)),
            )
        )
    found = run_requests(requests, cache=Cache(None), settings=Settings())
    return {k: v for k, v in found.items() if isinstance(v, Comparison)}


def _order(df: pd.DataFrame) -> pd.DataFrame:
    m = {n: i for i, n in enumerate(ORDER)}
    s = {n: i for i, n in enumerate(SCORE_ORDER)}
    return (
        df.assign(_m=df["method"].map(lambda x: m.get(x, len(m))), _s=df["score"].map(lambda x: s.get(x, len(s))))
        .sort_values(["_m", "_s", "score_label", "shots"])
        .drop(columns=["_m", "_s"])
    )


def _fmt(mean: float, std: float | None, seeds: int) -> str:
    if np.isnan(mean):
        return "-"
    return f"{mean:.1f}" if std is None or seeds < 2 else f"{mean:.1f} ± {std:.1f}"


def _sig(c: Comparison | None, part: str) -> str:
    """'*' when the paired bootstrap's interval of this change excludes zero (AUROC per group, ID accuracy)."""
    if c is None:
        return ""
    d = c.id_acc if part == "id_acc" else c.groups.get(part)
    return "*" if d is not None and d.significant else ""


def table_at(summ: pd.DataFrame, sig: dict, shots: int, *, scores: tuple[str, ...] | None = None) -> str:
    zero = summ[summ["method"] == ZERO_SHOT].set_index(["score", "score_config"])
    rows = _order(summ[(summ["shots"] == shots) | (summ["method"].isin(["zero_shot", "neglabel", "csp", "adaneg"]))])
    if scores is not None:
        rows = rows[rows["score"].isin(scores) | ~rows["score"].isin(SCORE_ORDER)]  # and methods' own scores
    head = (
        "| method | score | near FPR95 ↓ | near AUROC ↑ | far FPR95 ↓ | far AUROC ↑ | ID acc ↑ | Δ near FPR95 | "
        "Δ near AUROC | Δ far FPR95 | Δ far AUROC | Δ ID acc |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for _, r in rows.iterrows():
        cells = [_fmt(r[m], r[f"{m}_std"], r["seeds"]) for m in METRICS]
        deltas = [""] * 5
        key = (r["score"], r["score_config"])
        mcm = zero[zero.index.get_level_values("score") == "mcm"]
        if r["method"] != ZERO_SHOT and key not in zero.index and len(mcm):
            z = mcm.iloc[0]  # a score only this method brings: against zero-shot MCM (no interval)
            deltas = [f"{r[m] - z[m]:+.1f}†" for m in METRICS]
        elif r["method"] != ZERO_SHOT and key in zero.index:
            z = zero.loc[key]
            c = sig.get((r["method"], r["score"], r["score_config"]))
            marks = {"near_auroc": _sig(c, "near"), "far_auroc": _sig(c, "far"), "id_acc": _sig(c, "id_acc")}
            deltas = [f"{r[m] - z[m]:+.1f}{marks.get(m, '')}" for m in METRICS]
        lines.append(f"| {r['method']} | {r['score_label']} | " + " | ".join(cells + deltas) + " |")
    return "\n".join(lines)


def shot_trend(summ: pd.DataFrame, score: str) -> str:
    z = summ[(summ["method"] == ZERO_SHOT) & (summ["score"] == score)]
    zs = f"{z['near_fpr'].iloc[0]:.1f} / {z['far_fpr'].iloc[0]:.1f} / {z['id_acc'].iloc[0]:.1f}" if len(z) else "-"
    out = [
        f"### {score}: near FPR95 / far FPR95 / ID acc by shots (mean over seeds; zero-shot {zs})",
        "",
        "| method | 1 | 2 | 4 | 8 | 16 |",
        "|---|---|---|---|---|---|",
    ]
    few = summ[(summ["shots"] > 0) & (summ["score"] == score)]
    few = few[few["score_config"] == (z["score_config"].iloc[0] if len(z) else few["score_config"])]
    for method in [m for m in ORDER if m in set(few["method"])]:
        g = few[few["method"] == method].set_index("shots")
        cells = [
            f"{g.loc[k, 'near_fpr']:.1f} / {g.loc[k, 'far_fpr']:.1f} / {g.loc[k, 'id_acc']:.1f}"
            if k in g.index
            else "-"
            for k in (1, 2, 4, 8, 16)
        ]
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def cost(runs: pd.DataFrame) -> str:
    g = runs.drop_duplicates("run_id").groupby("method")
    lines = ["| method | runs | fit s (sum) | fit s at 16 shots (mean) | predict s (mean) |", "|---|---|---|---|---|"]
    for method in [m for m in ORDER if m in g.groups]:
        r = g.get_group(method)
        at16 = r[r["shots"] == 16]["fit_s"].mean() if (r["shots"] == 16).any() else np.nan
        lines.append(
            f"| {method} | {len(r)} | {r['fit_s'].sum():.1f} | "
            f"{'-' if np.isnan(at16) else f'{at16:.2f}'} | {r['predict_s'].mean():.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--only", choices=("readme", "study"), default=None)
    args = parser.parse_args()
    load_methods()  # the scores methods register (neglabel, adaneg, ...) are shown by their labels
    rows = load(args.results)
    runs = per_run(rows)
    summ = summary(runs)
    sig = significance(runs, 16)
    if args.only != "study":
        print("## README: 16 shots, MCM and the scores methods bring\n")
        print(table_at(summ, sig, 16, scores=("mcm",)))
        print()
    if args.only != "readme":
        print("## 16 shots against zero-shot, every score\n")
        print(table_at(summ, sig, 16))
        print("\n## Shot trends\n")
        for score in ("mcm", "gl_mcm", "energy"):
            print(shot_trend(summ, score))
            print()
        print("## Cost\n")
        print(cost(runs))


if __name__ == "__main__":
    main()
