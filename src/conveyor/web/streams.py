"""Streams management, as Nuxeo's ``/api/v1/management/stream``: logs, consumers and their lag and
latency, consumer position changes, a server-sent-events tail, and the stream processors.

Latency of a consumer group on a partition is the age of the oldest record it has not consumed
yet (now minus that record's watermark time), 0 when it is caught up.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from conveyor.errors import ConveyorError
from conveyor.log import LogManager, LogOffset, LogPartition, LogTailer, Name
from conveyor.log.positions import RECORD_CODECS, move_group, parse_timestamp, record_timestamp
from conveyor.record import Record, Watermark
from conveyor.web.deps import NodeDep, bad_request, not_found
from conveyor.work.inspect import message_timestamp

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor
    from conveyor.stream import StreamProcessor

__all__ = [
    "ConsumerInfo",
    "DeletedGroup",
    "PartitionLag",
    "StreamInfo",
    "all_processors",
    "consumer_infos",
    "processor_infos",
    "router",
    "stream_infos",
]

logger = logging.getLogger("conveyor.web")

router = APIRouter(prefix="/api/v1/management/stream", tags=["streams"])

ADMIN_NAMESPACE = "admin"
PROBE_GROUP = Name.of("admin", "web")
"""A group never committed: its lag is the whole log, so its ``upper`` counts the records."""


class PartitionLag(BaseModel):
    """One partition of a consumer group: position, end, lag, latency."""

    partition: int
    pos: int
    end: int
    lag: int
    latency_ms: int


class StreamInfo(BaseModel):
    """A log: partitions, records, codec, consumer groups."""

    name: str
    partitions: int
    records: int
    codec: str
    end_offsets: list[int]
    consumers: list[str]


class ConsumerInfo(BaseModel):
    """A consumer group on one stream, in total and per partition."""

    stream: str
    consumer: str
    pos: int
    end: int
    lag: int
    latency_ms: int
    partitions: list[PartitionLag]


class PositionChange(BaseModel):
    """The positions of a consumer group after a change."""

    stream: str
    consumer: str
    lag: int
    partitions: list[PartitionLag]


# --- gathering (shared with /metrics and the dashboard) -------------------------------------------


def _codec_name(node: Conveyor) -> str:
    return node.settings.log.codec or node.log_manager.default_codec.name


def stream_infos(node: Conveyor) -> list[StreamInfo]:
    """Every log of the node's log manager, sorted by name."""
    manager = node.log_manager
    codec = _codec_name(node)
    result = []
    for name in sorted(manager.list_all(), key=lambda n: n.urn):
        try:
            ends = manager.lag_per_partition(name, PROBE_GROUP)
            groups = manager.list_consumer_groups(name)
        except ConveyorError:  # deleted meanwhile
            continue
        result.append(
            StreamInfo(
                name=name.urn,
                partitions=len(ends),
                records=sum(lag.upper for lag in ends),
                codec=codec,
                end_offsets=[lag.upper_offset for lag in ends],
                consumers=sorted(g.urn for g in groups),
            )
        )
    return result


def _stream(node: Conveyor, stream: str) -> Name:
    name = Name.of_urn(stream)
    if not node.log_manager.exists(name):
        not_found(f"unknown stream {stream!r}")
    return name


def _decode_record(data: bytes, preferred: str) -> tuple[str, Any]:
    from conveyor.codec import get_codec

    for codec in (preferred, *[c for c in RECORD_CODECS if c != preferred]):
        try:
            return codec, get_codec(codec).decode(data)
        except (ConveyorError, ImportError, ValueError):
            continue
    return "bytes", data


def _admin_tailer(manager: LogManager, source: Name | LogPartition) -> LogTailer[Any]:
    # A private group per call that never commits: reading leaves no trace.
    return manager.create_tailer(Name.of(ADMIN_NAMESPACE, f"web{time.monotonic_ns()}"), source, codec="bytes")


