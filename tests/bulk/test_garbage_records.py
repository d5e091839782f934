"""Garbage on the bulk streams is skipped, never retried for minutes (issue 14: no bad record
halts a reader). Before, one undecodable record on ``bulk/status`` was retried by its stop-on-failure
policy for about 15 minutes, then stopped the status computation: every command stayed SCHEDULED."""

from __future__ import annotations

import logging

import pytest

from conveyor.bulk import BulkCommand, BulkService, BulkState
from conveyor.bulk.computations import COMMAND_STREAM, STATUS_STREAM
from conveyor.codec import BytesCodec, get_codec
from conveyor.log import Name, open_log_manager
from conveyor.record import Record
from conveyor.repository import Repository
from tests.bulk.conftest import CODEC, ServiceFactory, import_docs


def _garbage(log_url: str, stream: str) -> int:
    """On every partition of ``stream``: bytes no codec decodes, then a Record carrying junk; the
    number of partitions. Written through a manager of its own (one codec per log and manager)."""
    name = Name.of_urn(stream)
    with open_log_manager(log_url, default_codec=CODEC) as other:
        raw = other.appender(name, BytesCodec())
        partitions = other.size(name)
        for partition in range(partitions):
            raw.append(partition, b"\xff\x00 not a record \x9c")
            raw.append(partition, get_codec(CODEC).encode(Record(f"junk{partition}", b"{not json", 0)))
    return partitions


@pytest.mark.parametrize("stream", [STATUS_STREAM, COMMAND_STREAM])
def test_garbage_on_a_bulk_stream_holds_no_command_up(
    make_service: ServiceFactory,
    log_url: str,
    repo: Repository,
    stream: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="conveyor")
    service: BulkService = make_service()
    import_docs(repo, 30)
    partitions = _garbage(log_url, stream)
    command_id = service.submit(BulkCommand("setProperties", "SELECT * FROM File", params={"dc:source": "x"}))
    assert service.wait(command_id, 30), f"a command behind garbage on {stream} never completed"
    status = service.status(command_id)
    assert status.state is BulkState.COMPLETED and status.processed == 30
    assert service.processor is not None and not service.processor.is_terminated()
    failures = [r.getMessage() for r in caplog.records if "failed after" in r.getMessage()]
    assert len(failures) >= 2 * partitions, failures  # each one said
    assert all("1 attempt(s)" in message for message in failures), failures  # and never retried
