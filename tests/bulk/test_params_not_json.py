"""Bulk command params that JSON cannot hold are refused at submit, with BulkValidationError.

NaN and Infinity were written as such (not JSON) and the documents got null instead; params
nested deeper than the encoder can go raised a bare RecursionError.
"""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.bulk import BulkCommand
from conveyor.errors import BulkValidationError


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("inf"), "not JSON-serializable: Out of range float values"),
        (float("nan"), "not JSON-serializable: Out of range float values"),
        ([1.0, {"b": -float("inf")}], "not JSON-serializable: Out of range float values"),
        (_deep(100_000), "not JSON-serializable: nested too deeply"),
    ],
)
def test_params_json_cannot_hold_are_refused(value: object, message: str) -> None:
    command = BulkCommand("setProperties", "SELECT * FROM File", params={"dc:x": value})
    with pytest.raises(BulkValidationError, match=message):
        command.encode()


def test_params_json_can_hold_still_encode() -> None:
    command = BulkCommand("setProperties", "SELECT * FROM File", params={"dc:x": 1e308, "dc:y": _deep(50)})
    assert BulkCommand.decode(command.encode()).params == command.params
