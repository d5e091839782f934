"""Property test: random sequences of append / read / commit / seek / reopen agree with a model."""

from __future__ import annotations

import itertools
import os
import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.log import LogManager, LogOffset, LogPartition, Name, open_log_manager

LOG = Name.of("model", "log")
PARTITIONS = 3
_counter = itertools.count()

operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, PARTITIONS - 1), st.binary(max_size=64)),
        st.tuples(
            st.just("append_many"),
            st.lists(st.tuples(st.integers(0, PARTITIONS - 1), st.binary(max_size=16)), max_size=8),
        ),
        st.tuples(st.just("read")),
        st.tuples(st.just("commit")),
        st.tuples(st.just("to_start")),
        st.tuples(st.just("to_last_committed")),
        st.tuples(st.just("seek"), st.integers(0, PARTITIONS - 1), st.integers(0, 10)),
        st.tuples(st.just("reopen")),
    ),
    max_size=40,
)


@dataclass
class Model:
    records: list[list[bytes]] = field(default_factory=lambda: [[] for _ in range(PARTITIONS)])
    committed: list[int] = field(default_factory=lambda: [0] * PARTITIONS)
    position: list[int] = field(default_factory=lambda: [0] * PARTITIONS)

    def readable(self) -> set[tuple[int, int, bytes]]:
        return {
            (p, self.position[p], self.records[p][self.position[p]])
            for p in range(PARTITIONS)
            if self.position[p] < len(self.records[p])
        }


def storage_url(backend: str, request: pytest.FixtureRequest, tmp_root: str) -> str:
    n = next(_counter)
    if backend == "memory":
        return f"memory://model{n}"
    if backend == "local":
        return f"local://{tmp_root}/log{n}"
    return f"kafka://{request.getfixturevalue('kafka_bootstrap')}?prefix=model{n}x-"


@pytest.mark.parametrize("backend", ["memory", "local"])
@settings(
    max_examples=int(os.environ.get("CONVEYOR_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_log_matches_model(backend: str, request: pytest.FixtureRequest, ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp_root:
        url = storage_url(backend, request, tmp_root)
        model = Model()
        manager: LogManager = open_log_manager(url, default_codec="bytes")
        try:
            manager.create_if_not_exists(LOG, PARTITIONS)
            tailer = manager.create_tailer("group", LOG)
            for op in ops:
                kind = op[0]
                if kind == "append":
                    offset = manager.appender(LOG).append(op[1], op[2])
                    assert offset.offset == len(model.records[op[1]])
                    model.records[op[1]].append(op[2])
                elif kind == "append_many":
                    offsets = manager.appender(LOG).append_many(op[1])
                    for (partition, data), offset in zip(op[1], offsets, strict=True):
                        assert offset.offset == len(model.records[partition])
                        model.records[partition].append(data)
                elif kind == "read":
                    expected = model.readable()
                    record = tailer.read(0.5 if expected else 0.01)
                    if not expected:
                        assert record is None
                        continue
                    assert record is not None
                    p = record.offset.partition.partition
                    assert (p, record.offset.offset, record.message) in expected
                    model.position[p] += 1
                elif kind == "commit":
                    tailer.commit()
                    model.committed = list(model.position)
                elif kind == "to_start":
                    tailer.to_start()
                    model.position = [0] * PARTITIONS
                elif kind == "to_last_committed":
                    tailer.to_last_committed()
                    model.position = list(model.committed)
                elif kind == "seek":
                    tailer.seek(LogOffset(LogPartition(LOG, op[1]), op[2]))
                    model.position[op[1]] = op[2]
                elif kind == "reopen":
                    manager.close()
                    manager = open_log_manager(url, default_codec="bytes")
                    tailer = manager.create_tailer("group", LOG)
                    model.position = list(model.committed)
            lags = manager.lag_per_partition(LOG, "group")
            assert [lag.lag for lag in lags] == [
                max(0, len(model.records[p]) - model.committed[p]) for p in range(PARTITIONS)
            ]
        finally:
            manager.close()