def _latency_ms(node: Conveyor, name: Name, partition: int, pos: int, now_ms: int) -> int:
    tailer = _admin_tailer(node.log_manager, LogPartition(name, partition))
    try:
        tailer.seek(LogOffset(LogPartition(name, partition), pos))
        record = tailer.read(0.05)
    except ConveyorError as exc:  # a damaged record: the listing goes on, its latency unknown (0)
        logger.warning("latency of %s-%02d at %d unknown: %s", name.id, partition, pos, exc)
        return 0
    finally:
        tailer.close()
    if record is None:
        return 0
    timestamp = record_timestamp(record.message, _codec_name(node))
    return max(0, now_ms - timestamp) if timestamp else 0


def _partition_lags(node: Conveyor, name: Name, group: Name | str, with_latency: bool) -> list[PartitionLag]:
    now_ms = int(time.time() * 1000)
    result = []
    for index, lag in enumerate(node.log_manager.lag_per_partition(name, group)):
        latency = 0
        if with_latency and lag.lag > 0:
            latency = _latency_ms(node, name, index, lag.lower_offset, now_ms)
        result.append(
            PartitionLag(
                partition=index, pos=lag.lower_offset, end=lag.upper_offset, lag=lag.lag, latency_ms=latency
            )
        )
    return result


def consumer_infos(
    node: Conveyor, stream: str | None = None, with_latency: bool = True
) -> list[ConsumerInfo]:
    """The consumer groups of ``stream`` (every stream when None) with lag and latency."""
    manager = node.log_manager
    names = [_stream(node, stream)] if stream else sorted(manager.list_all(), key=lambda n: n.urn)
    result = []
    for name in names:
        for group in sorted(manager.list_consumer_groups(name), key=lambda g: g.urn):
            parts = _partition_lags(node, name, group, with_latency)
            result.append(
                ConsumerInfo(
                    stream=name.urn,
                    consumer=group.urn,
                    pos=sum(p.pos for p in parts),
                    end=sum(p.end for p in parts),
                    lag=sum(p.lag for p in parts),
                    latency_ms=max((p.latency_ms for p in parts), default=0),
                    partitions=parts,
                )
            )
    return result


def all_processors(node: Conveyor) -> dict[str, StreamProcessor]:
    """The node's stream processors by name, the Bulk Service's (``bulk``) included once it runs."""
    from conveyor.web.bulk import bulk_available

    found = dict(node.processors)
    if bulk_available():
        bulk = node.bulk_service.processor
        if bulk is not None:
            found.setdefault("bulk", bulk)
    return found


def processor_infos(node: Conveyor) -> list[dict[str, Any]]:
    """The node's stream processors with the status of each computation."""
    result = []
    for name, processor in sorted(all_processors(node).items()):
        result.append(
            {
                "name": name,
                "terminated": processor.is_terminated(),
                "computations": [status.to_dict() for status in processor.status().values()],
            }
        )
    return result


# --- routes --------------------------------------------------------------------------------------


@router.get("", summary="Streams, consumers and processors at a glance")
def overview(node: NodeDep) -> dict[str, Any]:
    """Every stream, every consumer group with its lag, and the stream processors of this node."""
    return {
        "streams": [s.model_dump() for s in stream_infos(node)],
        "consumers": [c.model_dump() for c in consumer_infos(node, with_latency=False)],
        "processors": processor_infos(node),
    }


@router.get("/streams", summary="The streams (logs) with partitions, records and codec")
def streams(node: NodeDep) -> list[StreamInfo]:
    """Every log: partitions, records, end offsets, codec and consumer groups."""
    return stream_infos(node)


@router.get("/consumers", summary="Consumer groups with lag and latency per partition")
def consumers(
    node: NodeDep, stream: Annotated[str | None, Query(max_length=200)] = None
) -> list[ConsumerInfo]:
    """The consumer groups of ``stream`` (of every stream when omitted)."""
    return consumer_infos(node, stream)


