"""`oodbench leaderboard build`: validated results -> a static site (HTML, inline SVG, one CSS, one JS).

The site works from file:// and any static host: relative links only, no CDN, no network. Every
string from an entry goes through Jinja2 autoescaping (or markupsafe in the SVG charts). The site is
written into a temporary folder next to `out` and swapped into place, so readers never see half a site.

A suite page opens with a ranked summary and the heatmap of changes against zero-shot (leaderboard.overview,
tested by leaderboard.significance from the per-sample scores), then the table of every current entry,
measured and reported side by side, then entries of older suite versions or result schemas, apart.
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
import pyarrow as pa
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

import benchmark
from benchmark.errors import OodbenchError
from benchmark.results import SCHEMA, SCHEMA_VERSION, registered_suites, score_column, scores_path, to_table
from leaderboard.aggregate import (
    ENTRY_KEY,
    PER_SET,
    ZERO_SHOT,
    all_entries,
    entry_id,
    id_acc_table,
    normalise,
    per_set_table,
)
from leaderboard.collect import Inputs, Skipped, collect
from leaderboard.csv_safety import escape_frame, write_csv
from leaderboard.curves import RunCurves, curves_key, run_curves
from leaderboard.overview import heatmaps, ranked_summary
from leaderboard.plots import PALETTE, Series, colour, histogram_chart, line_chart, roc_chart, scatter_chart
from leaderboard.reported import GROUP_MEAN
from leaderboard.significance import Cache, Comparison, Request, Settings, SidecarReader, run_requests
from leaderboard.sitecache import JsonCache
from leaderboard.sitedir import swap_into_place, temporary_site

PACKAGE = Path(__file__).parent
MARKER = ".oodbench-site"  # only a folder holding this file is ever replaced by a build
# (column, label, lower is better, FPR95 convention: "id" / "ood" / "" for both)
METRIC_COLUMNS = [
    ("near_fpr95", "near FPR95", True, "id"),
    ("near_fpr95_ood_positive", "near FPR95", True, "ood"),
    ("near_auroc", "near AUROC", False, ""),
    ("far_fpr95", "far FPR95", True, "id"),
    ("far_fpr95_ood_positive", "far FPR95", True, "ood"),
    ("far_auroc", "far AUROC", False, ""),
    ("id_acc", "ID acc", False, ""),
]
CONVENTIONS = {"id": "ID positive", "ood": "OOD positive"}
PROVENANCE = (
    "run_id",
    "seed",
    "created_at",
    "oodbench_version",
    "git_commit",
    "device",
    "precision",
    "weights_sha256",
    "tuned_weights_sha256",
    "fewshot_hash",
    "config_hash",
    "suite_version",
    "schema_version",
    "id_dataset",
    "protocol",
    "stream_seed",
    "stream_batch_size",
    "fit_seconds",
    "predict_seconds",
    "peak_memory_mb",
    "scores_sha256",
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
    n_compared: int = 0  # entry x score variant comparisons against zero-shot with an interval
    n_cached: int = 0  # of which read from the cache
    warnings: list[str] = field(default_factory=list)


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pct(x: object) -> str:
    return "—" if _missing(x) else f"{100 * float(x):.1f}"


def _pm(x: object, std: object = None) -> str:
    return _pct(x) if _missing(std) else f"{_pct(x)} ± {100 * float(std):.1f}"


def _pp(x: object) -> str:
    """A change in percentage points, signed."""
    if _missing(x):
        return "—"
    d = round(100 * float(x), 1)
    return "0.0" if d == 0 else f"{d:+.1f}"


def _ci(low: object, high: object) -> str:
    return "" if _missing(low) or _missing(high) else f"[{100 * float(low):.1f}, {100 * float(high):.1f}]"


def _delta(x: object, lower_is_better: bool) -> Markup:
    if _missing(x):
        return Markup("")
    d = round(100 * float(x), 1)
    cls = "" if d == 0 else ("good" if (d < 0) == lower_is_better else "bad")
    return Markup(f'<span class="delta {cls}" title="change against zero-shot, percentage points">({_pp(x)})</span>')


def _raw(x: object) -> str:
    return "" if _missing(x) else repr(float(x))


def _secs(x: object) -> str:
    return "—" if _missing(x) else (f"{float(x):.1f}" if float(x) < 100 else f"{float(x):.0f}")


def _mb(x: object) -> str:
    return "—" if _missing(x) else f"{float(x):.0f}"


def _pretty(x: object) -> str:
    return json.dumps(x, indent=2, sort_keys=True, default=str)


def _heat(cell: dict | None) -> str:
    """The inline background of a significant heatmap cell: green for a gain, red for a loss, stronger for
    larger changes. Greyed and untested cells are styled by their class."""
    if not cell or not cell.get("significant"):
        return ""
    rgb = "26, 127, 55" if cell["mean"] > 0 else "198, 40, 40"
    return f"background-color: rgba({rgb}, {0.15 + 0.6 * cell['strength']:.2f})"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(PACKAGE / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=_pct, pm=_pm, pp=_pp, ci=_ci, delta=_delta, raw=_raw, pretty=_pretty, secs=_secs, mb=_mb, heat=_heat
    )
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
    current = measured[measured["current"]] if len(measured) else measured
    return {
        "name": name,
        "page": _slug(name),
        "registered": spec is not None,
        "version": spec.version if spec else None,
        "description": spec.description if spec else "",
        "id_dataset": spec.id_test if spec else "",
        "near": list(spec.near) if spec else _reported_sets(reported, "near"),
        "far": list(spec.far) if spec else _reported_sets(reported, "far"),
        "n_entries": len(current.drop_duplicates("entry_id")) if len(current) else 0,
        "n_older": len(measured.drop_duplicates("entry_id")) - len(current.drop_duplicates("entry_id"))
        if len(measured)
        else 0,
        "n_runs": len(runs),
        "n_reported": len(mine[mine["kind"] == "reported"].drop_duplicates("entry_id")) if len(mine) else 0,
        "n_verified": sum(inputs.verification.get(r, {}).get("status") == "verified" for r in runs),
    }


def _series_label(method: str, config_hash: str, several: bool) -> str:
    return f"{method} [{config_hash[:8]}]" if several else method


def _plots(entries: pd.DataFrame) -> list[dict]:
    """One plot set per (backbone, score variant, OOD group): FPR95 (each convention) and AUROC against shots,
    ID accuracy against AUROC. Reported numbers appear only on the FPR95 chart of their own convention."""
    out = []
    methods = sorted(entries["method"].unique())
    col = {m: colour(i) for i, m in enumerate(methods)}
    for (backbone, score), e in entries.groupby(["backbone", "score_label"], sort=True):
        shots = sorted(int(s) for s in e["shots"].unique())
        configs = e[e["kind"] == "measured"].groupby("method")["config_hash"].nunique()
        for group in ("far", "near"):
            if e[f"{group}_auroc"].isna().all():
                continue
            charts = {}
            for metric, label in (
                ("fpr95", "FPR95, ID positive (%) ↓"),
                ("fpr95_ood_positive", "FPR95, OOD positive (%) ↓"),
                ("auroc", "AUROC (%) ↑"),
            ):
                series = []
                for (kind, method, cfg, _), s in e.groupby(["kind", "method", "config_hash", "citation"], sort=True):
                    if s[f"{group}_{metric}"].isna().all():
                        continue  # e.g. a reported FPR95 of the other convention
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
                    y_label=label.split(", ")[0] + " (%)" if "FPR" in label else label,
                    title=f"{group} OOD {label.removesuffix(' (%) ↓').removesuffix(' (%) ↑')} against shots",
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
                    "fpr_ood": charts["fpr95_ood_positive"],
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

        wanted = PROVENANCE + ("method_config",)
        columns = list(dict.fromkeys(ENTRY_KEY + [c for c in wanted if c in rows.columns]))
        return cls(
            bucket(per_set_table(rows)),
            bucket(id_acc_table(rows)),
            bucket(rows.drop_duplicates("run_id").sort_values("seed")[columns]),
        )


@dataclass
class _Pages:
    """What every page of one build reads: templates, the collected inputs and their per-entry details,
    the comparisons against zero-shot, where the per-sample scores live, and the curves cache."""

    env: Environment
    inputs: Inputs
    details: _Details
    significance: dict
    results_dir: Path
    curves: JsonCache
    common: dict


def _comparison_rows(found: Comparison | str | None, groups: list[tuple[str, str]]) -> dict:
    """An entry page's table of changes against zero-shot for one score variant."""
    if not isinstance(found, Comparison):
        return {"tested": False, "reason": found or "no per-sample scores for this entry or its zero-shot baseline"}
    rows = [
        {"what": f"{name} ({grp})", "delta": found.per_set[name], "group": False}
        for grp, name in groups
        if name in found.per_set
    ]
    rows += [{"what": f"{grp} mean", "delta": d, "group": True} for grp, d in found.groups.items()]
    return {"tested": True, "rows": rows, "id_acc": found.id_acc, "n_seeds": found.n_seeds, "settings": found.settings}


