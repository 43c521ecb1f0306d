"""`oodbench leaderboard build`: validated results -> a static site (HTML, inline SVG, one CSS, one JS).

The site works from file:// and any static host: relative links only, no CDN, no network. Every
string from an entry goes through Jinja2 autoescaping (or markupsafe in the SVG charts). The site is
written into a temporary folder next to `out` and swapped into place, so readers never see half a site.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

import benchmark
from benchmark.errors import OodbenchError
from benchmark.results import SCHEMA, registered_suites, to_table
from leaderboard.aggregate import ENTRY_KEY, PER_SET, all_entries, entry_id, id_acc_table, per_set_table
from leaderboard.collect import Inputs, Skipped, collect
from leaderboard.csv_safety import escape_frame, write_csv
from leaderboard.plots import Series, colour, line_chart, scatter_chart
from leaderboard.reported import GROUP_MEAN
from leaderboard.sitedir import swap_into_place, temporary_site

PACKAGE = Path(__file__).parent
MARKER = ".oodbench-site"  # only a folder holding this file is ever replaced by a build
METRIC_COLUMNS = [
    ("near_fpr95", True),
    ("near_auroc", False),
    ("far_fpr95", True),
    ("far_auroc", False),
    ("id_acc", False),
]
PROVENANCE = (
    "run_id",
    "seed",
    "created_at",
    "oodbench_version",
    "git_commit",
    "device",
    "precision",
    "weights_sha256",
    "fewshot_hash",
    "config_hash",
    "suite_version",
    "id_dataset",
    "source_file",
    "dataset_hashes",
    "package_versions",
)


@dataclass
class BuildReport:
    out: Path
    n_files: int
    n_rows: int
    n_entries: int
    n_suites: int
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per part of the build


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pct(x: object) -> str:
    return "—" if _missing(x) else f"{100 * float(x):.1f}"


def _pm(x: object, std: object = None) -> str:
    return _pct(x) if _missing(std) else f"{_pct(x)} ± {100 * float(std):.1f}"


def _delta(x: object, lower_is_better: bool) -> Markup:
    if _missing(x):
        return Markup("")
    d = round(100 * float(x), 1)
    cls = "" if d == 0 else ("good" if (d < 0) == lower_is_better else "bad")
    text = "0.0" if d == 0 else f"{d:+.1f}"
    return Markup(f'<span class="delta {cls}" title="change against zero-shot, percentage points">({text})</span>')


def _raw(x: object) -> str:
    return "" if _missing(x) else repr(float(x))


def _pretty(x: object) -> str:
    return json.dumps(x, indent=2, sort_keys=True, default=str)


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(PACKAGE / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, pm=_pm, delta=_delta, raw=_raw, pretty=_pretty)
    return env


def _slug(name: str) -> str:
    return f"suite-{re.sub(r'[^A-Za-z0-9_-]+', '-', name).strip('-')[:40]}-{entry_id(name)[:8]}.html"


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (None if _missing(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def _reported_sets(reported: pd.DataFrame, group: str) -> list[str]:
    return sorted(set(reported[reported["ood_group"] == group]["ood_dataset"]) - {GROUP_MEAN})


def _suite_info(name: str, entries: pd.DataFrame, inputs: Inputs) -> dict:
    spec = registered_suites().get(name)
    mine = entries[entries["suite"] == name] if not entries.empty else entries
    measured = mine[mine["kind"] == "measured"] if not mine.empty else mine
    runs = inputs.runs.loc[inputs.runs["suite"] == name, "run_id"].tolist()  # one row per run: no rescan of rows
    reported = inputs.reported[inputs.reported["suite"] == name] if not inputs.reported.empty else inputs.reported
    return {
        "name": name,
        "page": _slug(name),
        "registered": spec is not None,
        "version": spec.version if spec else None,
        "description": spec.description if spec else "",
        "id_dataset": spec.id_test if spec else "",
        "near": list(spec.near) if spec else _reported_sets(reported, "near"),
        "far": list(spec.far) if spec else _reported_sets(reported, "far"),
        "n_entries": len(measured.drop_duplicates("entry_id")) if len(measured) else 0,
        "n_runs": len(runs),
        "n_reported": len(mine[mine["kind"] == "reported"].drop_duplicates("entry_id")) if len(mine) else 0,
        "n_verified": sum(inputs.verification.get(r, {}).get("status") == "verified" for r in runs),
    }


def _series_label(method: str, config_hash: str, several: bool) -> str:
    return f"{method} [{config_hash[:8]}]" if several else method


def _plots(entries: pd.DataFrame) -> list[dict]:
    """One plot set per (backbone, score, OOD group): FPR95 and AUROC against shots, ID acc against AUROC."""
    out = []
    methods = sorted(entries["method"].unique())
    col = {m: colour(i) for i, m in enumerate(methods)}
    for (backbone, score), e in entries.groupby(["backbone", "score"], sort=True):
        shots = sorted(int(s) for s in e["shots"].unique())
        configs = e[e["kind"] == "measured"].groupby("method")["config_hash"].nunique()
        for group in ("far", "near"):
            if e[f"{group}_auroc"].isna().all():
                continue
            charts = {}
            for metric, label in (("fpr95", "FPR95 (%) ↓"), ("auroc", "AUROC (%) ↑")):
                series = []
                for (kind, method, cfg, _), s in e.groupby(["kind", "method", "config_hash", "citation"], sort=True):
                    name = _series_label(method, cfg, configs.get(method, 0) > 1)
                    if kind == "reported":
                        name = f"{method} (reported)"
                    values = (s["shots"].astype(int), s[f"{group}_{metric}"], s[f"{group}_{metric}_std"])
                    pts = list(zip(*values, strict=True))
                    flat = kind == "reported" or set(s["shots"]) == {0}
                    series.append(
                        Series(
                            label=name,
                            points=pts,
                            color=col[method],
                            dashed=kind == "reported",
                            reference=flat and len(shots) > 1,
                        )
                    )
                charts[metric] = line_chart(
                    series=series,
                    x_values=shots,
                    y_label=label,
                    title=f"{group} OOD {label.split(' ')[0]} against shots",
                )
            points = [
                (f"{r['method']} · {int(r['shots'])} shots", r["id_acc"], r[f"{group}_auroc"], col[r["method"]])
                for _, r in e.iterrows()
            ]
            charts["scatter"] = scatter_chart(
                points=points,
                title=f"ID accuracy against {group} OOD AUROC",
                x_label="ID accuracy (%)",
                y_label="AUROC (%) ↑",
            )
            out.append(
                {
                    "backbone": backbone,
                    "score": score,
                    "group": group,
                    "fpr": charts["fpr95"],
                    "auroc": charts["auroc"],
                    "scatter": charts["scatter"],
                }
            )
    return out


def _plot_controls(plots: list[dict]) -> list[dict]:
    controls = []
    for key, label, prefer in (
        ("backbone", "backbone", None),
        ("score", "score", "mcm"),
        ("group", "OOD group", "far"),
    ):
        values = sorted({p[key] for p in plots})
        default = prefer if prefer in values else (values[0] if values else "")
        controls.append({"key": key, "label": label, "options": values, "default": default})
    defaults = {c["key"]: c["default"] for c in controls}
    for p in plots:
        p["default"] = all(p[k] == v for k, v in defaults.items())
    return controls


@dataclass
class _Details:
    """Per-entry records for the entry pages, computed in one pass over every row (keyed by ENTRY_KEY)."""

    per_set: dict[tuple, list[dict]]
    id_acc: dict[tuple, list[dict]]
    runs: dict[tuple, list[dict]]

    @classmethod
    def of(cls, rows: pd.DataFrame) -> _Details:
        if rows.empty:
            return cls({}, {}, {})

        def bucket(df: pd.DataFrame) -> dict[tuple, list[dict]]:
            out: dict[tuple, list[dict]] = {}
            for r in _records(df):
                out.setdefault(tuple(r[k] for k in ENTRY_KEY), []).append(r)
            return out

        columns = list(dict.fromkeys(ENTRY_KEY + [c for c in PROVENANCE + ("method_config",) if c in rows.columns]))
        return cls(
            bucket(per_set_table(rows)),
            bucket(id_acc_table(rows)),
            bucket(rows.drop_duplicates("run_id").sort_values("seed")[columns]),
        )


def _measured_details(key: tuple, details: _Details, inputs: Inputs) -> tuple[list[dict], list[dict], str]:
    acc = {r["score"]: r for r in details.id_acc[key]}
    by_score: dict[str, list[dict]] = {}
    for r in details.per_set[key]:
        by_score.setdefault(r["score"], []).append(r)
    per_set = [
        {
            "score": score,
            "rows": rows,
            "source": False,
            "id_acc": acc[score]["id_acc"],
            "id_acc_std": acc[score]["id_acc_std"],
            "n_id": int(acc[score]["n_id"]),
        }
        for score, rows in by_score.items()
    ]
    runs = []
    for r in details.runs[key]:
        fields = [
            (k, json.loads(r[k]) if k in ("dataset_hashes", "package_versions") else r[k]) for k in PROVENANCE if k in r
        ]
        v = inputs.verification.get(r["run_id"], {})
        runs.append(
            {
                "run_id": r["run_id"],
                "seed": int(r["seed"]),
                "fields": fields,
                "verification": v.get("status"),
                "record": v.get("record"),
            }
        )
    return per_set, runs, _pretty(json.loads(details.runs[key][0]["method_config"]))


def _reported_details(entry: pd.Series, inputs: Inputs) -> list[dict]:
    rep = inputs.reported
    mask = pd.Series(True, index=rep.index)
    for c in ("suite", "backbone", "method", "shots", "citation"):
        mask &= rep[c] == entry[c]
    per_set = []
    for score, g in rep[mask].groupby("score", sort=False):
        rows = [
            {
                "ood_group": r["ood_group"],
                "ood_dataset": "mean (as stated)" if r["ood_dataset"] == GROUP_MEAN else r["ood_dataset"],
                "fpr95": r["fpr95"],
                "auroc": r["auroc"],
                "aupr_in": None,
                "aupr_out": None,
                "n_ood": None,
                "source": r["source"],
                **{f"{m}_std": None for m in PER_SET},
            }
            for _, r in g.iterrows()
        ]
        per_set.append(
            {
                "score": score,
                "rows": rows,
                "source": True,
                "id_acc": g["id_acc"].mean(),
                "id_acc_std": None,
                "n_id": None,
            }
        )
    return per_set


def _entry_page(
    env: Environment, entry: pd.DataFrame, details: _Details, inputs: Inputs, suite_page: str, common: dict
) -> str:
    first = entry.iloc[0]
    if first["kind"] == "measured":
        per_set, runs, method_config = _measured_details(tuple(first[k] for k in ENTRY_KEY), details, inputs)
    else:
        per_set, runs, method_config = _reported_details(first, inputs), [], ""
    return env.get_template("entry.html").render(
        entry=_records(entry.iloc[[0]])[0],
        per_set=per_set,
        runs=runs,
        method_config=method_config,
        suite_page=suite_page,
        **common,
    )


def _write_downloads(inputs: Inputs, folder: Path) -> None:
    folder.mkdir(parents=True)
    table = to_table(inputs.rows) if len(inputs.rows) else SCHEMA.empty_table()
    pq.write_table(table, folder / "oodbench-results.parquet")
    write_csv(table, folder / "oodbench-results.csv")  # no cell runs as a formula
    escape_frame(inputs.reported).to_csv(folder / "reported.csv", index=False)


def _write_suite(
    env: Environment, folder: Path, suite: dict, entries: pd.DataFrame, details: _Details, inputs: Inputs, common: dict
) -> None:
    """The suite's page (table, filters, plots) and a page per entry of the suite."""
    e = entries[entries["suite"] == suite["name"]] if not entries.empty else entries
    e = e.sort_values(["backbone", "score", "method", "shots"], kind="stable") if len(e) else e
    rows = _records(e)
    for r in rows:
        r["page"] = f"entry-{r['entry_id']}.html"
    filters = [
        {
            "key": k,
            "label": k,
            "options": sorted({str(r[k]) for r in rows}, key=lambda v: (len(v), v) if k == "shots" else (0, v)),
        }
        for k in ("backbone", "shots", "method", "score")
    ]
    plots = _plots(e) if len(e) else []
    (folder / suite["page"]).write_text(
        env.get_template("suite.html").render(
            suite=suite,
            rows=rows,
            filters=filters,
            metric_cols=METRIC_COLUMNS,
            plots=plots,
            plot_controls=_plot_controls(plots),
            **common,
        ),
        encoding="utf-8",
    )
    for entry, one in e.groupby("entry_id", sort=False) if len(e) else []:
        html = _entry_page(env, one, details, inputs, suite["page"], common)
        (folder / f"entry-{entry}.html").write_text(html, encoding="utf-8")


