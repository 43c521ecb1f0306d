"""The built site in a real browser: Debian's headless Chromium driven by Selenium.

Fails (never skips) when Chromium or chromedriver is missing: CI installs the Debian packages
`chromium` and `chromium-driver`. Leaves screenshots of the suite page, its ranked summary and its
heatmap in test-artifacts/.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from leaderboard.build import build_site
from tests.scored_runs import write_scored_run

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
EVIL = "<script>alert(1)</script>"
REPO = Path(__file__).parents[1]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def site(tmp_path_factory, demo_run) -> Path:
    """A site from the real demo zero-shot run, fine-tuned runs with per-sample scores made from it (coop
    better than zero-shot, clip_adapter unchanged), a test-time run, a run without per-sample scores named
    like markup, an older committed file, the reported numbers and a broken file."""
    from benchmark.results import read_results, scores_path, write_results
    from methods.base import config_hash

    root = tmp_path_factory.mktemp("browser")
    results = root / "results"
    results.mkdir()
    base = results / "zero_shot.parquet"
    shutil.copy(demo_run["file"], base)
    shutil.copy(scores_path(demo_run["file"]), scores_path(base))
    shutil.copytree(REPO / "results" / "reported", results / "reported")
    for shots in (1, 4, 16):
        for seed in (1, 2):
            write_scored_run(base, results / f"coop-{shots}-{seed}.parquet", method="coop", shots=shots, seed=seed,
                             ood_shift=0.1 * shots / 4, noise=0.01)  # fmt: skip
            write_scored_run(base, results / f"clip-{shots}-{seed}.parquet", method="clip_adapter", shots=shots,
                             seed=seed)  # fmt: skip
    write_scored_run(base, results / "tta.parquet", method="tta_demo", shots=0, seed=1, ood_shift=0.5,
                     protocol="test-time")  # fmt: skip
    rows = read_results(demo_run["file"])
    for shots in (1, 4, 16):
        for seed in (1, 2):
            evil = rows.assign(method=EVIL, shots=shots, seed=seed, run_id=uuid.uuid4().hex, fewshot_hash="f" * 64,
                               protocol="few-shot", scores_sha256="")  # fmt: skip
            evil["config_hash"] = config_hash(EVIL, evil["method_config"].iloc[0])
            evil["fpr95"] = (evil["fpr95"] + 0.004 * seed).clip(0, 1)
            write_results(evil, results / f"{uuid.uuid4().hex[:8]}.parquet")
    shutil.copy(REPO / "tests" / "data" / "schema1" / "coop.parquet", results / "old-coop.parquet")
    (results / "broken.parquet").write_bytes(b"not parquet")
    build_site(results_dir=results, out=root / "site", cache_dir=root / "cache")
    return root / "site"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, (
        f"{', '.join(missing)} not found: install Debian's `chromium` and `chromium-driver` "
        f"packages (apt-get install chromium chromium-driver) to run the browser tests."
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = Path(__import__("tempfile").mkdtemp(prefix="oodbench-chromium-"))
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1400,1800")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _open(driver, page: Path) -> None:
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"


def _suite(site: Path, name: str = "fmnist-ood") -> Path:
    return next(site.glob(f"suite-{name}-*.html"))


def _shown(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]


def _visible_rows(driver):
    return _shown(driver, "#entries tbody tr")


def _choose(driver, selector: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.CSS_SELECTOR, selector)).select_by_value(value)


def _screenshot(element, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert element.screenshot(str(path))
    assert path.stat().st_size > 5_000
    return path


def test_pages_load_without_console_errors(site, browser):
    from selenium.webdriver.common.by import By

    _open(browser, site / "index.html")
    skipped = browser.find_element(By.CSS_SELECTOR, "ul.skipped")
    assert "broken.parquet" in skipped.text and "not a readable Parquet file" in skipped.text
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "tr.suite-row a")]
    assert any("fmnist-ood" in h for h in links)
    for page in sorted(site.glob("*.html")):
        _open(browser, page)
        assert _errors(browser) == [], page.name


def test_the_summary_ranks_within_a_protocol_and_the_reader_chooses_the_metric(site, browser):
    from selenium.webdriver.common.by import By

    _open(browser, _suite(site))
    groups = _shown(browser, "tbody.summary-group")
    assert {g.get_attribute("data-metric") for g in groups} == {"far_auroc"}
    assert [g.get_attribute("data-protocol") for g in groups] == ["zero-shot", "few-shot", "test-time"]
    few = next(g for g in groups if g.get_attribute("data-protocol") == "few-shot")
    ranked = few.find_elements(By.CSS_SELECTOR, "tr.ranked")
    assert [r.find_element(By.CSS_SELECTOR, "td.rank").text for r in ranked][0] == "1"
    far = [float(r.find_element(By.CSS_SELECTOR, "td.key").text.split(" ")[0]) for r in ranked]
    assert far == sorted(far, reverse=True) and len(far) >= 6
    assert ranked[0].get_attribute("data-method") == "coop"  # the tuned scores moved OOD away
    test_time = next(g for g in groups if g.get_attribute("data-protocol") == "test-time")
    assert [r.get_attribute("data-method") for r in test_time.find_elements(By.CSS_SELECTOR, "tr.ranked")] == [
        "tta_demo"
    ]
    browser.execute_script("document.getElementById('summary').scrollIntoView()")
    _screenshot(browser.find_element(By.ID, "summary"), "leaderboard-summary.png")

    _choose(browser, 'select[data-summary="metric"]', "near_auroc")
    assert {g.get_attribute("data-metric") for g in _shown(browser, "tbody.summary-group")} == {"near_auroc"}
    _choose(browser, 'select[data-summary="protocol"]', "test-time")
    shown = _shown(browser, "tbody.summary-group")
    assert [g.get_attribute("data-protocol") for g in shown] == ["test-time"]
    assert _errors(browser) == []


def test_the_heatmap_greys_changes_that_are_not_significant(site, browser):
    from selenium.webdriver.common.by import By

    _open(browser, _suite(site))
    (figure,) = _shown(browser, "figure.heatmap")
    assert (figure.get_attribute("data-shots"), figure.get_attribute("data-metric")) == ("16", "far_auroc")
    rows = {r.find_element(By.TAG_NAME, "th").text: r for r in figure.find_elements(By.CSS_SELECTOR, "tbody tr")}
    coop = rows["coop"].find_elements(By.CSS_SELECTOR, "td.cell:not(.empty)")  # empty: no entry with that score
    clip = rows["clip_adapter"].find_elements(By.CSS_SELECTOR, "td.cell:not(.empty)")
    assert len(coop) == len(clip) == 3
    assert coop and all("sig" in c.get_attribute("class").split() for c in coop)
    assert all(float(c.get_attribute("data-mean")) > 0 for c in coop)
    assert clip and all("ns" in c.get_attribute("class").split() for c in clip)
    grey = clip[0].value_of_css_property("background-color")
    assert grey == "rgba(236, 238, 240, 1)"
    assert all(c.value_of_css_property("background-color") != grey for c in coop)
    assert all(c.value_of_css_property("color") == "rgba(138, 143, 150, 1)" for c in clip)  # greyed text
    untested = rows[EVIL].find_elements(By.CSS_SELECTOR, "td.cell:not(.empty)")
    assert untested and all("untested" in c.get_attribute("class").split() for c in untested)
    browser.execute_script("arguments[0].scrollIntoView()", figure)
    _screenshot(figure, "leaderboard-heatmap.png")

    _choose(browser, 'select[data-heatmap="shots"]', "1")
    (figure,) = _shown(browser, "figure.heatmap")
    assert figure.get_attribute("data-shots") == "1"
    _choose(browser, 'select[data-heatmap="metric"]', "id_acc")
    (figure,) = _shown(browser, "figure.heatmap")
    assert figure.get_attribute("data-metric") == "id_acc"
    assert _errors(browser) == []


def test_the_convention_switch_swaps_every_fpr95_column(site, browser):
    _open(browser, _suite(site))
    headers = [h.text for h in _shown(browser, "#entries th")]
    assert any("FPR95" in h and "ID positive" in h for h in headers)
    assert not any("OOD positive" in h for h in headers)
    n_cells = len(_shown(browser, "#entries td.conv-id"))
    assert n_cells > 0 and not _shown(browser, "#entries td.conv-ood")
    browser.find_element("css selector", 'input[name="convention"][value="ood"]').click()
    headers = [h.text for h in _shown(browser, "#entries th")]
    assert any("FPR95" in h and "OOD positive" in h for h in headers)
    assert not any("ID positive" in h for h in headers)
    assert len(_shown(browser, "#entries td.conv-ood")) == n_cells and not _shown(browser, "#entries td.conv-id")
    charts = _shown(browser, "figure.plotset svg.chart")
    assert any("OOD positive" in c.get_attribute("aria-label") for c in charts)

    _open(browser, _suite(site, "imagenet1k-far"))  # a reported number only in its own convention
    adaneg = next(r for r in _shown(browser, "#entries tr.reported") if r.get_attribute("data-method") == "adaneg")
    id_cells = [c.text for c in adaneg.find_elements("css selector", "td.conv-id") if c.is_displayed()]
    assert id_cells and all(t == "n/a" for t in id_cells)
    browser.find_element("css selector", 'input[name="convention"][value="ood"]').click()
    ood_cells = [c.text for c in adaneg.find_elements("css selector", "td.conv-ood") if c.is_displayed()]
    assert ood_cells == ["—", ood_cells[1]] and ood_cells[1][0].isdigit()  # no near sets in this suite; far
    assert _errors(browser) == []


def test_sorting_and_filtering_by_protocol_change_the_rows(site, browser):
    from selenium.webdriver.common.by import By

    _open(browser, _suite(site))
    everything = _visible_rows(browser)
    assert len(everything) > 10
    _choose(browser, 'select[data-filter="method"]', "coop")
    coop = _visible_rows(browser)
    assert 0 < len(coop) < len(everything)
    assert {r.get_attribute("data-method") for r in coop} == {"coop"}
    _choose(browser, 'select[data-filter="shots"]', "16")
    assert {r.get_attribute("data-shots") for r in _visible_rows(browser)} == {"16"}
    assert browser.find_element(By.ID, "shown-count").text == str(len(_visible_rows(browser)))
    for key in ("method", "shots"):
        _choose(browser, f'select[data-filter="{key}"]', "")
    assert len(_visible_rows(browser)) == len(everything)
    _choose(browser, 'select[data-filter="protocol"]', "test-time")
    assert {r.get_attribute("data-method") for r in _visible_rows(browser)} == {"tta_demo"}
    _choose(browser, 'select[data-filter="protocol"]', "")

    header = browser.find_element(By.CSS_SELECTOR, '#entries th[data-key="far_auroc"]')
    keys = [h.get_attribute("data-key") for h in browser.find_elements(By.CSS_SELECTOR, "#entries th")]
    column = keys.index("far_auroc")

    def values():
        cells = [r.find_elements(By.TAG_NAME, "td")[column] for r in _visible_rows(browser)]
        return [float(c.get_attribute("data-value")) for c in cells]

    before = values()
    header.click()
    ascending = values()
    assert ascending == sorted(ascending) and ascending != before
    header.click()
    assert values() == sorted(ascending, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    older = _shown(browser, "table.entries.older tbody tr")
    assert older and all(r.get_attribute("data-method") == "coop" for r in older)  # the committed v1 file
    assert _errors(browser) == []


def test_plots_render_with_data(site, browser):
    _open(browser, _suite(site))
    (fig,) = _shown(browser, "figure.plotset")
    assert (fig.get_attribute("data-score"), fig.get_attribute("data-group")) == ("mcm", "far")
    charts = [c for c in fig.find_elements("css selector", "svg.chart") if c.is_displayed()]
    assert len(charts) == 3  # FPR95 in the chosen convention, AUROC, ID accuracy against AUROC
    for chart in charts:
        points = chart.find_elements("css selector", "circle.pt")
        assert points and all(p.size["width"] > 0 for p in points)
    lines = [ln for chart in charts for ln in chart.find_elements("css selector", "polyline.line")]
    assert len(lines) >= 2 * 3  # three fine-tuned methods, on the FPR95 and the AUROC chart
    _choose(browser, 'select[data-plot="group"]', "near")
    assert _shown(browser, "figure.plotset")[0].get_attribute("data-group") == "near"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(ARTIFACTS / "leaderboard-suite.png"))
    assert (ARTIFACTS / "leaderboard-suite.png").stat().st_size > 10_000


def test_entry_pages_draw_roc_curves_and_histograms(site, browser):
    from selenium.webdriver.common.by import By

    _open(browser, _suite(site))
    link = next(a for a in browser.find_elements(By.CSS_SELECTOR, "#entries a.method") if a.text == "coop")
    link.click()
    (block,) = _shown(browser, "section.score-block")
    rocs = block.find_elements(By.CSS_SELECTOR, "svg.roc")
    assert len(rocs) == 1 and rocs[0].is_displayed()
    curves = rocs[0].find_elements(By.CSS_SELECTOR, "polyline.roc-line")
    assert len(curves) == 4 and all(c.size["width"] > 50 and c.size["height"] > 50 for c in curves)
    hists = block.find_elements(By.CSS_SELECTOR, "svg.hist")
    assert len(hists) == 4
    for h in hists:
        assert h.find_elements(By.CSS_SELECTOR, "g.bars.id rect") and h.find_elements(
            By.CSS_SELECTOR, "g.bars.ood rect"
        )
    first = block.get_attribute("data-score-label")
    select = browser.find_element(By.CSS_SELECTOR, "select[data-entry-score]")
    options = [o.get_attribute("value") for o in select.find_elements(By.TAG_NAME, "option")]
    _choose(browser, "select[data-entry-score]", options[-1])
    (block,) = _shown(browser, "section.score-block")
    assert block.get_attribute("data-score-label") != first
    assert len(block.find_elements(By.CSS_SELECTOR, "svg.roc polyline.roc-line")) == 4
    assert "Change against zero-shot" in block.text and "significant" in block.text
    assert _errors(browser) == []

    _open(browser, _suite(site))
    evil = next(a for a in browser.find_elements(By.CSS_SELECTOR, "#entries a.method") if a.text == EVIL)
    evil.click()
    assert "has no per-sample scores" in browser.find_element(By.CSS_SELECTOR, "p.curves-note").text
    assert not browser.find_elements(By.CSS_SELECTOR, "svg.roc")


def test_injected_markup_stays_text(site, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _open(browser, _suite(site))
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#entries a.method")]
    assert EVIL in names
    legend = browser.find_elements(By.CSS_SELECTOR, "figure.plotset g.legend-item text")
    assert any(t.get_attribute("textContent").startswith("<script>") for t in legend)
    evil_link = next(a for a in browser.find_elements(By.CSS_SELECTOR, "#entries a.method") if a.text == EVIL)
    evil_link.click()
    assert browser.find_element(By.CSS_SELECTOR, "h1 .method").text == EVIL
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    assert _errors(browser) == []


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory) -> Path:
    """The site of the committed demo study (results/), as `oodbench leaderboard build` makes it."""
    root = tmp_path_factory.mktemp("demo-site")
    build_site(results_dir=REPO / "results", out=root / "site", cache_dir=root / "cache")
    return root / "site"


def test_the_committed_demo_study_shows_its_significant_changes(demo_site, browser):
    """The summary and the heatmap of the committed demo study: every measured method is ranked, the heatmap
    at 16 shots colours the changes whose interval excludes zero and greys the others, and the verified demo
    entries carry their mark. Screenshots: test-artifacts/demo-summary.png and demo-heatmap.png."""
    from selenium.webdriver.common.by import By

    from benchmark.results import read_results, result_files

    _open(browser, _suite(demo_site))
    methods = {read_results(f)["method"].iloc[0] for f in result_files(REPO / "results")}
    ranked = {r.get_attribute("data-method") for r in browser.find_elements(By.CSS_SELECTOR, "#summary tr.ranked")}
    assert ranked == methods
    browser.execute_script("document.getElementById('summary').scrollIntoView()")
    _screenshot(browser.find_element(By.ID, "summary"), "demo-summary.png")

    (figure,) = _shown(browser, "figure.heatmap")
    assert figure.get_attribute("data-shots") == "16"
    cells = figure.find_elements(By.CSS_SELECTOR, "td.cell:not(.empty)")
    classes = [set(c.get_attribute("class").split()) for c in cells]
    assert sum("sig" in c for c in classes) > 0 and sum("ns" in c for c in classes) > 0
    browser.execute_script("arguments[0].scrollIntoView()", figure)
    _screenshot(figure, "demo-heatmap.png")
    assert browser.find_elements(By.CSS_SELECTOR, ".badge.verified")
    assert _errors(browser) == []
