"""``GET /metrics``: Prometheus text read from the node at scrape time (nothing is sampled between
scrapes). The names (all prefixed ``conveyor_``) are listed in :data:`METRICS` and in
``docs/operations.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from conveyor.web.deps import NodeDep

if TYPE_CHECKING:
    from conveyor.runtime.node import Conveyor

__all__ = ["METRICS", "NodeCollector", "registry_for", "router"]

logger = logging.getLogger("conveyor.web")
router = APIRouter(tags=["metrics"])

METRICS: dict[str, str] = {
    "conveyor_node_up": "1 while the node serving the metrics runs (label node).",
    "conveyor_node_start_time_seconds": "When the node started (epoch seconds).",
    "conveyor_cluster_nodes": "Nodes with a recent heartbeat.",
    "conveyor_cluster_node_heartbeat_age_seconds": "Seconds since each node's last heartbeat.",
    "conveyor_work_queue_scheduled": "Works waiting in a queue.",
    "conveyor_work_queue_running": "Works running now in a queue.",
    "conveyor_work_queue_completed_total": (
        "Works completed in a queue, whatever their outcome (failed and dead-lettered ones included)."
    ),
    "conveyor_work_queue_canceled_total": "Works canceled in a queue.",
    "conveyor_work_queue_processing_enabled": "1 when this node runs the queue, 0 when switched off.",
    "conveyor_work_queue_worker_restarts_total": (
        "Worker threads of the queue an unexpected error ended on this node, replaced (see the node's log)."
    ),
    "conveyor_work_dead_letters": "Works in the work/dlq stream not re-run yet.",
    "conveyor_work_queue_failed_total": "Works of a queue that raised an error on their last attempt.",
    "conveyor_work_queue_dead_lettered_total": (
        "Works of a queue that went to the dead letters (failed, undecodable, or killed their process)."
    ),
    "conveyor_stream_partitions": "Partitions of a stream.",
    "conveyor_stream_appended_total": "Records appended to a stream (sum of end offsets).",
    "conveyor_stream_group_end": "End offset of a stream, summed over partitions (per consumer group).",
    "conveyor_stream_group_pos": "Committed position of a consumer group, summed over partitions.",
    "conveyor_stream_group_consumed_total": "Same as group_pos, as a counter for rate().",
    "conveyor_stream_group_lag": "Records a consumer group has not consumed yet.",
    "conveyor_stream_group_latency_seconds": (
        "Age of the oldest record a group has not consumed (max over partitions)."
    ),
    "conveyor_stream_partition_lag": "Lag of a consumer group on one partition.",
    "conveyor_computation_records_total": "Records processed by a computation.",
    "conveyor_computation_failures_total": "Records a computation failed for good.",
    "conveyor_computation_retries_total": "Retries of a computation.",
    "conveyor_computation_skipped_total": "Records skipped by a computation's policy.",
    "conveyor_computation_dead_letters_total": "Records a computation sent to its dead-letter stream.",
    "conveyor_computation_threads_running": "Threads running a computation.",
    "conveyor_computation_up": "1 while a computation runs, 0 once stopped, failed or terminated.",
    "conveyor_stream_failures_total": (
        "Failures of every computation of the node (Nuxeo's nuxeo.streams.failure)."
    ),
    "conveyor_bulk_commands": "Bulk commands known, by state.",
    "conveyor_bulk_command_processed": "Documents processed by a running bulk command.",
    "conveyor_bulk_command_total": "Documents a running bulk command selected (0 while scrolling).",
    "conveyor_bulk_command_errors": "Documents in error in a running bulk command.",
    "conveyor_bulk_command_progress_ratio": "Progress of a running bulk command, 0..1.",
    "conveyor_web_scrape_errors": "1 for a section of this scrape that failed (see the node's log).",
}


def _gauge(name: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name], labels=labels)


def _counter(name: str, labels: list[str]) -> CounterMetricFamily:
    # prometheus-client appends _total itself
    return CounterMetricFamily(name.removesuffix("_total"), METRICS[name], labels=labels)


class NodeCollector(Collector):
    """Reads a node's queues, streams, computations and bulk commands at each scrape."""

    def __init__(self, node: Conveyor) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        errors = _gauge("conveyor_web_scrape_errors", ["section"])
        for section, collect in (
            ("node", self._node),
            ("work", self._work),
            ("streams", self._streams),
            ("computations", self._computations),
            ("bulk", self._bulk),
        ):
            try:
                yield from list(collect())
            except Exception:  # one broken backend must not hide the other metrics
                logger.exception("metrics: cannot collect %s", section)
                errors.add_metric([section], 1)
        yield errors

    def _node(self) -> Iterator[Metric]:
        from conveyor.web.nodes import node_infos

        node_id = self.node.node_id
        up = _gauge("conveyor_node_up", ["node"])
        up.add_metric([node_id], 1)
        start = _gauge("conveyor_node_start_time_seconds", ["node"])
        start.add_metric([node_id], self.node.started_at)
        infos = node_infos(self.node)
        count = _gauge("conveyor_cluster_nodes", [])
        count.add_metric([], len(infos))
        age = _gauge("conveyor_cluster_node_heartbeat_age_seconds", ["node"])
        for info in infos:
            age.add_metric([info.node_id], info.heartbeat_age_s)
        yield from (up, start, count, age)

    def _work(self) -> Iterator[Metric]:
        from conveyor.web.work import dead_letter_count, queue_infos

        labels = ["node", "queue"]
        scheduled = _gauge("conveyor_work_queue_scheduled", labels)
        running = _gauge("conveyor_work_queue_running", labels)
        completed = _counter("conveyor_work_queue_completed_total", labels)
        canceled = _counter("conveyor_work_queue_canceled_total", labels)
        enabled = _gauge("conveyor_work_queue_processing_enabled", labels)
        restarts = _counter("conveyor_work_queue_worker_restarts_total", labels)
        failed = _counter("conveyor_work_queue_failed_total", labels)
        lettered = _counter("conveyor_work_queue_dead_lettered_total", labels)
        for queue in queue_infos(self.node):
            key = [self.node.node_id, queue.id]
            scheduled.add_metric(key, queue.scheduled)
            running.add_metric(key, queue.running)
            completed.add_metric(key, queue.completed)
            canceled.add_metric(key, queue.canceled)
            enabled.add_metric(key, 1 if queue.processing else 0)
            restarts.add_metric(key, queue.worker_restarts)
            failed.add_metric(key, queue.failed)
            lettered.add_metric(key, queue.dead_lettered)
        dead = _gauge("conveyor_work_dead_letters", [])
        dead.add_metric([], dead_letter_count(self.node))
        yield from (scheduled, running, completed, canceled, enabled, restarts, failed, lettered, dead)

    def _streams(self) -> Iterator[Metric]:
        from conveyor.web.streams import consumer_infos, stream_infos

        partitions = _gauge("conveyor_stream_partitions", ["stream"])
        appended = _counter("conveyor_stream_appended_total", ["stream"])
        for info in stream_infos(self.node):
            partitions.add_metric([info.name], info.partitions)
            appended.add_metric([info.name], sum(info.end_offsets))
        labels = ["stream", "group"]
        end = _gauge("conveyor_stream_group_end", labels)
        pos = _gauge("conveyor_stream_group_pos", labels)
        consumed = _counter("conveyor_stream_group_consumed_total", labels)
        lag = _gauge("conveyor_stream_group_lag", labels)
        latency = _gauge("conveyor_stream_group_latency_seconds", labels)
        part_lag = _gauge("conveyor_stream_partition_lag", [*labels, "partition"])
        for consumer in consumer_infos(self.node):
            key = [consumer.stream, consumer.consumer]
            end.add_metric(key, consumer.end)
            pos.add_metric(key, consumer.pos)
            consumed.add_metric(key, consumer.pos)
            lag.add_metric(key, consumer.lag)
            latency.add_metric(key, consumer.latency_ms / 1000.0)
            for part in consumer.partitions:
                part_lag.add_metric([*key, str(part.partition)], part.lag)
        yield from (partitions, appended, end, pos, consumed, lag, latency, part_lag)

    def _computations(self) -> Iterator[Metric]:
        labels = ["processor", "computation"]
        counters = {
            field: _counter(f"conveyor_computation_{field}_total", labels)
            for field in ("records", "failures", "retries", "skipped", "dead_letters")
        }
        threads = _gauge("conveyor_computation_threads_running", labels)
        up = _gauge("conveyor_computation_up", labels)
        failures = 0
        from conveyor.web.streams import all_processors

        for name, processor in sorted(all_processors(self.node).items()):
            for status in processor.status().values():
                key = [name, status.name]
                for field, family in counters.items():
                    family.add_metric(key, getattr(status, field))
                threads.add_metric(key, status.running_threads)
                up.add_metric(key, 1 if status.running else 0)
                failures += status.failures
        total = _counter("conveyor_stream_failures_total", [])
        total.add_metric([], failures)
        yield from (*counters.values(), threads, up, total)

    def _bulk(self) -> Iterator[Metric]:
        from conveyor.web.bulk import bulk_available, statuses_data

        if not bulk_available():
            return
        by_state = _gauge("conveyor_bulk_commands", ["state"])
        labels = ["command_id", "action"]
        processed = _gauge("conveyor_bulk_command_processed", labels)
        total = _gauge("conveyor_bulk_command_total", labels)
        errors = _gauge("conveyor_bulk_command_errors", labels)
        progress = _gauge("conveyor_bulk_command_progress_ratio", labels)
        counts: dict[str, int] = {}
        for status in statuses_data(self.node):
            counts[status["state"]] = counts.get(status["state"], 0) + 1
            if status["state"] in ("COMPLETED", "ABORTED", "UNKNOWN"):
                continue  # finished commands would grow the series without bound
            key = [status["command_id"], status.get("action") or ""]
            processed.add_metric(key, status.get("processed") or 0)
            total.add_metric(key, status.get("total") or 0)
            errors.add_metric(key, status.get("error_count") or 0)
            progress.add_metric(key, status.get("progress") or 0.0)
        for state, count in sorted(counts.items()):
            by_state.add_metric([state], count)
        yield from (by_state, processed, total, errors, progress)


def registry_for(node: Conveyor) -> CollectorRegistry:
    """A registry holding only the node's collector (not the process-wide default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry


def _registry(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return registry


RegistryDep = Annotated[CollectorRegistry, Depends(_registry)]


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(registry: RegistryDep, node: NodeDep) -> Response:
    """Queue sizes, stream lag and latency per group, computation failures, bulk progress, node up."""
    started = time.perf_counter()
    body = generate_latest(registry)
    logger.debug("metrics of %s scraped in %.3f s", node.node_id, time.perf_counter() - started)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