def build_site(
    *, results_dir: Path, out: Path, allowed_signers: Path | None = None, cache_dir: Path | None = None
) -> BuildReport:
    """Validate everything under `results_dir` and write the static site to `out` (replacing an older build).

    Verification records are checked against `allowed_signers` (default `<results_dir>/allowed_signers`);
    with `cache_dir`, parsed result files are cached there by sha256 (leaderboard.parsed_cache). The site is
    written into a locked temporary folder beside `out` that no way out leaves behind (leaderboard.sitedir)."""
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise OodbenchError(
            f"{out} exists and is not an oodbench site (it has no {MARKER} file); refusing to "
            f"replace it. Pass --out with a new or empty folder."
        )
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + now - mark
        mark = now

    inputs = collect(Path(results_dir), allowed_signers=allowed_signers, cache_dir=cache_dir)
    lap("read and validate")
    entries = all_entries(inputs.rows, inputs.reported, verification=inputs.verification)
    if not entries.empty:
        entries["status_rank"] = [
            0 if k == "reported" else (3 if nv == ns else 2 if nv else 1)
            for k, nv, ns in zip(entries["kind"], entries["n_verified"], entries["n_seeds"], strict=False)
        ]
    env = environment()
    details = _Details.of(inputs.rows)
    common = {
        "built_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "n_files": inputs.n_files,
        "version": benchmark.__version__,
    }
    suite_names = list(dict.fromkeys(list(registered_suites()) + sorted(set(entries.get("suite", [])))))
    suites = [_suite_info(n, entries, inputs) for n in suite_names]
    lap("aggregate")

    try:
        with temporary_site(out) as tmp:
            (tmp / MARKER).write_text("built by `oodbench leaderboard build`; this folder is replaced on every build\n")
            shutil.copytree(PACKAGE / "static", tmp / "static")
            _write_downloads(inputs, tmp / "downloads")
            lap("downloads")
            (tmp / "index.html").write_text(
                env.get_template("index.html").render(
                    suites=suites, skipped=inputs.skipped, n_rows=len(inputs.rows), **common
                ),
                encoding="utf-8",
            )
            for suite in suites:
                _write_suite(env, tmp, suite, entries, details, inputs, common)
            lap("pages")
            swap_into_place(tmp, out)
    except OSError as err:
        raise OodbenchError(
            f"Cannot write the site to {out}: {err.strerror}. Pass --out pointing at a writable folder."
        ) from None
    n_entries = entries["entry_id"].nunique() if not entries.empty else 0
    return BuildReport(
        out=out,
        n_files=inputs.n_files,
        n_rows=len(inputs.rows),
        n_entries=n_entries,
        n_suites=len(suites),
        skipped=inputs.skipped,
        seconds=time.perf_counter() - start,
        phases=phases,
    )