@router.get("/processors", summary="Stream processors and their computations")
def processors(node: NodeDep) -> list[dict[str, Any]]:
    """Per processor of this node: terminated or not, and per computation its state and counters."""
    return processor_infos(node)


def _consumer(node: Conveyor, stream: str, consumer: str) -> tuple[Name, Name]:
    name = _stream(node, stream)
    group = Name.of_urn(consumer)
    if group not in node.log_manager.list_consumer_groups(name):
        not_found(f"unknown consumer {consumer!r} on stream {stream!r}")
    return name, group


def _positions(node: Conveyor, name: Name, group: Name) -> PositionChange:
    parts = _partition_lags(node, name, group, with_latency=True)
    return PositionChange(
        stream=name.urn, consumer=group.urn, lag=sum(p.lag for p in parts), partitions=parts
    )


StreamQ = Annotated[str, Query(max_length=200, description="Stream urn, e.g. bulk/command")]
ConsumerQ = Annotated[str, Query(max_length=200, description="Consumer group urn")]


@router.get("/consumer/position", summary="Positions of a consumer group on a stream")
def position(node: NodeDep, consumer: ConsumerQ, stream: StreamQ) -> PositionChange:
    """Committed position, end, lag and latency per partition."""
    name, group = _consumer(node, stream, consumer)
    return _positions(node, name, group)


class DeletedGroup(BaseModel):
    """A consumer group deleted from a stream."""

    stream: str
    consumer: str
    deleted: bool


@router.delete(
    "/consumer",
    summary="Delete a consumer group that has no members from a stream",
    responses={
        404: {"description": "Unknown stream or consumer"},
        409: {"description": "The group has members"},
    },
)
def delete_consumer(node: NodeDep, consumer: ConsumerQ, stream: StreamQ) -> DeletedGroup:
    """Forget the group's committed positions on the stream (it leaves the stream's consumers and
    charts); 409 while the group has members reading it. The stream's records are kept."""
    name, group = _consumer(node, stream, consumer)
    deleted = node.log_manager.delete_consumer_group(group, name)
    logger.info("consumer group %s deleted from stream %s (through the management API)", group.urn, name.urn)
    return DeletedGroup(stream=name.urn, consumer=group.urn, deleted=deleted)


def _move(node: Conveyor, stream: str, consumer: str, how: str, **args: Any) -> PositionChange:
    name, group = _consumer(node, stream, consumer)
    move_group(
        node.log_manager, name, group, how, codec=_codec_name(node), timestamp_of=message_timestamp, **args
    )
    return _positions(node, name, group)


@router.put("/consumer/position/end", summary="Move a consumer group to the end of a stream")
def to_end(node: NodeDep, consumer: ConsumerQ, stream: StreamQ) -> PositionChange:
    """Skip every pending record (409 while the group has consumers running: stop them first)."""
    return _move(node, stream, consumer, "end")


@router.put("/consumer/position/beginning", summary="Move a consumer group to the start of a stream")
def to_beginning(node: NodeDep, consumer: ConsumerQ, stream: StreamQ) -> PositionChange:
    """Re-process every record still in the stream."""
    return _move(node, stream, consumer, "beginning")


@router.put("/consumer/position/offset", summary="Move a consumer group to an offset of one partition")
def to_offset(
    node: NodeDep,
    consumer: ConsumerQ,
    stream: StreamQ,
    partition: Annotated[int, Query(ge=0, le=100_000)],
    offset: Annotated[int, Query(ge=0)],
) -> PositionChange:
    """Set the committed position of one partition."""
    return _move(node, stream, consumer, "offset", partition=partition, offset=offset)


