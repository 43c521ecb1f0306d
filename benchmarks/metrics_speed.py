"""Speed of `benchmark.metrics.ood_metrics` against scikit-learn and PyTorch-OOD, side by side in one run.

Each contender starts from the same two float64 arrays (ID scores, OOD scores; higher is more ID) and
computes FPR95, AUROC, AUPR-in and AUPR-out:
  oodbench   ood_metrics (also FPR95 with OOD positive): one sort, one check
  sklearn    roc_auc_score, average_precision_score twice, roc_curve for FPR95 (scikit-learn's per-metric calls)
  pytorch    pytorch_ood.metrics.OODMetrics on the negated scores (it shares one sort across its metrics)
  argsort    one np.argsort of the concatenated scores, for reference
Building the label and concatenated score arrays each library needs is part of its time. The contenders run
in a rotating order in every repetition; the report gives the median time and the ratio of medians. The data
come with and without ties (scores rounded to 2 decimals), and our values are checked against scikit-learn's.

It then times `benchmark.stats.bootstrap_intervals` (1,000 resamples, every metric with id_acc): for one run
of the bundled demo (ID 3,000 scores, OOD sets of 2,000, 2,000, 1,797 and 2,000, six scores: 24 rows) and
for 100k scores (50k ID, 50k OOD).

    nice -n 10 python -m benchmarks.metrics_speed                 # from the repository root: 10M scores, 5 repetitions
    python -m benchmarks.metrics_speed --n 1000000 --repeats 3

PyTorch-OOD is in the `bench` extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from pytorch_ood.metrics import OODMetrics as PtoodMetrics
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from benchmark.metrics import RECALL_LEVEL, ood_metrics
from benchmark.stats import bootstrap_intervals


def with_sklearn(id_s: np.ndarray, ood_s: np.ndarray) -> dict[str, float]:
    y = np.r_[np.ones(id_s.size), np.zeros(ood_s.size)]
    s = np.r_[id_s, ood_s]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    # the MCM/LoCoOp rule: up to the first point with TPR 1, the TPR closest to 0.95 (ties to the higher TPR)
    stop = int(np.argmax(tpr >= 1.0))
    fpr, tpr = fpr[1 : stop + 1][::-1], tpr[1 : stop + 1][::-1]
    return {
        "fpr95": float(fpr[np.argmin(np.abs(tpr - RECALL_LEVEL))]),
        "auroc": float(roc_auc_score(y, s)),
        "aupr_in": float(average_precision_score(y, s)),
        "aupr_out": float(average_precision_score(1 - y, -s)),
    }


def with_pytorch_ood(id_s: np.ndarray, ood_s: np.ndarray) -> dict[str, float]:
    scores = torch.from_numpy(-np.r_[id_s, ood_s])  # outlier scores: higher is more OOD
    labels = torch.cat([torch.zeros(id_s.size, dtype=torch.long), torch.full((ood_s.size,), -1)])
    m = PtoodMetrics().update(scores, labels).compute()
    return {
        "fpr95_ood_positive": m["FPR95TPR"],
        "auroc": m["AUROC"],
        "aupr_in": m["AUPR-IN"],
        "aupr_out": m["AUPR-OUT"],
    }


def with_oodbench(id_s: np.ndarray, ood_s: np.ndarray) -> dict[str, float]:
    m = ood_metrics(id_s, ood_s)
    return {k: getattr(m, k) for k in ("fpr95", "fpr95_ood_positive", "auroc", "aupr_in", "aupr_out")}


def argsort_only(id_s: np.ndarray, ood_s: np.ndarray) -> dict[str, float]:
    np.argsort(np.r_[id_s, ood_s])
    return {}


CONTENDERS = {"oodbench": with_oodbench, "sklearn": with_sklearn, "pytorch": with_pytorch_ood, "argsort": argsort_only}


def bench(id_s: np.ndarray, ood_s: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    values: dict[str, dict[str, float]] = {}
    names = list(CONTENDERS)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            values[name] = CONTENDERS[name](id_s, ood_s)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}, values


def bench_metrics(n: int, repeats: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    id_s, ood_s = rng.normal(1.0, 1.0, n // 2), rng.normal(0.0, 1.0, n - n // 2)
    print(f"{n:,} float64 scores, {repeats} repetitions, median seconds; torch threads {torch.get_num_threads()}")
    print(
        f"{'data':<10}{'distinct':>11}{'oodbench':>10}{'sklearn':>9}{'pytorch':>9}{'argsort':>9}{'sk/ours':>9}{'pt/ours':>9}"
    )
    for label, (a, b) in {"no ties": (id_s, ood_s), "ties": (np.round(id_s, 2), np.round(ood_s, 2))}.items():
        med, values = bench(a, b, repeats)
        distinct = np.unique(np.r_[a, b]).size
        ours, sk, pt = values["oodbench"], values["sklearn"], values["pytorch"]
        print(
            f"{label:<10}{distinct:>11,}{med['oodbench']:>10.2f}{med['sklearn']:>9.2f}{med['pytorch']:>9.2f}"
            f"{med['argsort']:>9.2f}{med['sklearn'] / med['oodbench']:>9.2f}{med['pytorch'] / med['oodbench']:>9.2f}"
        )
        print("  |ours - sklearn|: " + ", ".join(f"{k} {abs(ours[k] - v):.1e}" for k, v in sk.items()))
        print("  |ours - pytorch-ood|: " + ", ".join(f"{k} {abs(ours[k] - v):.1e}" for k, v in pt.items()))
        for k, v in sk.items():
            if abs(ours[k] - v) > 1e-12:
                raise SystemExit(f"{k} differs from scikit-learn's: {ours[k]!r} != {v!r}")


def bench_bootstrap(repeats: int, seed: int) -> None:
    rng = np.random.default_rng(seed)

    def rows(n_id: int, n_oods: list[int], n_scores: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        correct = rng.random(n_id) < 0.8
        return [
            (rng.normal(1, 1, n_id).astype(np.float32), rng.normal(0, 1, n).astype(np.float32), correct)
            for _ in range(n_scores)
            for n in n_oods
        ]

    cases = {
        "demo run (24 rows)": rows(3000, [2000, 2000, 1797, 2000], 6),
        "100k scores (1 row)": [(rng.normal(1, 1, 50_000), rng.normal(0, 1, 50_000), rng.random(50_000) < 0.8)],
    }
    print(f"\nbootstrap_intervals, 1,000 resamples, every metric: median of {repeats} (seconds, wall and CPU)")
    for label, work in cases.items():
        wall, cpu = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            for id_s, ood_s, correct in work:
                bootstrap_intervals(id_s, ood_s, id_correct=correct, n_resamples=1000)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        print(f"  {label:<22} wall {statistics.median(wall):6.2f}   cpu {statistics.median(cpu):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="scores in all, half ID and half OOD")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", choices=["all", "metrics", "bootstrap"], default="all")
    args = parser.parse_args()
    if args.part != "bootstrap":
        bench_metrics(args.n, args.repeats, args.seed)
    if args.part != "metrics":
        bench_bootstrap(args.repeats, args.seed)


if __name__ == "__main__":
    main()
