"""Time a cold run, the same run again (warm: its outputs are cached) and a run that adds a score, each as a fresh
`oodbench run` process on the demo suite, against the Python start-up of that command.

A warm run and a run that only adds a score read the method's cached outputs (benchmark/output_cache.py): no
model is loaded, nothing is encoded or fitted; what is left is loading and checking the datasets' lists,
computing the scores, their metrics and bootstrap intervals, and writing the files. The goal stated in issue 12:
adding a score costs under 2% of a cold run, plus the Python start-up. Start-up is measured as the same process
importing what `oodbench run` imports (torch, open_clip through the harness) and exiting.

    nice -n 10 python benchmarks/warm_runs.py --methods zero_shot,linear_probe,coop --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages, also when run as `python benchmarks/warm_runs.py`
SUITE = "fmnist-ood"
BACKBONE = "oodbench-tiny-fmnist:demo"
TIME = ["/usr/bin/time", "-f", "TIME %e %U %S %M"]  # wall, user and system CPU seconds, peak resident KB


def timed(cmd: list[str]) -> tuple[float, float, str, float]:
    """(wall seconds, peak MiB, stdout, CPU seconds) of one process. On a shared machine CPU seconds (user +
    system) move far less than wall time with the load; both are reported."""
    out = subprocess.run([*TIME, *cmd], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    wall, user, system, kb = re.findall(r"^TIME (\S+) (\S+) (\S+) (\S+)$", out.stderr, flags=re.M)[-1]
    return float(wall), float(kb) / 1024, out.stdout, float(user) + float(system)


def run_cmd(method: str, shots: int, scores: str, cache: Path, results: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmark.cli",
        "run",
        "--suite",
        SUITE,
        "--backbone",
        BACKBONE,
        "--method",
        method,
        "--shots",
        str(shots),
        "--scores",
        scores,
        "--device",
        "cpu",
        "--cache-dir",
        str(cache),
        "--results-dir",
        str(results),
        "--no-progress",
        *extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="zero_shot,linear_probe")
    parser.add_argument("--shots", type=int, default=16, help="for few-shot methods")
    parser.add_argument("--repeats", type=int, default=3, help="warm and add-score runs (medians)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--no-save-scores",
        action="store_true",
        help="runs without the per-sample scores, hence without bootstrap intervals (their largest warm cost)",
    )
    args = parser.parse_args()

    startup = [timed([sys.executable, "-c", "import benchmark.cli, benchmark.harness"]) for _ in range(args.repeats)]
    start_s = statistics.median(t[0] for t in startup)
    start_cpu = statistics.median(t[3] for t in startup)
    print(f"python start-up (import benchmark.cli + benchmark.harness): {start_s:.2f}s wall, {start_cpu:.2f}s CPU")
    report = {"startup_s": start_s, "startup_cpu_s": start_cpu, "load": os.getloadavg(), "methods": {}}
    from methods import METHODS, load_methods
    from methods.base import fits_split

    load_methods()
    extra = ["--no-save-scores"] if args.no_save_scores else []
    for method in args.methods.split(","):
        shots = args.shots if fits_split(METHODS.get(method)) else 0
        with tempfile.TemporaryDirectory() as tmp:
            cache, results = Path(tmp) / "cache", Path(tmp) / "results"
            cold = timed(run_cmd(method, shots, "mcm", cache, results, *extra))
            assert "cache hit" not in cold[2], cold[2]
            warm = [timed(run_cmd(method, shots, "mcm", cache, results, *extra)) for _ in range(args.repeats)]
            assert all("outputs were cached" in w[2] for w in warm), warm[0][2]
            added = [timed(run_cmd(method, shots, "mcm,energy", cache, results, *extra)) for _ in range(args.repeats)]
            assert all("outputs were cached" in a[2] for a in added), added[0][2]
        row = {"shots": shots, "cold_peak_mb": cold[1]}
        for name, runs in (("cold", [cold]), ("warm", warm), ("add_score", added)):
            row[f"{name}_s"] = statistics.median(r[0] for r in runs)
            row[f"{name}_cpu_s"] = statistics.median(r[3] for r in runs)
            row[f"{name}_peak_mb"] = statistics.median(r[1] for r in runs)
        for unit, start in (("s", start_s), ("cpu_s", start_cpu)):
            row[f"goal_{unit}"] = 0.02 * row[f"cold_{unit}"] + start
            row[f"meets_goal_{unit}"] = row[f"add_score_{unit}"] <= row[f"goal_{unit}"]
        report["methods"][method] = row
        for unit, start, what in (("s", start_s, "wall"), ("cpu_s", start_cpu, "CPU")):
            cold_v, add_v = row[f"cold_{unit}"], row[f"add_score_{unit}"]
            print(
                f"{method} (shots {shots}, {what}): cold {cold_v:.1f}s, warm {row[f'warm_{unit}']:.2f}s, add a score "
                f"{add_v:.2f}s = start-up {start:.2f}s + {add_v - start:.2f}s ({(add_v - start) / cold_v:.1%} of the "
                f"cold run); goal {row[f'goal_{unit}']:.2f}s: {'met' if row[f'meets_goal_{unit}'] else 'NOT met'}"
            )
        print(f"  peak memory: cold {row['cold_peak_mb']:.0f} MiB, add a score {row['add_score_peak_mb']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
