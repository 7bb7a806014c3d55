"""The Live page in a real headless Chromium, served by ``adclick dashboard``.

Chromium is Debian's (``make setup`` installs it); Playwright drives it and
never downloads a browser of its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kafka import KafkaProducer
from playwright.sync_api import expect, sync_playwright

from dashboard.ui import STATE_COLORS
from shared_logic.settings import PROJECT_ROOT, Settings
from tests.processes import start_adclick, stop, wait_for_http

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium contacts Google's
# servers at start; the tests send traffic only to 127.0.0.1.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
FINAL_COLOR, PROVISIONAL_COLOR = STATE_COLORS
# How long the browser may wait for the page to render or refresh, in ms.
PAGE_WAIT_MS = 60_000

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                reason=f"{CHROMIUM} is missing; `make setup` installs Debian's chromium")


@pytest.fixture(scope="module")
def dashboard_url(serving_api: str, dashboard_settings: Settings):
    """Start ``adclick dashboard`` pointed at the test serving API; return its URL."""
    process = start_adclick(dashboard_settings, "dashboard", log_name="dashboard")
    url = f"http://127.0.0.1:{dashboard_settings.dashboard_port}"
    try:
        wait_for_http(f"{url}/_stcore/health", process, timeout_s=60)
        yield url
    finally:
        stop(process)


@pytest.fixture
def page(tmp_path: Path):
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1800})
        try:
            yield context.new_page()
        finally:
            context.close()


def metric_value(page, label: str):
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def produce_rejected(settings: Settings, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        for number in range(count):
            producer.send(settings.topic_clicks_rejected, json.dumps({"error": "browser_test", "index": number})
                          .encode())
        producer.flush()
    finally:
        producer.close()


def test_live_page_renders_chart_in_browser(page, dashboard_url, dashboard_settings) -> None:
    page.goto(dashboard_url, wait_until="domcontentloaded")

    chart = page.get_by_test_id("stVegaLiteChart")
    expect(chart).to_be_visible(timeout=PAGE_WAIT_MS)
    expect(page.get_by_text("Clicks per minute of ad-1, last 3 h")).to_be_visible()
    expect(page.get_by_text("16 clicks in final minutes, 4 in provisional minutes")).to_be_visible()
    expect(metric_value(page, "Late clicks (speed layer)")).to_have_text("1")
    expect(page.get_by_test_id("stAlert")).to_have_count(0)
    # Vega draws the chart as SVG after the element appears: one path per bar, filled by its state.
    bars = chart.locator("g.mark-rect.role-mark path")
    expect(bars).to_have_count(4, timeout=PAGE_WAIT_MS)
    fills = sorted(bars.nth(index).get_attribute("fill") for index in range(4))
    assert fills == sorted([FINAL_COLOR] * 3 + [PROVISIONAL_COLOR])
    boxes = [bars.nth(index).bounding_box() for index in range(4)]
    assert min(box["width"] for box in boxes) >= 1, boxes
    assert min(box["height"] for box in boxes) >= 10, boxes

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)


def test_live_page_refreshes_without_reload(page, dashboard_url, dashboard_settings) -> None:
    page.goto(dashboard_url, wait_until="domcontentloaded")
    rejected = metric_value(page, "Rejected clicks (in topic)")
    expect(rejected).to_be_visible(timeout=PAGE_WAIT_MS)
    before = int(rejected.inner_text().replace(",", ""))

    produce_rejected(dashboard_settings, 3)

    # The page is not reloaded; only the Live fragment's timer can change the value.
    expect(rejected).to_have_text(str(before + 3), timeout=PAGE_WAIT_MS)
