"""Wall time, peak memory and heavy imports (torch, open_clip) of the commands that only describe things.

Each command runs as a fresh process under /usr/bin/time, in a checkout of oodbench (this one, or another
given with --checkout, e.g. an older commit unpacked with `git archive`), `--repeats` times; medians are
reported. `show`, `validate` and `leaderboard build` read the result folder given with --results.

    nice -n 10 python benchmarks/cheap_commands.py --repeats 3
    nice -n 10 python benchmarks/cheap_commands.py --checkout /tmp/oodbench-before --results results
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import atexit, os, sys\n"
    "sys.path.insert(0, os.getcwd())\n"
    "atexit.register(lambda: sys.stderr.write('\\nHEAVY ' + ' '.join("
    "m for m in ('torch', 'open_clip') if m in sys.modules) + '\\n'))\n"
    "sys.argv = ['oodbench', *sys.argv[1:]]\n"
    "from benchmark.cli import main\n"
    "main()\n"
)


def measure(checkout: Path, args: list[str]) -> tuple[float, float, str, float]:
    """(wall seconds, peak MiB, heavy modules, CPU seconds) of `oodbench ARGS` run in `checkout`."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %M %U %S", sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=checkout,
    )
    times = re.findall(r"^TIME (\S+) (\S+) (\S+) (\S+)$", out.stderr, flags=re.M)
    heavy = re.findall(r"^HEAVY ?(.*)$", out.stderr, flags=re.M)
    if out.returncode != 0 or not times:
        raise SystemExit(
            f"`oodbench {' '.join(args)}` failed in {checkout}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        )
    wall, kb, user, system = map(float, times[-1])
    return wall, kb / 1024, (heavy[-1] if heavy else "?") or "-", user + system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the oodbench source tree to time")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="result folder for show/validate/build")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = args.results.absolute()
    entry = next(p for p in sorted(results.rglob("*.parquet")) if not p.name.endswith(".scores.parquet"))
    with tempfile.TemporaryDirectory() as site:
        commands = [
            ["--help"],
            ["list", "suites"],
            ["list", "datasets"],
            ["list", "scores"],
            ["list", "methods"],
            ["list", "backbones"],
            ["show", str(entry)],
            ["validate", str(results)],
            ["leaderboard", "build", "--results", str(results), "--out", str(Path(site) / "site")],
        ]
        print(f"checkout {args.checkout.absolute()}; median of {args.repeats}")
        print(f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'command':<22} {'wall s':>7} {'CPU s':>6} {'peak MiB':>9}  heavy imports")
        for cmd in commands:
            runs = [measure(args.checkout.absolute(), cmd) for _ in range(args.repeats)]
            label = " ".join(cmd[:2]) if cmd[0] != "show" else "show FILE"
            wall = statistics.median(r[0] for r in runs)
            peak = statistics.median(r[1] for r in runs)
            cpu = statistics.median(r[3] for r in runs)
            print(f"{label:<22} {wall:>7.2f} {cpu:>6.2f} {peak:>9.0f}  {runs[-1][2]}")


if __name__ == "__main__":
    main()
