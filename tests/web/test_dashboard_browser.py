"""The dashboard in headless Chromium (Debian's, driven by Playwright): live queue numbers, the
processors of each node, a bulk command's progress bar advancing, its abort button, the charts'
history drawn at page load, dead-letter errors that wrap and unfold, deleting a consumer group
after a confirmation; a screenshot (copied to ``docs/img`` when ``CONVEYOR_UPDATE_SCREENSHOT=1``,
so that a test run leaves the checkout clean)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.web import WebServer, history, start_web_server
from tests.services import REQUIRE
from tests.web.conftest import DEMO, READERS
from tests.web.works import LONG_PATH, Broken, Quick, Verbose

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
def server(node: Conveyor, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebServer]:
    monkeypatch.setattr(history, "SAMPLE_INTERVAL_S", 0.25)  # a history within a second
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
    processors = page.locator(f'#nodes tr[data-node="{node.node_id}"] .tag.processor')
    assert "bulk" in processors.all_inner_texts()  # the node runs the Bulk Service's computations
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
    node.work_manager.schedule(Verbose(n=2), after_commit=False)
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
    page.wait_for_function("() => document.querySelectorAll('#dead-letters tr').length >= 2")
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


def history_samples(server: WebServer) -> int:
    with urllib.request.urlopen(server.url + "/api/v1/history", timeout=10) as answer:
        return len(json.loads(answer.read())["samples"])


def test_charts_start_with_the_server_history(server: WebServer, page: Any) -> None:
    deadline = time.monotonic() + 30
    while history_samples(server) < 3:
        assert time.monotonic() < deadline, "the server took no history"
        time.sleep(0.1)
    page.goto(server.url + "/")
    page.wait_for_selector("#lag-chart[data-history-samples]")
    assert int(page.locator("#lag-chart").get_attribute("data-history-samples") or 0) >= 3
    series = page.locator(f'#lag-legend span[data-series="{READERS} on {DEMO.urn}"]')
    assert int(series.get_attribute("data-points") or 0) >= 4  # the past, then the page's own data
    assert series.inner_text().endswith(": 6.0")


def test_dead_letter_errors_wrap_and_unfold(node: Conveyor, server: WebServer, page: Any) -> None:
    node.work_manager.schedule(Verbose(n=7), after_commit=False)
    page.goto(server.url + "/")
    cell = page.locator("#dead-letters td.error-cell").first
    cell.wait_for()
    card = page.locator("section", has=page.locator("#dead-letters"))
    # nothing clipped: the card needs no horizontal scrolling, the long error takes several lines
    assert card.evaluate("(e) => e.scrollWidth <= e.clientWidth")
    message = cell.locator(".error-message")
    assert message.evaluate(
        "(e) => e.getBoundingClientRect().height > 2.5 * parseFloat(getComputedStyle(e).lineHeight)"
    )
    details = cell.locator("details.error-details")
    assert not details.evaluate("(e) => e.open")
    details.locator("summary").click()
    full = details.locator("pre.traceback")
    assert LONG_PATH in full.inner_text()
    assert full.evaluate("(e) => e.scrollWidth <= e.clientWidth")  # wrapped, not clipped
    time.sleep(1.5)  # the table is redrawn every second: what the operator unfolded stays open
    assert page.locator("#dead-letters details.error-details").first.evaluate("(e) => e.open")


def test_delete_consumer_group_after_confirmation(node: Conveyor, server: WebServer, page: Any) -> None:
    page.goto(server.url + "/")
    row = page.locator(f'#consumers tr[data-consumer="{READERS}"][data-stream="{DEMO.urn}"]')
    row.wait_for()
    questions: list[str] = []

    def answer(dialog: Any) -> None:
        questions.append(dialog.message)
        if len(questions) == 1:
            dialog.dismiss()
        else:
            dialog.accept()

    page.on("dialog", answer)
    row.locator("button.delete-group").click()  # dismissed: nothing happens
    assert len(questions) == 1 and READERS in questions[0] and DEMO.urn in questions[0]
    assert READERS in [g.urn for g in node.log_manager.list_consumer_groups(DEMO)]

    member = node.log_manager.subscribe(READERS, DEMO)  # a consumer runs: refused with the reason
    try:
        row.locator("button.delete-group").click()
        page.wait_for_function(
            "() => document.getElementById('errors').textContent.includes('stop its consumers')"
        )
        assert READERS in [g.urn for g in node.log_manager.list_consumer_groups(DEMO)]
    finally:
        member.close()

    row.locator("button.delete-group").click()
    row.wait_for(state="detached")
    assert node.log_manager.list_consumer_groups(DEMO) == []
    assert len(questions) == 3
