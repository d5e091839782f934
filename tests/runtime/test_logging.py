"""Structured logging: text, key=value or JSON lines carrying the node id and the block's context."""

from __future__ import annotations

import json
import logging

import pytest

from conveyor.runtime.logging import configure_logging, log_context
from conveyor.work import Work, open_work_manager

logger = logging.getLogger("conveyor.test.logging")


def test_json_lines_carry_node_and_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("node-7", "json", "INFO")
    with log_context(queue="pictures", work_id="w-1"):
        logger.info("ran %s", "thumbnail")
        with log_context(key="doc-9"):
            logger.warning("slow")
    logger.info("outside")
    logger.debug("hidden at INFO")
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [r["msg"] for r in records] == ["ran thumbnail", "slow", "outside"]
    first, second, third = records
    assert first["node"] == "node-7" and first["queue"] == "pictures" and first["work_id"] == "w-1"
    assert first["level"] == "INFO" and first["logger"] == "conveyor.test.logging"
    assert second["key"] == "doc-9" and second["queue"] == "pictures"
    assert "queue" not in third and third["node"] == "node-7"


def test_key_value_lines_quote_what_needs_it(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("n1", "kv", "INFO")
    with log_context(computation="demo-count"):
        logger.error("failed: a=b")
    line = capsys.readouterr().err.strip()
    assert line.startswith("ts=")
    assert " level=ERROR logger=conveyor.test.logging node=n1 computation=demo-count " in line
    assert line.endswith('msg="failed: a=b"')


def test_exceptions_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("n1", "json", "INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it broke")
    record = json.loads(capsys.readouterr().err)
    assert record["msg"] == "it broke" and "ValueError: boom" in record["exc"]


def test_text_format_and_reconfiguring_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("n1", "json", "INFO")
    configure_logging("n2", "text", "WARNING")
    with log_context(queue="q"):
        logger.info("dropped")
        logger.warning("kept")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1  # one handler, at the new level
    assert "WARNING conveyor.test.logging: kept [n2 queue=q]" in lines[0]


class LoggingWork(Work):
    """Logs one line while it runs."""

    category = "logging-test"
    note: str = ""

    def work(self) -> None:
        logging.getLogger("conveyor.test.work").warning("working on %s", self.note)


def test_a_running_work_tags_its_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("node-w", "json", "INFO")
    manager = open_work_manager("threads://")
    manager.start()
    try:
        manager.schedule(LoggingWork(id="w-42", note="x"), after_commit=False)
        assert manager.await_completion(timeout=10)
    finally:
        manager.shutdown(5)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "working on" in line]
    assert len(lines) == 1
    assert (lines[0]["node"], lines[0]["work_id"], lines[0]["work_type"]) == ("node-w", "w-42", "LoggingWork")
    assert lines[0]["category"] == "logging-test"
