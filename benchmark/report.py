"""Terminal tables of result rows, and printing any table without cutting a name.

Numbers are stored as fractions; here they become percentages. A name a user must copy (suite, dataset,
method, score, backbone, file) is never truncated: its column is as wide as its longest name and never
wraps (`keep_names`), and `print_table` widens the output when a terminal is too narrow (the terminal
wraps the long lines, nothing is lost) and prints every row on one line when the output is not a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from benchmark.results import KEY_COLUMNS
from benchmark.summary import group_means
from benchmark.tables import TextTable
from methods.scores import labelled

UNBOUNDED = 1_000_000  # a width no table reaches: the natural widths of its columns


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _lines(renderable: object) -> list[str]:
    text = renderable.plain if isinstance(renderable, Text) else str(renderable)
    return text.splitlines() or [""]


def keep_names(table: Table, *, columns: Iterable[int] | None = None) -> Table:
    """Make the given columns (default: those created with `no_wrap=True`) exactly as wide as their widest
    line, header included, so Rich never shrinks, wraps or cuts them; several names in one cell go on
    separate lines. Other columns fold their text rather than cut it. Returns the table."""
    chosen = set(columns) if columns is not None else {i for i, c in enumerate(table.columns) if c.no_wrap}
    for i, column in enumerate(table.columns):
        if i in chosen:
            cells = [column.header, *column.cells]
            column.width = max(len(line) for cell in cells for line in _lines(cell))
            column.no_wrap = True
        elif column.overflow == "ellipsis":
            column.overflow = "fold"
    return table


def print_table(console: Console, table: Table) -> None:
    """Print `table` with no name cut: at its natural width when the output is not a terminal (a file, a
    pipe), and at least as wide as its name columns need on a terminal of any width."""
    natural = Measurement.get(console, console.options.update_width(UNBOUNDED), table)
    width = natural.maximum if not console.is_terminal else max(console.width, natural.minimum)
    before = console.width
    console.width = width
    try:
        console.print(table, crop=False)
    finally:
        console.width = before


def run_table(rows: pd.DataFrame, *, title: str | None = None) -> TextTable:
    """One run's rows: per score, ID accuracy, FPR95/AUROC on every OOD set, near and far means."""
    rows = labelled(rows)
    ood = rows[["ood_group", "ood_dataset"]].drop_duplicates()
    table = TextTable(
        title=title,
        caption="FPR95 with ID as the positive class (lower is better) / AUROC (higher is better), in %",
    )
    table.add_column("score", style="bold", no_wrap=True)
    table.add_column("ID acc", justify="right")
    for grp, name in ood.itertuples(index=False):
        table.add_column(f"{name}\n({grp})", justify="right", no_wrap=True)
    table.add_column("near mean", justify="right", style="cyan")
    table.add_column("far mean", justify="right", style="cyan")
    means = group_means(rows, ["score_label"]).set_index("score_label")
    for score, g in rows.groupby("score_label", sort=False):
        cells = [score, pct(g["id_acc"].iloc[0])]
        by_set = g.set_index("ood_dataset")
        for _, name in ood.itertuples(index=False):
            r = by_set.loc[name]
            cells.append(f"{pct(r['fpr95'])} / {pct(r['auroc'])}")
        m = means.loc[score]
        for grp in ("near", "far"):
            cells.append(f"{pct(m[f'{grp}_fpr95'])} / {pct(m[f'{grp}_auroc'])}")
        table.add_row(*cells)
    return keep_names(table)


def delta_table(base: pd.DataFrame, tuned: pd.DataFrame, *, title: str) -> TextTable:
    """Per score: the change of a fine-tuned run against the zero-shot run (percentage points)."""
    b = group_means(labelled(base), ["score_label"]).set_index("score_label")
    t = group_means(labelled(tuned), ["score_label"]).set_index("score_label")
    table = TextTable(
        title=title,
        caption="change in percentage points (FPR95, ID positive: lower is better; AUROC, ID acc: higher is better)",
    )
    for col in ("score", "ID acc", "near FPR95", "near AUROC", "far FPR95", "far AUROC"):
        table.add_column(col, justify="left" if col == "score" else "right", no_wrap=col == "score")

    def fmt(d: float, good_if_negative: bool) -> Text:
        good = d < 0 if good_if_negative else d > 0
        return Text(f"{100 * d:+.1f}", style="green" if good else "red" if d != 0 else "white")

    for score in t.index.intersection(b.index):
        d = t.loc[score] - b.loc[score]
        table.add_row(
            score,
            fmt(d["id_acc"], False),
            fmt(d["near_fpr95"], True),
            fmt(d["near_auroc"], False),
            fmt(d["far_fpr95"], True),
            fmt(d["far_auroc"], False),
        )
    return keep_names(table)


def method_labels(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(method, config_hash) -> the method's name, followed by the config values that tell its configs in
    `rows` apart (`wise_ft alpha=0.5`) when the rows hold more than one config of it."""
    import json

    pairs = rows[["method", "config_hash", "method_config"]].drop_duplicates(["method", "config_hash"])
    out = {}
    for method, g in pairs.groupby("method", sort=False):
        configs = {h: json.loads(c) for h, c in zip(g["config_hash"], g["method_config"], strict=True)}
        keys = sorted({k for c in configs.values() for k in c})
        differ = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]
        for h, c in configs.items():
            extra = " ".join(f"{k}={json.dumps(c.get(k))}" for k in differ)
            out[(method, h)] = f"{method} {extra}" if extra else str(method)
    return out


def seed_summary_table(rows: pd.DataFrame, *, title: str | None = None) -> TextTable:
    """Mean +- std over seeds for each (method, config, shots, score); a method swept over a config key (WiSE-FT's
    alpha) shows the values that tell its configs apart."""
    keys = ["backbone", "method", "config_hash", "shots", "score_label"]
    labels = method_labels(rows)
    per_seed = group_means(labelled(rows), keys + ["seed"])
    table = TextTable(title=title, caption="mean ± std over seeds, in %; FPR95 with ID as the positive class")
    for col in ("method", "shots", "score", "seeds", "ID acc", "near FPR95", "near AUROC", "far FPR95", "far AUROC"):
        named = col in ("method", "score")
        table.add_column(col, justify="left" if named else "right", no_wrap=named)
    for key, g in per_seed.groupby(keys, sort=True):
        _, method, config, shots, score = key
        cells = [labels.get((method, config), method), str(shots), score, str(len(g))]
        for c in ("id_acc", "near_fpr95", "near_auroc", "far_fpr95", "far_auroc"):
            sd = g[c].std(ddof=0) if len(g) > 1 else 0.0
            cells.append(f"{100 * g[c].mean():.1f} ± {100 * sd:.1f}")
        table.add_row(*cells)
    return keep_names(table)


def describe_run(rows: pd.DataFrame) -> list[str]:
    """Key and provenance lines of one run for `oodbench show`."""
    r = rows.iloc[0]
    per_row = ("score", "score_config", "ood_dataset", "ood_group")
    lines = [f"{c}: {r[c]}" for c in KEY_COLUMNS if c not in per_row and c in rows.columns]
    for c in (
        "run_id",
        "created_at",
        "oodbench_version",
        "git_commit",
        "device",
        "precision",
        "weights_sha256",
        "fewshot_hash",
        "protocol",
        "fit_seconds",
        "predict_seconds",
        "peak_memory_mb",
    ):
        if c in rows.columns:
            lines.append(f"{c}: {r[c]}")
    return lines
