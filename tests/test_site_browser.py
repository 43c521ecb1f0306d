"""The built site in a real browser: Debian's headless Chromium driven by Selenium.

Fails (never skips) when Chromium or chromedriver is missing: CI installs the Debian packages
`chromium` and `chromium-driver`. Leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leaderboard.build import build_site

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
ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def site(tmp_path_factory, demo_run) -> Path:
    """A site from the real demo zero-shot run plus synthetic fine-tuned runs at several shots and seeds."""
    from benchmark.results import read_results, write_results

    root = tmp_path_factory.mktemp("browser")
    results = root / "results"
    results.mkdir()
    from benchmark.results import scores_path

    shutil.copy(demo_run["file"], results / "zero_shot.parquet")
    shutil.copy(scores_path(demo_run["file"]), scores_path(results / "zero_shot.parquet"))
    shutil.copytree(Path(__file__).parents[1] / "results" / "reported", results / "reported")
    base = read_results(demo_run["file"])
    import uuid

    from methods.base import config_hash

    for method, effect in (("coop", 0.02), ("clip_adapter", -0.01), (EVIL, 0.0)):
        for shots in (1, 4, 16):
            for seed in (1, 2):
                rows = base.copy()
                rows["method"], rows["shots"], rows["seed"] = method, shots, seed
                rows["config_hash"] = config_hash(method, rows["method_config"].iloc[0])
                rows["run_id"], rows["fewshot_hash"] = uuid.uuid4().hex, "f" * 64
                rows["protocol"], rows["scores_sha256"] = "few-shot", ""
                rows["fpr95"] = (rows["fpr95"] + effect * shots / 16 + 0.004 * seed).clip(0, 1)
                rows["auroc"] = (rows["auroc"] - effect * shots / 16 - 0.004 * seed).clip(0, 1)
                write_results(rows, results / f"{uuid.uuid4().hex[:8]}.parquet")
    (results / "broken.parquet").write_bytes(b"not parquet")
    build_site(results_dir=results, out=root / "site")
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


def _visible_rows(driver):
    from selenium.webdriver.common.by import By

    return [r for r in driver.find_elements(By.CSS_SELECTOR, "#entries tbody tr") if r.is_displayed()]


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


def test_sorting_and_filtering_change_the_rows(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, next(site.glob("suite-fmnist-ood-*.html")))
    everything = _visible_rows(browser)
    assert len(everything) > 10
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="method"]')).select_by_value("coop")
    coop = _visible_rows(browser)
    assert 0 < len(coop) < len(everything)
    assert {r.get_attribute("data-method") for r in coop} == {"coop"}
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="shots"]')).select_by_value("16")
    assert {r.get_attribute("data-shots") for r in _visible_rows(browser)} == {"16"}
    assert browser.find_element(By.ID, "shown-count").text == str(len(_visible_rows(browser)))
    for key in ("method", "shots"):
        Select(browser.find_element(By.CSS_SELECTOR, f'select[data-filter="{key}"]')).select_by_value("")
    assert len(_visible_rows(browser)) == len(everything)

    header = browser.find_element(By.CSS_SELECTOR, 'th[data-key="far_auroc"]')
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
    assert _errors(browser) == []


def test_plots_render_with_data(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, next(site.glob("suite-fmnist-ood-*.html")))

    def shown():
        figs = [f for f in browser.find_elements(By.CSS_SELECTOR, "figure.plotset") if f.is_displayed()]
        assert len(figs) == 1
        return figs[0]

    fig = shown()
    assert (fig.get_attribute("data-score"), fig.get_attribute("data-group")) == ("mcm", "far")
    charts = fig.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 3
    for chart in charts:
        points = chart.find_elements(By.CSS_SELECTOR, "circle.pt")
        assert points and all(p.size["width"] > 0 for p in points)
    lines = fig.find_elements(By.CSS_SELECTOR, "polyline.line")
    assert len(lines) >= 2 * 3  # three fine-tuned methods, on the FPR95 and the AUROC chart
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-plot="group"]')).select_by_value("near")
    assert shown().get_attribute("data-group") == "near"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(ARTIFACTS / "leaderboard-suite.png"))
    assert (ARTIFACTS / "leaderboard-suite.png").stat().st_size > 10_000


def test_injected_markup_stays_text(site, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _open(browser, next(site.glob("suite-fmnist-ood-*.html")))
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.method")]
    assert EVIL in names
    legend = browser.find_elements(By.CSS_SELECTOR, "figure.plotset g.legend-item text")
    assert any(t.get_attribute("textContent").startswith("<script>") for t in legend)
    evil_link = next(a for a in browser.find_elements(By.CSS_SELECTOR, "a.method") if a.text == EVIL)
    evil_link.click()
    assert browser.find_element(By.CSS_SELECTOR, "h1 .method").text == EVIL
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    assert _errors(browser) == []
