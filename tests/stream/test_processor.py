"""StreamProcessor on real logs: exact outputs, threads and partitions, drain, watermarks."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from conveyor.errors import StreamProcessorError
from conveyor.log import LogManager
from conveyor.record import Flag, Record, Watermark
from conveyor.stream import ComputationPolicy, Settings, StreamProcessor, Topology, group_of
from tests.stream.computations import Count, Recorder, Split, Upper
from tests.stream.conftest import feed, read_all, wait_until

SENTENCES = 150


def sentences(n: int) -> list[Record]:
    return [Record(f"s{i}", f"the fox {'jumps ' * (i % 3)}over dog{i % 7}".encode()) for i in range(n)]


def expected_counts(records: list[Record]) -> Counter[str]:
    return Counter(w.upper() for r in records for w in r.data.decode().split())


def three_stages() -> Topology:
    return (
        Topology.builder()
        .add_computation(Split, ["i1:demo/in", "o1:demo/words"])
        .add_computation(Upper, ["i1:demo/words", "o1:demo/upper"])
        .add_computation(Count, ["i1:demo/upper", "o1:demo/counts"])
        .build()
    )


@pytest.mark.parametrize(("concurrency", "partitions"), [(1, 1), (3, 4), (5, 2)])
def test_three_stage_topology_exact_output(manager: LogManager, concurrency: int, partitions: int) -> None:
    records = sentences(SENTENCES)
    feed(manager, "demo/in", records, partitions)
    processor = StreamProcessor(
        manager, three_stages(), Settings(concurrency=concurrency, partitions=partitions)
    )
    processor.start()
    assert processor.wait_for_assignments(10)
    assert processor.drain_and_stop(60)
    assert processor.is_terminated()

    words = read_all(manager, "demo/words")
    expected = expected_counts(records)
    assert len(words) == sum(expected.values())
    assert len(read_all(manager, "demo/upper")) == len(words)
    totals: Counter[str] = Counter()
    for record in read_all(manager, "demo/counts"):
        totals[record.key] += int(record.data)
    assert totals == expected
    status = processor.status()
    assert status["demo/split"].records == SENTENCES
    assert status["demo/upper"].records == len(words)
    assert status["demo/count"].records == len(words)
    assert all(s.state == "stopped" and s.failures == 0 and s.running_threads == 0 for s in status.values())
    for name in ("demo/split", "demo/upper", "demo/count"):
        assert processor.lag(name) == 0


def test_threads_share_partitions_and_spares_idle(manager: LogManager) -> None:
    seen: list[str] = []
    topology = Topology.builder().add_computation(lambda: Recorder(seen), ["i1:test/in"]).build()
    processor = StreamProcessor(manager, topology, Settings(concurrency=3, partitions=2))
    processor.start()
    assert processor.wait_for_assignments(10)
    status = processor.status()["test/recorder"]
    assert (status.threads, status.running_threads, status.partitions, status.state) == (3, 3, 2, "running")
    feed(manager, "test/in", [Record(f"k{i}", b"") for i in range(200)])
    wait_until(lambda: len(seen) == 200, what="200 records")
    assert processor.drain_and_stop(20)
    assert sorted(seen) == sorted(f"k{i}" for i in range(200))
    assert manager.lag("test/in", group_of("test/recorder")).lag == 0


def test_produced_records_inherit_the_low_watermark(manager: LogManager) -> None:
    stamp = Watermark.of_timestamp(1_600_000_000_000, 7)
    feed(manager, "demo/in", [Record("s", b"a b c", watermark=stamp.value)])
    topology = Topology.builder().add_computation(Split, ["i1:demo/in", "o1:demo/words"]).build()
    processor = StreamProcessor(manager, topology)
    processor.start()
    assert processor.drain_and_stop(20)
    words = read_all(manager, "demo/words")
    assert [w.key for w in words] == ["a", "b", "c"]
    assert all(w.watermark == stamp.value for w in words)
    # After the checkpoint the low watermark is the completed watermark of what was read.
    assert processor.low_watermark("demo/split") == Watermark.completed_of(stamp).value
    assert processor.low_watermark() == Watermark.completed_of(stamp).value
    assert processor.is_done(1_600_000_000_000) and not processor.is_done(1_600_000_000_001)


def test_low_watermark_tracks_oldest_uncommitted(manager: LogManager) -> None:
    seen: list[str] = []
    old, new = Watermark.of_timestamp(1_000_000), Watermark.of_timestamp(2_000_000)
    # Checkpoint only on "commit": the low watermark stays at the oldest record until then.
    factory = lambda: Recorder(seen, checkpoint=lambda r: r.key == "commit")  # noqa: E731
    topology = Topology.builder().add_computation(factory, ["i1:test/in"]).build()
    processor = StreamProcessor(manager, topology)
    processor.start()
    feed(manager, "test/in", [Record("a", b"", old.value), Record("b", b"", new.value)])
    wait_until(lambda: len(seen) == 2, what="2 records")
    assert processor.low_watermark("test/recorder") == old.value
    assert processor.latency("test/recorder").lag == 2
    assert processor.latency("test/recorder").key == "a"
    assert processor.latency("test/recorder").latency_ms > 0
    feed(manager, "test/in", [Record("commit", b"", new.value)])
    wait_until(
        lambda: processor.low_watermark("test/recorder") == Watermark.completed_of(new).value,
        what="low watermark after checkpoint",
    )
    assert processor.latency("test/recorder").latency_ms == 0
    assert processor.drain_and_stop(20)


def test_commit_flag_forces_a_checkpoint(manager: LogManager) -> None:
    seen: list[str] = []
    factory = lambda: Recorder(seen, checkpoint=lambda r: False)  # noqa: E731
    topology = Topology.builder().add_computation(factory, ["i1:test/in"]).build()
    processor = StreamProcessor(manager, topology)
    processor.start()
    feed(manager, "test/in", [Record("a", b""), Record("b", b""), Record("c", b"", flags=Flag.COMMIT)])
    wait_until(lambda: manager.lag("test/in", group_of("test/recorder")).lag == 0, what="commit")
    assert seen == ["a", "b", "c"]
    assert processor.stop(10)


def test_poison_pill_stops_the_computation(manager: LogManager) -> None:
    seen: list[str] = []
    topology = Topology.builder().add_computation(lambda: Recorder(seen), ["i1:test/in"]).build()
    processor = StreamProcessor(manager, topology)
    processor.start()
    feed(
        manager, "test/in", [Record("a", b""), Record("pill", b"", flags=Flag.POISON_PILL), Record("b", b"")]
    )
    wait_until(processor.is_terminated, what="termination by poison pill")
    assert seen == ["a", "pill"]
    assert processor.status()["test/recorder"].state == "terminated"
    lag = manager.lag("test/in", group_of("test/recorder"))
    assert lag.lag == 1  # the record after the pill waits for the next processor


def test_records_read_ahead_are_committed_only_once_processed(manager: LogManager) -> None:
    flags = {9: Flag.COMMIT, 19: Flag.POISON_PILL}
    feed(manager, "test/in", [Record(f"r{i}", b"", flags=flags.get(i, Flag.DEFAULT)) for i in range(30)])
    seen: list[str] = []
    factory = lambda: Recorder(seen, checkpoint=lambda r: False)  # noqa: E731
    topology = Topology.builder().add_computation(factory, ["i1:test/in"]).build()
    processor = StreamProcessor(manager, topology).start()
    wait_until(processor.is_terminated, what="termination by poison pill")
    assert seen == [f"r{i}" for i in range(20)]
    assert manager.lag("test/in", group_of("test/recorder")).lag == 10

    after: list[str] = []
    topology = Topology.builder().add_computation(lambda: Recorder(after), ["i1:test/in"]).build()
    processor = StreamProcessor(manager, topology).start()
    wait_until(lambda: manager.lag("test/in", group_of("test/recorder")).lag == 0, what="the rest")
    assert processor.stop(10)
    assert after == [f"r{i}" for i in range(20, 30)]


def test_drain_waits_for_input_appended_while_running(manager: LogManager) -> None:
    records = sentences(100)
    processor = StreamProcessor(manager, three_stages(), Settings(concurrency=2, partitions=3))
    processor.start()
    assert processor.wait_for_assignments(10)
    feed(manager, "demo/in", records, 3)
    assert processor.drain_and_stop(60)
    totals: Counter[str] = Counter()
    for record in read_all(manager, "demo/counts"):
        totals[record.key] += int(record.data)
    assert totals == expected_counts(records)


def test_drain_times_out_when_input_is_never_committed(manager: LogManager) -> None:
    seen: list[str] = []
    factory = lambda: Recorder(seen, checkpoint=lambda r: False)  # noqa: E731
    topology = Topology.builder().add_computation(factory, ["i1:test/in"]).build()
    processor = StreamProcessor(manager, topology)
    processor.start()
    feed(manager, "test/in", [Record("a", b"")])
    wait_until(lambda: seen == ["a"], what="record a")
    started = time.monotonic()
    assert not processor.drain_and_stop(0.5)
    assert time.monotonic() - started < 10
    assert processor.is_terminated()


def test_lifecycle_errors_and_status_before_start(manager: LogManager) -> None:
    processor = StreamProcessor(manager, three_stages(), Settings(policy=ComputationPolicy(max_retries=1)))
    assert not processor.is_terminated()
    assert {s.state for s in processor.status().values()} == {"created"}
    processor.start()
    with pytest.raises(StreamProcessorError, match="already started"):
        processor.start()
    assert processor.stop(10)
    assert processor.is_terminated()
    assert "demo/split: stopped" in processor.describe()
    assert set(processor.metrics()) == {"demo/split", "demo/upper", "demo/count"}


def test_streams_are_created_with_settings(manager: LogManager) -> None:
    settings = Settings(partitions=3).with_partitions("demo/words", 5).with_external("demo/in")
    processor = StreamProcessor(manager, three_stages(), settings)
    manager.create_if_not_exists("demo/in", 2)
    processor.start()
    assert processor.stop(10)
    assert manager.size("demo/in") == 2
    assert manager.size("demo/words") == 5
    assert manager.size("demo/upper") == 3


def test_subscribed_threads_wait_for_their_assignments(manager: LogManager) -> None:
    seen: list[str] = []
    topology = Topology.builder().add_computation(lambda: Recorder(seen), ["i1:test/in"]).build()
    manager.create_if_not_exists("test/in", 4)
    processor = StreamProcessor(manager, topology, Settings(concurrency=2, subscribe=True))
    processor.start()
    # A Kafka group is joined inside a read, seconds after subscribing: wait for it.
    assert processor.wait_for_assignments(30)
    # Every partition is held; one may count twice until its former owner reads the rebalance.
    assert processor.status()["test/recorder"].partitions >= 4
    wait_until(lambda: processor.status()["test/recorder"].partitions == 4, what="a settled group")
    feed(manager, "test/in", [Record(f"k{i}", b"") for i in range(100)])
    assert processor.drain_and_stop(30)
    assert sorted(seen) == sorted(f"k{i}" for i in range(100))
    assert manager.lag("test/in", group_of("test/recorder")).lag == 0


def test_wait_for_assignments_returns_once_the_group_settled(
    manager: LogManager, log_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second thread joins 0.1 s after the first: once ``wait_for_assignments`` returns, no
    thread still reads partitions the group gave another, so no record fed then is read twice
    (nothing is committed here: a rebalance would restart every partition from its beginning)."""
    subscribe = manager.subscribe
    joined: list[int] = []

    def late_second(*args: Any, **kwargs: Any) -> Any:
        joined.append(1)
        if len(joined) % 2 == 0:
            time.sleep(0.1)
        return subscribe(*args, **kwargs)

    monkeypatch.setattr(manager, "subscribe", late_second)
    if log_url.startswith("local"):  # the first thread notices the second later: a wider window
        monkeypatch.setattr("conveyor.log.local.tailer._REBALANCE_CHECK", 0.5)
    rounds = 1 if log_url.startswith("kafka") else 3
    for n in range(rounds):
        seen: list[str] = []
        stream = f"test/settle{n}"
        manager.create_if_not_exists(stream, 4)
        topology = (
            Topology.builder()
            .add_computation(
                lambda seen=seen, n=n: Recorder(seen, name=f"test/settle{n}", checkpoint=lambda r: False),
                [f"i1:{stream}"],
            )
            .build()
        )
        processor = StreamProcessor(manager, topology, Settings(concurrency=2, partitions=4, subscribe=True))
        processor.start()
        assert processor.wait_for_assignments(30)
        feed(manager, stream, [Record(f"k{i}", b"") for i in range(100)])
        wait_until(lambda seen=seen: len(seen) >= 100, what="100 records")
        time.sleep(0.6)  # a thread that noticed the newcomer late would read its records again now
        assert processor.stop(10)
        assert sorted(seen) == sorted(f"k{i}" for i in range(100)), f"round {n}: records read twice"