def _curves(
    blocks: list[dict], *, results_dir: Path, id_dataset: str, groups: list[tuple[str, str]], cache: JsonCache
) -> None:
    """Draw each score variant's ROC curves and histograms from the sidecar of its first seed's run (a block's
    `file`, `sha` and `seed`), through the site cache; a block whose scores cannot be read gets a note."""
    reader = SidecarReader(keep=2)
    sets = [name for _, name in groups]
    for block in blocks:
        if not block.get("file"):
            block["curves_note"] = "no per-sample scores for this score"
            continue
        column = score_column(block["score"], block["score_config"])
        key = curves_key(sidecar_sha=block["sha"], column=column, sets=sets)
        drawn = cache.read(key, RunCurves.from_json)
        if drawn is None:
            try:
                run = reader.run_scores(
                    str(scores_path(results_dir / block["file"])), column=column, id_dataset=id_dataset, ood_sets=sets
                )
            except OodbenchError as err:
                block["curves_note"] = f"the per-sample scores could not be read ({err})"
                continue
            drawn = run_curves(run.id_scores, dict(run.ood))
            cache.write(key, drawn.to_json())
        seed = block["seed"]
        curves = [
            (
                f"{name} ({grp})",
                drawn.roc[name].fpr.tolist(),
                drawn.roc[name].tpr.tolist(),
                PALETTE[(i + 1) % len(PALETTE)],
            )
            for i, (grp, name) in enumerate(groups)
        ]
        block["roc"] = roc_chart(curves=curves, title=f"ROC curves, seed {seed} (ID positive)")
        block["histograms"] = [
            histogram_chart(
                edges=h.edges.tolist(),
                id_share=h.id_share.tolist(),
                ood_share=h.ood_share.tolist(),
                title=f"{name} ({grp}) against the ID test set, seed {seed}",
                ood_label=name,
                note="outer bins hold the extremes" if h.clipped else "",
            )
            for grp, name in groups
            for h in [drawn.histograms[name]]
        ]


