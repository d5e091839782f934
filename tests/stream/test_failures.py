"""Retries, dead letters, skip or stop, and at-least-once re-delivery after a crash."""

from __future__ import annotations

from conveyor.log import LogManager
from conveyor.record import Record
from conveyor.stream import ComputationPolicy, DeadLetter, Settings, StreamProcessor, Topology, group_of
from tests.stream.computations import Recorder, fail_first, no_retry_on
from tests.stream.conftest import OpenManager, feed, read_all, wait_until

FAST = {"delay_s": 0.001, "max_delay_s": 0.004}
INPUT = [Record("a", b"1"), Record("bad", b"2"), Record("c", b"3")]


def run(
    manager: LogManager, recorder: Recorder, policy: ComputationPolicy, outputs: bool = False
) -> StreamProcessor:
    mapping = ["i1:test/in", "o1:test/out"] if outputs else ["i1:test/in"]
    topology = Topology.builder().add_computation(lambda: recorder, mapping).build()
    processor = StreamProcessor(manager, topology, Settings(policy=policy))
    processor.start()
    return processor


def test_retries_then_success(manager: LogManager) -> None:
    seen: list[str] = []
    recorder = Recorder(seen, fail=fail_first(2), outputs=1)
    processor = run(manager, recorder, ComputationPolicy(max_retries=3, **FAST), outputs=True)
    feed(manager, "test/in", INPUT)
    assert processor.drain_and_stop(20)
    assert seen == ["a", "bad", "c"]
    assert recorder.attempts["bad"] == 3
    # A failed attempt's output is dropped: the retry does not duplicate it.
    assert [r.key for r in read_all(manager, "test/out")] == ["a", "bad", "c"]
    status = processor.status()["test/recorder"]
    assert (status.retries, status.failures, status.records) == (2, 0, 3)


def test_retries_exhausted_go_to_dead_letter_and_continue(manager: LogManager) -> None:
    seen: list[str] = []
    recorder = Recorder(seen, fail=fail_first(100))
    policy = ComputationPolicy(max_retries=2, continue_on_failure=True, dlq_stream="test/dlq", **FAST)
    processor = run(manager, recorder, policy)
    feed(manager, "test/in", INPUT)
    assert processor.drain_and_stop(20)
    assert seen == ["a", "c"]
    assert recorder.attempts["bad"] == 3
    letters = [DeadLetter.from_record(r) for r in read_all(manager, "test/dlq")]
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.computation, letter.input_stream, letter.attempts) == ("test/recorder", "test/in", 3)
    assert letter.error_type == "ValueError" and letter.error == "boom 3 on bad"
    assert "Traceback" in letter.traceback and "boom 3 on bad" in letter.traceback
    assert letter.original() == Record("bad", b"2", INPUT[1].watermark, INPUT[1].flags)
    assert letter.offset is not None and letter.offset.endswith(":+1")
    status = processor.status()["test/recorder"]
    assert (status.failures, status.skipped, status.dead_letters, status.state) == (1, 1, 1, "stopped")
    assert manager.lag("test/in", group_of("test/recorder")).lag == 0


def test_failure_stops_the_computation_and_keeps_the_record(manager: LogManager) -> None:
    seen: list[str] = []
    processor = run(manager, Recorder(seen, fail=fail_first(100)), ComputationPolicy(max_retries=1, **FAST))
    feed(manager, "test/in", INPUT)
    wait_until(processor.is_terminated, what="termination on failure")
    status = processor.status()["test/recorder"]
    assert status.state == "failed" and status.failures == 1
    assert status.last_error == "ValueError: boom 2 on bad"
    assert seen == ["a"]
    lag = manager.lag("test/in", group_of("test/recorder"))
    assert lag.lag == 2  # "bad" and what follows wait, uncommitted
    assert not processor.drain_and_stop(1)


def test_no_retry_error_fails_at_once(manager: LogManager) -> None:
    seen: list[str] = []
    recorder = Recorder(seen, fail=no_retry_on("bad"))
    processor = run(manager, recorder, ComputationPolicy(max_retries=5, continue_on_failure=True, **FAST))
    feed(manager, "test/in", INPUT)
    assert processor.drain_and_stop(20)
    assert recorder.attempts["bad"] == 1 and seen == ["a", "c"]


def test_skip_first_failures(manager: LogManager) -> None:
    seen: list[str] = []
    fail = lambda r, n: ValueError(r.key) if r.key.startswith("bad") else None  # noqa: E731
    processor = run(manager, Recorder(seen, fail=fail), ComputationPolicy(skip_first_failures=2))
    feed(manager, "test/in", [Record(k, b"") for k in ("a", "bad1", "b", "bad2", "c", "bad3", "d")])
    wait_until(processor.is_terminated, what="termination on the third failure")
    assert seen == ["a", "b", "c"]
    status = processor.status()["test/recorder"]
    assert (status.state, status.skipped, status.failures) == ("failed", 2, 3)


def test_crash_before_commit_redelivers(open_manager: OpenManager) -> None:
    first = open_manager()
    seen: list[str] = []
    # Checkpoints after a and b only: c and d are processed but never committed, then the
    # processor goes away (a stop commits nothing, as a crash would).
    recorder = Recorder(seen, checkpoint=lambda r: r.key in ("a", "b"), outputs=1)
    processor = run(first, recorder, ComputationPolicy(), outputs=True)
    feed(first, "test/in", [Record(k, b"") for k in "abcd"])
    wait_until(lambda: len(seen) == 4, what="4 records")
    assert processor.stop(10)

    again: list[str] = []
    second = open_manager()  # same storage: a restart
    processor = run(second, Recorder(again, outputs=1), ComputationPolicy(), outputs=True)
    assert processor.drain_and_stop(20)
    assert again == ["c", "d"]
    # Nothing lost downstream: every input is in the output at least once.
    assert {r.key for r in read_all(second, "test/out")} == set("abcd")


def test_failure_then_restart_resumes_at_the_failed_record(open_manager: OpenManager) -> None:
    first = open_manager()
    seen: list[str] = []
    processor = run(first, Recorder(seen, fail=fail_first(100)), ComputationPolicy())
    feed(first, "test/in", INPUT)
    wait_until(processor.is_terminated, what="failure")
    assert seen == ["a"]

    again: list[str] = []
    processor = run(open_manager(), Recorder(again), ComputationPolicy())
    assert processor.drain_and_stop(20)
    assert again == ["bad", "c"]
