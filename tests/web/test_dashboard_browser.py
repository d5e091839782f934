"""The dashboard in headless Chromium (Debian's, driven by Playwright): live queue numbers, a bulk
command's progress bar advancing, its abort button; a screenshot (copied to ``docs/img`` when
``CONVEYOR_UPDATE_SCREENSHOT=1``, so that a test run leaves the checkout clean)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.web import WebServer, start_web_server
from tests.services import REQUIRE
from tests.web.works import Broken, Quick

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
QUERY = "SELECT * FROM File WHERE ecm:path STARTSWITH '/docs'"


def _missing(what: str) -> None:
    if REQUIRE:
        pytest.fail(f"required for the browser tests: {what}", pytrace=False)
    pytest.skip(f"browser tests need {what}")


@pytest.fixture
def server(node: Conveyor) -> Iterator[WebServer]:
    web = start_web_server(node, host="127.0.0.1", port=0)
    try:
        yield web
    finally:
        web.stop()


@pytest.fixture
def page(server: WebServer) -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        _missing("Debian's chromium (scripts/install-browser.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (Python)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            tab = context.new_page()
            tab.set_default_timeout(15_000)
            yield tab
            context.close()
        finally:
            browser.close()


def test_overview_shows_live_queue_numbers(node: Conveyor, server: WebServer, page: Any) -> None:
    page.goto(server.url + "/")
    completed = page.locator('tr[data-queue="quick"] td.completed')
    assert completed.inner_text() == "0"
    for i in range(5):
        node.work_manager.schedule(Quick(n=i), after_commit=False)
    page.wait_for_function(
        "() => document.querySelector('tr[data-queue=\"quick\"] td.completed').textContent === '5'"
    )
    assert page.locator("#live.ok").count() == 1
    page.locator('button.toggle[data-queue="quick"]').click()
    page.wait_for_selector('button.toggle[data-queue="quick"][data-enabled="false"]')
    assert node.work_manager.is_processing_enabled("quick") is False


@pytest.mark.skipif(
    importlib.util.find_spec("conveyor.bulk") is None, reason="conveyor.bulk is not installed"
)
def test_bulk_progress_advances_and_abort_button_stops_it(
    node: Conveyor, server: WebServer, page: Any, tmp_path: Path
) -> None:
    import tests.web.actions  # noqa: F401  (registers webSlow)
    from conveyor.bulk import BulkCommand

    node.repository.import_documents(
        {"type": "File", "name": f"d{i}", "parent_path": "/docs"} for i in range(200)
    )
    for i in range(8):
        node.work_manager.schedule(Quick(n=i), after_commit=False)
    node.work_manager.schedule(Broken(n=1), after_commit=False)
    command_id = node.bulk_service.submit(BulkCommand(action="webSlow", query=QUERY, username="alice"))

    page.goto(server.url + "/")
    row = f'tr[data-command-id="{command_id}"]'
    bar = page.locator(f"{row} progress.bulk-progress")
    page.wait_for_function(
        f"() => Number(document.querySelector('{row} progress.bulk-progress')?.value) > 0.05"
    )
    first = float(bar.get_attribute("value") or 0)
    page.wait_for_function(
        f"(v) => Number(document.querySelector('{row} progress.bulk-progress').value) > v", arg=first
    )
    assert float(bar.get_attribute("value") or 0) > first
    page.wait_for_function("() => document.querySelectorAll('#dead-letters tr').length >= 1")
    time.sleep(1.2)  # a second of chart history for the screenshot
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("CONVEYOR_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)

    page.locator(f"{row} button.abort").click()
    page.wait_for_function(f"() => document.querySelector('{row} td.state').textContent === 'ABORTED'")
    assert page.locator(f"{row} button.abort").count() == 0
    status = node.bulk_service.status(command_id)
    assert str(status.state) == "ABORTED"
    assert status.processed < 200