@router.put("/consumer/position/after", summary="Move a consumer group to the first record after a date")
def to_date(
    node: NodeDep,
    consumer: ConsumerQ,
    stream: StreamQ,
    date: Annotated[str, Query(max_length=64, description="ISO-8601 date, or epoch milliseconds")],
) -> PositionChange:
    """Per partition, the first record appended at or after ``date`` (the end when none)."""
    return _move(node, stream, consumer, "timestamp", timestamp_ms=parse_date(date))


def parse_date(value: str) -> int:
    """Epoch milliseconds of an ISO-8601 date (UTC when no zone) or of a number of milliseconds."""
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        bad_request(f"date: {exc}")


def describe(data: bytes, offset: LogOffset, codec: str, max_data: int = 256) -> dict[str, Any]:
    """A stored message as JSON-able fields (a Record's key, watermark, flags and data)."""
    used, value = _decode_record(data, codec)
    fields: dict[str, Any] = {
        "offset": str(offset),
        "partition": offset.partition.partition,
        "position": offset.offset,
        "codec": used,
        "size": len(data),
    }
    if isinstance(value, Record):
        watermark = Watermark.of_value(value.watermark)
        payload = value.data or b""
        fields |= {
            "key": value.key,
            "timestamp": watermark.timestamp,
            "flags": int(value.flags),
            "size": len(payload),
        }
        data = payload
    try:
        fields["data"] = data[:max_data].decode("utf-8")
    except UnicodeDecodeError:
        fields["data_base64"] = base64.b64encode(data[:max_data]).decode("ascii")
    return fields


@router.get(
    "/cat",
    summary="Tail a stream as server-sent events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def cat(
    node: NodeDep,
    stream: StreamQ,
    partition: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    rewind: Annotated[int, Query(ge=0, le=10_000, description="Records before the end, per partition")] = 1,
    from_group: Annotated[
        str | None, Query(max_length=200, description="Start at this group's position")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10,
    timeout: Annotated[float, Query(ge=0, le=300, description="Seconds before the stream ends")] = 10.0,
) -> StreamingResponse:
    """One ``record`` event per record (JSON), then an ``end`` event after ``limit`` records or
    ``timeout`` seconds; an ``error`` event (and no more) when the log cannot be read further."""
    name = _stream(node, stream)
    manager = node.log_manager
    size = manager.size(name)
    if partition is not None and partition >= size:
        bad_request(f"partition {partition} out of range: {stream!r} has {size}")
    start_group: Name | None = Name.of_urn(from_group) if from_group else None
    if start_group is not None and start_group not in manager.list_consumer_groups(name):
        not_found(f"unknown consumer {from_group!r} on stream {stream!r}")
    source: Name | LogPartition = name if partition is None else LogPartition(name, partition)
    tailer = _admin_tailer(manager, source)
    lags = manager.lag_per_partition(name, start_group or PROBE_GROUP)
    for part in tailer.assignments():
        lag = lags[part.partition]
        target = lag.lower_offset if start_group else max(0, lag.upper_offset - rewind)
        tailer.seek(LogOffset(part, target))
    codec = _codec_name(node)

    def events() -> Iterator[str]:
        sent = 0
        deadline = time.monotonic() + timeout
        try:
            yield ": tail of " + name.urn + "\n\n"
            while sent < limit and (remaining := deadline - time.monotonic()) > 0:
                try:
                    record = tailer.read(min(remaining, 0.5))
                except ConveyorError as exc:  # damage in the log: say so, after what could be read
                    error = {"records": sent, "error": f"{type(exc).__name__}: {exc}"}
                    yield f"event: error\ndata: {json.dumps(error)}\n\n"
                    return
                if record is None:
                    yield ": waiting\n\n"
                    continue
                sent += 1
                yield f"event: record\ndata: {json.dumps(describe(record.message, record.offset, codec))}\n\n"
            yield f"event: end\ndata: {json.dumps({'records': sent})}\n\n"
        finally:
            tailer.close()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
        background=BackgroundTask(tailer.close),  # also when the stream never started
    )
