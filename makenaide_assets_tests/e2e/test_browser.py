"""The Dagster UI of the production stack, as a person sees it: headless Chromium (Debian's chromium +
chromium-driver, driven by selenium) against the dagster-webserver that `production_stack` runs.

Screenshots go to var/screenshots/ (gitignored): asset_graph.png, signals_partitions.png,
signals_checks.png.
"""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytest_plugins = ["makenaide_assets_tests.e2e.servers"]
pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CONTRACT_ASSETS = [
    "tickers",
    "universe",
    "daily_indicators",
    "candidates",
    "gpt_verdicts",
    "timing_4h",
    "signals",
    "fills",
    "portfolio",
    "daily_report",
]
# As the machine's notes say: without the background-networking flags Chromium keeps trying to
# reach Google's hosts, which this closed network refuses.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    from makenaide_assets_tests.e2e.servers import setting

    chromium, chromedriver = setting("MAKENAIDE_TEST_CHROMIUM"), setting("MAKENAIDE_TEST_CHROMEDRIVER")
    for path in (chromium, chromedriver):
        if not Path(path).is_file():
            pytest.fail(f"{path} is missing: scripts/services installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory(prefix="mkn-chromium-") as profile:
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=ChromeService(chromedriver), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def _page_shows(driver: webdriver.Chrome, texts: list[str], screenshot: str, timeout: float = 60) -> str:
    """Wait until the visible page text holds every one of `texts`; save the screenshot either way."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def missing() -> list[str]:
        body = driver.find_element(By.TAG_NAME, "body").text
        return [t for t in texts if t not in body]

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda _: not missing())
    except TimeoutException:
        driver.save_screenshot(str(SCREENSHOTS / screenshot))
        pytest.fail(f"{driver.current_url} does not show {missing()} after {timeout:.0f}s (see {screenshot})")
    driver.save_screenshot(str(SCREENSHOTS / screenshot))
    return driver.find_element(By.TAG_NAME, "body").text


def _visible(driver: webdriver.Chrome, text: str) -> bool:
    return any(e.is_displayed() for e in driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{text}']"))


def test_asset_graph_shows_every_contract_asset(browser, production_stack, demo_scenario) -> None:
    browser.get(f"{production_stack.url}/asset-groups")
    _page_shows(browser, ["Global asset lineage", "market", "analysis", "trading"], "asset_graph.png")
    # Groups start collapsed; the context menu of the graph's background (below the group boxes,
    # which sit in the middle) expands them all, as a person would.
    canvas = browser.find_element(By.XPATH, "//*[normalize-space(text())='trading']/ancestor::*[name()='svg'][1]")
    ActionChains(browser).move_to_element_with_offset(canvas, 0, canvas.size["height"] // 3).context_click().perform()
    WebDriverWait(browser, 10).until(lambda d: _visible(d, "Expand all groups"))
    next(e for e in browser.find_elements(By.XPATH, "//*[text()='Expand all groups']") if e.is_displayed()).click()
    _page_shows(browser, CONTRACT_ASSETS, "asset_graph.png")
    hidden = [name for name in CONTRACT_ASSETS if not _visible(browser, name)]
    assert not hidden, f"asset nodes not drawn: {hidden}"


def test_signals_partitions_show_the_materialised_days(browser, production_stack, demo_scenario) -> None:
    day = demo_scenario.signal_partition
    browser.get(f"{production_stack.url}/assets/signals?view=partitions&partition={day}")
    text = _page_shows(
        browser,
        ["Materialized (2)", day, "Latest materialization", "analysis_job", "signal_count", f"signals/{day}.parquet"],
        "signals_partitions.png",
    )
    assert f"s3://{production_stack.bucket}/makenaide/signals/{day}.parquet" in text


def test_signals_checks_show_their_results(browser, production_stack, demo_scenario) -> None:
    browser.get(f"{production_stack.url}/assets/signals?view=checks")
    checks = ["signals_within_cash", "signals_min_order", "signals_one_order_per_market", "signals_kelly_within_cap"]
    text = _page_shows(browser, [*checks, "signals_account_reconciled", "Passed"], "signals_checks.png")
    assert text.count("Succeeded") >= len(checks), text
    # The first check listed is the account check, which never blocks (a held buy, never a held
    # sell); a money check, opened as a person would, says it blocks.
    WebDriverWait(browser, 30).until(lambda _: _visible(browser, "signals_within_cash"))
    next(e for e in browser.find_elements(By.XPATH, "//*[normalize-space(text())='signals_within_cash']")
         if e.is_displayed()).click()  # fmt: skip
    _page_shows(browser, ["This is a blocking asset check.", "Passed"], "signals_within_cash.png")