def _measured_details(pages: _Pages, entry: pd.DataFrame) -> tuple[list[dict], list[dict], str, str]:
    details, inputs, significance = pages.details, pages.inputs, pages.significance
    first = entry.iloc[0]
    key = tuple(first[k] for k in ENTRY_KEY)
    acc = {(r["score"], r["score_config"]): r for r in details.id_acc[key]}
    by_score: dict[tuple, list[dict]] = {}
    for r in details.per_set[key]:
        by_score.setdefault((r["score"], r["score_config"]), []).append(r)
    labels = {(r["score"], r["score_config"]): r for _, r in entry.iterrows()}
    groups = [(r["ood_group"], r["ood_dataset"]) for r in next(iter(by_score.values()), [])]
    blocks = []
    for sk, rows in by_score.items():
        e = labels.get(sk)
        blocks.append(
            {
                "score": sk[0],
                "score_config": sk[1],
                "label": e["score_label"] if e is not None else sk[0],
                "variant": bool(e["score_variant"]) if e is not None else False,
                "rows": rows,
                "source": False,
                "id_acc": acc[sk]["id_acc"],
                "id_acc_std": acc[sk]["id_acc_std"],
                "n_id": int(acc[sk]["n_id"]),
                "one_seed": int(e["n_seeds"] if e is not None else first["n_seeds"]) == 1,
                "file": e["files"][0] if e is not None and e["sidecars"] and e["sidecars"][0] else "",
                "sha": e["sidecars"][0] if e is not None and e["sidecars"] else "",
                "seed": e["seeds"][0] if e is not None and e["seeds"] else None,
                "comparison": _comparison_rows(significance.get((first["entry_id"], *sk)), groups)
                if first["method"] != ZERO_SHOT and e is not None and e["baseline_id"]
                else None,
            }
        )
    curves_note = ""
    if first["has_scores"] or any(b["file"] for b in blocks):
        _curves(
            blocks,
            results_dir=pages.results_dir,
            id_dataset=details.runs[key][0]["id_dataset"],
            groups=groups,
            cache=pages.curves,
        )
    else:
        curves_note = "this entry has no per-sample scores (it was run with --no-save-scores or before they existed)"
    runs = []
    for r in details.runs[key]:
        fields = [
            (k, json.loads(r[k]) if k in ("dataset_hashes", "package_versions") and r.get(k) else r[k])
            for k in PROVENANCE
            if k in r and r[k] is not None
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
    return blocks, runs, _pretty(json.loads(details.runs[key][0]["method_config"])), curves_note


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
                "fpr95": None if _missing(r["fpr95"]) else r["fpr95"],
                "fpr95_ood_positive": None if _missing(r["fpr95_ood_positive"]) else r["fpr95_ood_positive"],
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
                "score_config": "",
                "label": score,
                "variant": False,
                "rows": rows,
                "source": True,
                "id_acc": g["id_acc"].mean(),
                "id_acc_std": None,
                "n_id": None,
                "one_seed": False,
                "comparison": None,
                "convention": g["fpr95_convention"].iloc[0],
            }
        )
    return per_set


