"""What the suite and entry pages show: the ranked summary within protocols, the heatmap of tested changes,
both FPR95 conventions, cost, score variants, older versions apart, curves from the per-sample scores."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.hashing import sha256_file
from benchmark.results import read_results, read_scores, registered_suites, score_column, scores_path, write_results
from benchmark.results import write_scores as write_sidecar
from leaderboard.aggregate import all_entries, normalise
from leaderboard.build import build_site, significance_requests
from leaderboard.collect import collect
from leaderboard.overview import heatmaps, ranked_summary
from leaderboard.significance import Cache, run_requests
from methods.base import config_hash
from tests.scored_runs import write_scored_run

REPO = Path(__file__).parents[1]
VARIANT = '{"T":0.01}'


def _variant_run(src: Path, out: Path) -> Path:
    """A copy of run `src` whose energy rows and sidecar column say T=0.01: a score variant."""
    rows, side = read_results(src), read_scores(scores_path(src))
    energy = rows["score"] == "energy"
    old = score_column("energy", rows.loc[energy, "score_config"].iloc[0])
    rows.loc[energy, "score_config"] = VARIANT
    side = side.rename(columns={old: score_column("energy", VARIANT)})
    sidecar = write_sidecar(side, scores_path(out))
    rows = rows.assign(run_id=rows["run_id"].iloc[0][:-4] + "beef", scores_sha256=sha256_file(sidecar), seed=7)
    return write_results(rows, out)


@pytest.fixture(scope="module")
def results(tmp_path_factory, demo_run) -> Path:
    root = tmp_path_factory.mktemp("pages") / "results"
    (root / "zero_shot").mkdir(parents=True)
    base = root / "zero_shot" / "demo.parquet"
    shutil.copy(demo_run["file"], base)
    shutil.copy(scores_path(demo_run["file"]), scores_path(base))
    for shots in (4, 16):
        for seed in (1, 2):
            write_scored_run(base, root / "coop" / f"k{shots}-s{seed}.parquet", method="coop", shots=shots, seed=seed,
                             ood_shift=0.3, noise=0.02)  # fmt: skip
            write_scored_run(base, root / "clip_adapter" / f"k{shots}-s{seed}.parquet", method="clip_adapter",
                             shots=shots, seed=seed)  # fmt: skip  # the zero-shot scores unchanged: no change at all
    write_scored_run(base, root / "tta" / "s1.parquet", method="tta_demo", shots=0, seed=1, ood_shift=0.6,
                     protocol="test-time")  # fmt: skip
    _variant_run(root / "coop" / "k16-s1.parquet", root / "coop" / "k16-s7-variant.parquet")
    rows = read_results(base).assign(method="linear_probe", shots=16, protocol="few-shot", scores_sha256="",
                                     run_id="nosidecar01", fewshot_hash="f" * 64)  # fmt: skip
    rows["config_hash"] = config_hash("linear_probe", rows["method_config"].iloc[0])  # the hash names the method
    write_results(rows, root / "linear_probe" / "no-scores.parquet")
    for method in ("zero_shot", "coop"):  # files of result schema 1: an older version
        old = REPO / "tests" / "data" / "schema1" / f"{method}.parquet"
        (root / "old").mkdir(exist_ok=True)
        shutil.copy(old, root / "old" / f"{method}.parquet")
    shutil.copytree(REPO / "results" / "reported", root / "reported")
    return root


@pytest.fixture(scope="module")
def site(results, tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    out = results.parent / "site"
    report = build_site(results_dir=results, out=out, cache_dir=cache)
    assert not report.skipped, report.skipped
    return {"out": out, "report": report, "cache": cache}


@pytest.fixture(scope="module")
def entries(results, site) -> tuple[pd.DataFrame, dict]:
    inputs = collect(results)
    table = all_entries(normalise(inputs.rows), inputs.reported, verification={}, suites=registered_suites())
    found = run_requests(
        significance_requests(table, results_dir=results), cache=Cache(site["cache"] / "site" / "significance")
    )
    return table, found


def _suite(site: dict, name: str = "fmnist-ood") -> str:
    return next(site["out"].glob(f"suite-{name}-*.html")).read_text()


def test_changes_are_tested_once_and_then_read_from_the_cache(results, site, tmp_path):
    report = site["report"]
    # coop: 2 shot counts x 3 scores, plus its energy variant has no zero-shot counterpart; clip_adapter 2 x 3;
    # the test-time entry 3; linear_probe has no per-sample scores
    assert report.n_compared == 6 + 6 + 3 and report.n_cached == 0
    # clip_adapter's runs all hold the zero-shot scores unchanged (the same bytes), so its 4- and 16-shot
    # comparisons read the same files and share their cache entries
    assert len(list((site["cache"] / "site" / "significance").rglob("*.json"))) == report.n_compared - 3
    start = time.perf_counter()
    again = build_site(results_dir=results, out=tmp_path / "site", cache_dir=site["cache"])
    assert again.n_compared == again.n_cached == report.n_compared
    assert time.perf_counter() - start < report.seconds  # the cache spares the bootstrap


def test_the_summary_ranks_only_within_a_protocol(entries):
    table, found = entries
    current = table[table["current"] & (table["suite"] == "fmnist-ood")]
    summary = ranked_summary(current, found)
    far = [t for t in summary["tables"] if t["metric"] == "far_auroc"]
    groups = {t["group"]: t for t in far}
    assert set(groups) == {"zero-shot", "few-shot", "test-time"}
    assert [r["method"] for r in groups["zero-shot"]["rows"]] == ["zero_shot"]
    assert [r["method"] for r in groups["test-time"]["rows"]] == ["tta_demo"]  # better than zero-shot, ranked apart
    assert groups["test-time"]["rows"][0]["rank"] == 1 and groups["zero-shot"]["rows"][0]["rank"] == 1
    few = groups["few-shot"]["rows"]
    assert sorted((r["method"], r["shots"]) for r in few) == [
        ("clip_adapter", 4),
        ("clip_adapter", 16),
        ("coop", 4),
        ("coop", 16),
        ("linear_probe", 16),
    ]
    values = [r["far_auroc"] for r in few]
    assert values == sorted(values, reverse=True) and [r["rank"] for r in few] == sorted(r["rank"] for r in few)
    # the best entry per method and shots over its score variants, with its tested change
    coop16 = next(r for r in few if (r["method"], r["shots"]) == ("coop", 16))
    best = current[(current["method"] == "coop") & (current["shots"] == 16)]["far_auroc"].max()
    assert coop16["far_auroc"] == best
    assert coop16["delta"]["tested"] and coop16["delta"]["significant"] and coop16["delta"]["mean"] > 0
    lp = next(r for r in few if r["method"] == "linear_probe")
    assert lp["delta"]["tested"] is False
    # reported numbers: AdaNeg adapts at test time, LAPT trained on collected images; neither is zero-shot
    imagenet = ranked_summary(table[table["suite"] == "imagenet1k-far"], found)
    methods = {t["group"]: {r["method"] for r in t["rows"]} for t in imagenet["tables"] if t["metric"] == "far_auroc"}
    assert methods["test-time"] == {"adaneg"} and methods["zero-shot + extra data"] == {"lapt"}
    assert methods["zero-shot"] == {"zero_shot"}


def test_the_heatmap_greys_changes_whose_interval_includes_zero(entries):
    table, found = entries
    maps = heatmaps(table[table["current"]], found)
    assert maps["shots"] == [0, 4, 16] and maps["default_shots"] == 16
    far16 = next(m for m in maps["maps"] if (m["shots"], m["metric"]) == (16, "far_auroc"))
    # the energy variant has no zero-shot run to compare with, so it has no column
    assert far16["scores"] == ["energy", "entropy", "gl_mcm", "max_logit", "mcm", "msp"]
    rows = {r["method"]: r["cells"] for r in far16["rows"]}
    coop = dict(zip(far16["scores"], rows["coop"], strict=True))
    assert all(coop[s]["tested"] and coop[s]["significant"] and coop[s]["low"] > 0 for s in ("energy", "mcm", "msp"))
    clip = [c for c in rows["clip_adapter"] if c is not None]
    assert clip and all(c["tested"] and not c["significant"] and c["mean"] == 0 for c in clip)
    assert all(c is None or not c["tested"] for c in rows["linear_probe"])  # no per-sample scores: untested
    assert far16["n_tested"] == 6 and far16["n_significant"] == 3


def test_the_suite_page_shows_conventions_cost_variants_and_older_versions_apart(site):
    page = _suite(site)
    main, _, older = page.partition('<h2 id="older">')
    assert older, "older versions have their own section"
    assert "suite v1, result schema 1" in older and "suite v1, result schema 1" not in main
    current_rows = re.findall(r'<tr class="entry measured"', main)
    assert len(current_rows) == len(re.findall(r'data-kind="measured"', main))
    assert len(re.findall(r'data-method="zero_shot"\s+data-score_label', main)) == 6  # the demo run's 6 scores
    # every FPR95 column names its convention, both conventions are on the page
    assert main.count('class="sort num conv-id">near FPR95') == 1 and main.count('conv-ood">near FPR95') == 1
    assert 'name="convention" value="ood"' in main
    # cost and protocol columns, score variants marked
    assert ">fit s</th>" in main and ">peak MB</th>" in main and "cpu:" in main
    assert ">test-time</span>" in main
    assert "energy:T=0.01" in main and 'class="badge variant"' in main
    # heatmap cells: significant coloured, the others greyed or marked untested
    assert re.search(r'class="cell sig" style="background-color: rgba\(26, 127, 55', main)
    assert 'class="cell ns"' in main and 'class="cell untested"' in main


def test_reported_fpr95_is_shown_only_in_its_convention(site):
    page = _suite(site, "imagenet1k-far")
    adaneg = re.search(r'<tr class="entry reported"[^>]*data-method="adaneg".*?</tr>', page, re.S).group(0)
    id_cells = re.findall(r'class="conv-id">(.*?)</td>', adaneg, re.S)
    ood_cells = re.findall(r'class="conv-ood">(.*?)</td>', adaneg, re.S)
    assert all("n/a" in c for c in id_cells[1:])  # far FPR95, ID positive: the paper did not report it
    assert any(re.match(r"\d+\.\d", c) for c in ood_cells)
    assert "test-time" in adaneg  # AdaNeg adapts over the test stream


def test_entry_pages_draw_curves_or_say_why_not(site, results):
    pages = {p: p.read_text() for p in site["out"].glob("entry-*.html")}
    coop = next(t for t in pages.values() if '<h1><span class="method">coop</span>' in t and "k16" in t)
    first = coop.split('<section class="score-block"')[1]
    assert first.count('class="roc-line"') == 4  # one ROC curve per OOD set of the demo suite
    assert first.count('class="chart hist"') == 4
    assert "<h3>Change against zero-shot</h3>" in first and "significant" in first
    no_scores = next(t for t in pages.values() if ">linear_probe</span>" in t)
    assert "this entry has no per-sample scores" in no_scores and 'class="roc-line"' not in no_scores
    old = next(t for t in pages.values() if "older version</span>" in t)
    assert "not the current version" in old


def test_a_results_folder_of_old_files_only_builds(tmp_path):
    results = tmp_path / "results"
    for method in ("zero_shot", "coop"):
        (results / method).mkdir(parents=True)
        shutil.copy(REPO / "tests" / "data" / "schema1" / f"{method}.parquet", results / method / "old.parquet")
    report = build_site(results_dir=results, out=tmp_path / "site", cache_dir=tmp_path / "cache")
    assert not report.skipped and report.n_compared == 0
    page = _suite({"out": tmp_path / "site"})
    assert "No current entries to rank" in page and "suite v1, result schema 1" in page
    assert report.n_entries > 0
