"""A record a computation cannot decode, or whose processing raises anything (RecursionError
included), follows the computation's policy: retried, then dead-lettered with its bytes (and the
records around it processed) or the computation stops; never a silent re-read (issue 14, item 3)."""

from __future__ import annotations

from conveyor.codec import BytesCodec
from conveyor.log import LogManager
from conveyor.record import Record
from conveyor.stream import ComputationPolicy, DeadLetter, Settings, StreamProcessor, Topology, group_of
from tests.stream.computations import Recorder
from tests.stream.conftest import OpenManager, read_all, wait_until

FAST = {"delay_s": 0.001, "max_delay_s": 0.004}
GARBAGE = b"\xff\x00 not a record"
# Nested 5,000 deep in a field the Record codec skips: msgspec recurses on it.
DEEP = b'{"junk":' + b"[" * 5000 + b"]" * 5000 + b',"key":"k"}'


def feed_with_bad(open_manager: OpenManager, manager: LogManager) -> None:
    """``test/in`` (1 partition): a, <garbage>, b, <deep>, c."""
    manager.create_if_not_exists("test/in", 1)
    good = manager.appender("test/in")
    raw = open_manager().appender("test/in", codec=BytesCodec())  # as a foreign producer would
    good.append("a", Record("a", b"1"))
    raw.append("x", GARBAGE)
    good.append("b", Record("b", b"2"))
    raw.append("x", DEEP)
    good.append("c", Record("c", b"3"))


def start(manager: LogManager, recorder: Recorder, policy: ComputationPolicy) -> StreamProcessor:
    topology = Topology.builder().add_computation(lambda: recorder, ["i1:test/in"]).build()
    processor = StreamProcessor(manager, topology, Settings(policy=policy))
    processor.start()
    return processor


def test_undecodable_records_are_retried_then_dead_lettered_and_the_others_processed(
    open_manager: OpenManager, manager: LogManager
) -> None:
    seen: list[str] = []
    policy = ComputationPolicy(max_retries=2, continue_on_failure=True, dlq_stream="test/dlq", **FAST)
    processor = start(manager, Recorder(seen), policy)
    feed_with_bad(open_manager, manager)
    assert processor.drain_and_stop(20)
    assert seen == ["a", "b", "c"]
    letters = [DeadLetter.from_record(r) for r in read_all(manager, "test/dlq")]
    assert [letter.original().data for letter in letters] == [GARBAGE, DEEP]  # the bytes, kept
    for letter in letters:
        assert (letter.error_type, letter.attempts, letter.input_stream) == ("CodecError", 3, "test/in")
        assert "cannot be decoded with codec 'json'" in letter.error
    assert "RecursionError" in letters[1].error
    status = processor.status()["test/recorder"]
    assert (status.retries, status.failures, status.dead_letters, status.records) == (4, 2, 2, 3)
    assert manager.lag("test/in", group_of("test/recorder")).lag == 0


def test_an_undecodable_record_stops_the_computation_when_the_policy_says_so(
    open_manager: OpenManager, manager: LogManager
) -> None:
    seen: list[str] = []
    processor = start(manager, Recorder(seen), ComputationPolicy(max_retries=1, **FAST))
    feed_with_bad(open_manager, manager)
    wait_until(processor.is_terminated, what="termination on failure")
    status = processor.status()["test/recorder"]
    assert (status.state, status.retries, status.failures) == ("failed", 1, 1)
    assert status.last_error is not None and status.last_error.startswith("CodecError: ")
    assert seen == ["a"]
    assert manager.lag("test/in", group_of("test/recorder")).lag == 4  # kept, uncommitted


def test_a_recursion_error_in_processing_is_retried_then_dead_lettered(manager: LogManager) -> None:
    seen: list[str] = []

    def fail(record: Record, attempt: int) -> BaseException | None:
        return RecursionError("maximum recursion depth exceeded") if record.key == "bad" else None

    recorder = Recorder(seen, fail=fail)
    policy = ComputationPolicy(max_retries=2, continue_on_failure=True, dlq_stream="test/dlq", **FAST)
    processor = start(manager, recorder, policy)
    manager.create_if_not_exists("test/in", 1)
    appender = manager.appender("test/in")
    for key in ("a", "bad", "c"):
        appender.append(key, Record(key, key.encode()))
    assert processor.drain_and_stop(20)
    assert seen == ["a", "c"] and recorder.attempts["bad"] == 3
    [letter] = [DeadLetter.from_record(r) for r in read_all(manager, "test/dlq")]
    assert (letter.error_type, letter.attempts, letter.original().key) == ("RecursionError", 3, "bad")