def _entry_page(pages: _Pages, entry: pd.DataFrame, suite_page: str) -> str:
    first = entry.iloc[0]
    if first["kind"] == "measured":
        blocks, runs, method_config, curves_note = _measured_details(pages, entry)
    else:
        blocks, runs, method_config, curves_note = _reported_details(first, pages.inputs), [], "", ""
    return pages.env.get_template("entry.html").render(
        entry=_records(entry.iloc[[0]])[0],
        blocks=blocks,
        runs=runs,
        method_config=method_config,
        curves_note=curves_note,
        suite_page=suite_page,
        conventions=CONVENTIONS,
        **pages.common,
    )


def _write_downloads(inputs: Inputs, folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = inputs.rows
    if rows.empty:
        table = SCHEMA.empty_table()
    elif set(SCHEMA.names) <= set(rows.columns):
        table = to_table(rows)
    else:  # only files of an older schema: their own columns, typed as read
        table = pa.Table.from_pandas(rows, preserve_index=False)
    pq.write_table(table, folder / "oodbench-results.parquet")
    write_csv(table, folder / "oodbench-results.csv")  # no cell runs as a formula
    escape_frame(inputs.reported).to_csv(folder / "reported.csv", index=False)


def _table_rows(e: pd.DataFrame) -> list[dict]:
    e = e.sort_values(["backbone", "score_label", "method", "shots"], kind="stable") if len(e) else e
    rows = _records(e)
    for r in rows:
        r["page"] = f"entry-{r['entry_id']}.html"
    return rows


def _filters(rows: list[dict]) -> list[dict]:
    def order(key: str, v: str) -> tuple:
        return (len(v), v) if key == "shots" else (0, v)

    return [
        {"key": k, "label": label, "options": sorted({str(r[k]) for r in rows}, key=lambda v, k=k: order(k, v))}
        for k, label in (
            ("backbone", "backbone"),
            ("shots", "shots"),
            ("method", "method"),
            ("score_label", "score"),
            ("protocol", "protocol"),
            ("kind", "measured / reported"),
        )
    ]


def _version_notes(entry: pd.Series) -> list[str]:
    """What changed since an older entry's suite version and result schema, in sentences."""
    notes = []
    spec = registered_suites().get(entry["suite"])
    version = int(entry["suite_version"])
    if spec is not None and version != spec.version:
        later = [h for h in spec.history if h.version >= version and h.change]
        notes += [f"after suite v{h.version}: {h.change}" for h in sorted(later, key=lambda h: h.version)]
    if int(entry["schema_version"]) < SCHEMA_VERSION:
        notes.append(
            f"result schema {int(entry['schema_version'])} predates score parameters, the OOD-positive FPR95, "
            f"intervals, per-sample scores, protocols and cost (schema {SCHEMA_VERSION})"
        )
    return notes


def _write_suite(pages: _Pages, folder: Path, suite: dict, entries: pd.DataFrame) -> None:
    """The suite's page (summary, heatmap, table, plots, older versions) and a page per entry of the suite."""
    e = entries[entries["suite"] == suite["name"]] if not entries.empty else entries
    current = e[e["current"]] if len(e) else e
    older = e[~e["current"]] if len(e) else e
    rows = _table_rows(current)
    older_sections = [
        {"version": version, "rows": _table_rows(g), "notes": _version_notes(g.iloc[0])}
        for version, g in (older.groupby("version", sort=True) if len(older) else [])
    ]
    plots = _plots(current) if len(current) else []
    summary = ranked_summary(current, pages.significance) if len(current) else None
    heat = heatmaps(current, pages.significance) if len(current) else None
    (folder / suite["page"]).write_text(
        pages.env.get_template("suite.html").render(
            suite=suite,
            rows=rows,
            filters=_filters(rows),
            metric_cols=METRIC_COLUMNS,
            conventions=CONVENTIONS,
            summary=summary,
            heat=heat,
            older=older_sections,
            plots=plots,
            plot_controls=_plot_controls(plots),
            **pages.common,
        ),
        encoding="utf-8",
    )
    for entry, one in e.groupby("entry_id", sort=False) if len(e) else []:
        html = _entry_page(pages, one, suite["page"])
        (folder / f"entry-{entry}.html").write_text(html, encoding="utf-8")


def significance_requests(entries: pd.DataFrame, *, results_dir: Path) -> list[Request]:
    """One request per measured fine-tuned (entry, score variant) with a zero-shot baseline, when every seed
    of the entry and the baseline kept per-sample scores. OOD sets in the order of the entry's suite version
    (which fixes the bootstrap's draws)."""
    if entries.empty:
        return []
    suites = registered_suites()
    by_id = entries.drop_duplicates("entry_id").set_index("entry_id")
    todo = entries[
        (entries["kind"] == "measured")
        & (entries["method"] != ZERO_SHOT)
        & (entries["baseline_id"] != "")
        & entries["has_scores"]
    ]

    def sidecar(file: str, sha: str) -> tuple[str, str]:
        return str(scores_path(results_dir / file)), sha

    out = []
    for _, e in todo.iterrows():
        base = by_id.loc[e["baseline_id"]]
        spec = suites[e["suite"]].at(int(e["suite_version"])) if e["suite"] in suites else None
        if not base["has_scores"] or spec is None:
            continue
        out.append(
            Request(
                key=(e["entry_id"], e["score"], e["score_config"]),
                column=score_column(e["score"], e["score_config"]),
                id_dataset=spec.id_test,
                groups=tuple(spec.ood_sets()),
                baseline=sidecar(base["files"][0], base["sidecars"][0]),
                tuned=tuple(sidecar(f, s) for f, s in zip(e["files"], e["sidecars"], strict=True)),
            )
        )
    return out


def build_site(
    *,
    results_dir: Path,
    out: Path,
    allowed_signers: Path | None = None,
    cache_dir: Path | None = None,
    settings: Settings = Settings(),
) -> BuildReport:
    """Validate everything under `results_dir` and write the static site to `out` (replacing an older build).

    Verification records are checked against `allowed_signers` (default `<results_dir>/allowed_signers`).
    With `cache_dir` (the oodbench cache folder), its site/ part keeps parsed result files by sha256
    (leaderboard.parsed_cache), comparisons against zero-shot and curves; without it nothing is cached. The
    site is written into a locked temporary folder beside `out` that no way out leaves behind (leaderboard.sitedir)."""
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
    rows = normalise(inputs.rows) if not inputs.rows.empty else inputs.rows
    entries = all_entries(rows, inputs.reported, verification=inputs.verification, suites=registered_suites())
    if not entries.empty:
        entries["status_rank"] = [
            0 if k == "reported" else (3 if nv == ns else 2 if nv else 1)
            for k, nv, ns in zip(entries["kind"], entries["n_verified"], entries["n_seeds"], strict=False)
        ]
    site_cache = Path(cache_dir) / "site" if cache_dir is not None else None
    cache = Cache(site_cache / "significance" if site_cache else None)
    requests = significance_requests(entries, results_dir=Path(results_dir))
    significance = run_requests(requests, cache=cache, settings=settings)
    lap("significance")
    env = environment()
    details = _Details.of(rows)
    common = {
        "built_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "n_files": inputs.n_files,
        "version": benchmark.__version__,
    }
    curves = JsonCache(site_cache / "curves" if site_cache else None, what="curves")
    pages = _Pages(env, inputs, details, significance, Path(results_dir), curves, common)
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
                _write_suite(pages, tmp, suite, entries)
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
        n_compared=sum(isinstance(v, Comparison) for v in significance.values()),
        n_cached=cache.hits,
        warnings=cache.warnings + curves.warnings,
    )
