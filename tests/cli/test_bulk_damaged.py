"""``bulk status`` / ``bulk abort`` of a command whose stored status cannot be decoded (issue 14 item 6)."""

from __future__ import annotations

import json
from pathlib import Path

from conveyor import Conveyor
from tests.cli.test_commands import invoke, write_config


def test_bulk_status_shows_a_damaged_status_and_abort_replaces_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="[bulk]\nprocessing = false\n")
    with Conveyor.from_config(config) as node:
        node.kv_store("bulk").put("status:broken-1", b"{not json")

    shown = invoke("bulk", "status", "broken-1", "--config", str(config), code=1)
    data = json.loads(shown.stdout)
    assert data["damaged"] is True and data["state"] == "UNKNOWN" and data["size"] == 9
    assert data["error_message"].startswith("undecodable status (9 bytes at key status:broken-1)")
    assert "conveyor bulk abort broken-1" in " ".join(shown.stderr.split())
    assert "Traceback" not in shown.output
    waited = invoke("bulk", "wait", "broken-1", "--timeout", "1", "--config", str(config), code=1)
    assert "undecodable status" in " ".join(waited.stderr.split())

    aborted = invoke("bulk", "abort", "broken-1", "--config", str(config))
    status = json.loads(aborted.stdout)
    assert status["state"] == "ABORTED" and "damaged stored status" in status["error_message"]
    assert "replaced with an ABORTED status" in " ".join(aborted.stderr.split())
    again = json.loads(invoke("bulk", "status", "broken-1", "--config", str(config)).stdout)
    assert again["state"] == "ABORTED"
