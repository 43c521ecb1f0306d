"""Time of `oodbench leaderboard build` at 1x, 10x and 100x the committed demo results, with peak memory.

The committed demo results (216 files, 5,244 rows; files of schema version 1 get the columns they lack)
are copied `scale` times, without their per-sample scores sidecars, into a synthetic results folder:

    copy c (0 .. scale-1) of a file keeps its rows and numbers and gets a new run_id, the seed
    seed + 10 * (c % 4), and the method name `<method>` for c < 4, else `<method>_v<c // 4>`
    (config_hash recomputed), so no two files share a run key.

At 1x that is the 216 committed runs; at 10x 2,160 files and 3x the entries (up to 12 seeds each); at
100x 21,600 files (524,400 rows) and 25x the entries. Every synthetic file is valid, so the build
publishes all of them. Without sidecars the copies time reading, validation, aggregation, downloads and
pages, not the significance tests (time those with `oodbench leaderboard build` on results/ itself).
The folders are written once under --work (default: a folder in the system's
temporary folder) and reused by later invocations.

Each build runs in a fresh Python process (so imports and peak memory belong to that build alone). For
each scale the report gives the median over --repeats of the build's own time (`build_site`, without the
interpreter start) cold (no parse cache: every file parsed) and warm (leaderboard.parsed_cache filled by
an earlier build of the same files; every file is still read, hashed and validated), the warm build's CPU
time (on a shared machine the wall time also counts the wait for a core), the peak resident memory of the
process (ru_maxrss; it includes the interpreter and pandas/pyarrow, about 150 MB), and the wall time per
part of the build (BuildReport.phases: read and validate, aggregate, downloads, pages). The load average
is printed at the end.

    nice -n 10 python -m benchmarks.site_build                      # 1x, 10x, 100x; 3 repeats
    python -m benchmarks.site_build --scales 1 10 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmark.results import SCHEMA, SCHEMA_VERSION, read_results, result_files, to_table
from methods.base import config_hash
from methods.scores import SCORES

REPO = Path(__file__).resolve().parents[1]
SEEDS_PER_VARIANT = 4
CHILD = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from leaderboard.build import build_site
t1, c1 = time.perf_counter(), time.process_time()
cache = Path(sys.argv[3]) if len(sys.argv) > 3 else None
report = build_site(results_dir=Path(sys.argv[1]), out=Path(sys.argv[2]), cache_dir=cache)
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "cpu_s": c2 - c1, "files": report.n_files,
                  "rows": report.n_rows, "entries": report.n_entries, "skipped": len(report.skipped),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "phases": report.phases}))
"""


def upgrade(rows) -> pa.Table:  # noqa: ANN001 - a pandas frame of committed rows
    """Committed demo rows as valid current-schema rows without a sidecar (copies carry no per-sample scores, so
    the synthetic folders time reading, validation, aggregation and pages; the committed folder itself, at 1x,
    also times the significance tests). Files of schema version 1 get the columns they lack."""
    rows = rows.copy()
    if "score_config" not in rows:  # schema version 1
        rows["score_config"] = [
            json.dumps(dict(SCORES.get(s).defaults), sort_keys=True, separators=(",", ":")) for s in rows["score"]
        ]
        rows["fpr95_ood_positive"] = rows["fpr95"]  # a stand-in: only the build's speed is measured
        for c in SCHEMA.names:
            if c.endswith(("_low", "_high")):
                rows[c] = float("nan")
        rows["protocol"] = ["few-shot" if s else "zero-shot" for s in rows["shots"]]
        rows["uses_extra_data"] = False
        rows["uses_language_model"] = False
        rows["stream_seed"] = 0
        rows["stream_batch_size"] = 256
        rows["tuned_weights_sha256"] = ""
        rows["fit_seconds"] = 1.0
        rows["predict_seconds"] = 1.0
        rows["peak_memory_mb"] = 100.0
    rows["scores_sha256"] = ""  # the copies have no sidecar
    rows["schema_version"] = SCHEMA_VERSION
    return to_table(rows[list(SCHEMA.names)])


def _set(table: pa.Table, name: str, value: object) -> pa.Table:
    i = table.schema.get_field_index(name)
    column = pa.array([value] * table.num_rows, type=table.schema.field(name).type)
    return table.set_column(i, name, column)


def synthesise(folder: Path, scale: int) -> Path:
    """A results folder with `scale` copies of every committed demo file (see the module docstring)."""
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sources = [p for p in result_files(REPO / "results") if "reported" not in p.parts]
    for path in sources:
        base = upgrade(read_results(path))
        method = base.column("method")[0].as_py()
        cfg = base.column("method_config")[0].as_py()
        seed = base.column("seed")[0].as_py()
        for c in range(scale):
            variant = c // SEEDS_PER_VARIANT
            name = method if variant == 0 else f"{method}_v{variant}"
            table = _set(base, "method", name)
            table = _set(table, "config_hash", config_hash(name, cfg))
            table = _set(table, "seed", seed + 10 * (c % SEEDS_PER_VARIANT))
            table = _set(table, "run_id", uuid.uuid5(uuid.NAMESPACE_URL, f"{path.name}/{c}").hex)
            assert pc.all(pc.equal(table.column("schema_version"), SCHEMA_VERSION)).as_py()
            out = folder / name / f"{path.stem}__c{c}.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, out)
    done.write_text("synthesised\n")
    return folder


def build_once(results: Path, out: Path, cache: Path | None = None) -> dict:
    start = time.perf_counter()
    args = [sys.executable, "-c", CHILD, str(results), str(out), *([str(cache)] if cache else [])]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the build failed:\n{proc.stderr[-4000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "oodbench-site-build")
    args = parser.parse_args()
    print(
        f"{'scale':>5} {'files':>7} {'rows':>8} {'entries':>8} {'cold s':>7} {'warm s':>7} {'warm cpu s':>10} "
        f"{'peak MB':>8}"
    )
    for scale in args.scales:
        results = synthesise(args.work / f"results-{scale}x", scale)
        cache = args.work / f"cache-{scale}x"
        shutil.rmtree(cache, ignore_errors=True)
        build_once(results, args.work / f"site-{scale}x", cache)  # fills the parse cache
        cold = [build_once(results, args.work / f"site-{scale}x") for _ in range(args.repeats)]
        warm = [build_once(results, args.work / f"site-{scale}x", cache) for _ in range(args.repeats)]
        first = cold[0]
        if first["skipped"]:
            raise SystemExit(f"{first['skipped']} synthetic files were skipped; they should all be valid")
        print(
            f"{scale:>4}x {first['files']:>7} {first['rows']:>8} {first['entries']:>8} "
            f"{statistics.median(r['build_s'] for r in cold):>7.2f} "
            f"{statistics.median(r['build_s'] for r in warm):>7.2f} "
            f"{statistics.median(r['cpu_s'] for r in warm):>10.2f} "
            f"{statistics.median(r['peak_mb'] for r in warm + cold):>8.0f}",
            flush=True,
        )
        for name, runs in (("cold", cold), ("warm", warm)):
            times = ", ".join(f"{r['build_s']:.2f}" for r in runs)
            cpu = ", ".join(f"{r['cpu_s']:.2f}" for r in runs)
            peaks = ", ".join(f"{r['peak_mb']:.0f}" for r in runs)
            parts = ", ".join(
                f"{k} {statistics.median(r['phases'].get(k, 0.0) for r in runs):.2f}" for k in runs[0]["phases"]
            )
            print(
                f"      {name}: wall s {times}; cpu s {cpu}; peak MB {peaks}; median wall per part: {parts}", flush=True
            )
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
