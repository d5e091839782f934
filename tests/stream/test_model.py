"""Topology, policy, settings and watermark interval: no log needed."""

from __future__ import annotations

import pytest

from conveyor.errors import ConfigurationError, NoRetryError, TopologyError
from conveyor.log import Name
from conveyor.record import Record, Watermark
from conveyor.stream import (
    Computation,
    ComputationContext,
    ComputationPolicy,
    DeadLetter,
    Settings,
    Topology,
    WatermarkMonotonicInterval,
    computation,
    group_of,
)


class Step(Computation):
    def __init__(self, name: str, inputs: int = 1, outputs: int = 1) -> None:
        super().__init__(name, inputs=inputs, outputs=outputs)


def step(name: str, inputs: int = 1, outputs: int = 1) -> type[Computation]:
    class Named(Step):
        def __init__(self) -> None:
            super().__init__(name, inputs, outputs)

    return Named


def three_stages() -> Topology:
    return (
        Topology.builder()
        .add_computation(step("split"), ["i1:demo/in", "o1:demo/words"])
        .add_computation(step("upper"), ["i1:demo/words", "o1:demo/upper"])
        .add_computation(step("count", outputs=1), ["i1:demo/upper", "o1:demo/counts"])
        .build()
    )


def test_topology_queries() -> None:
    topology = three_stages()
    assert topology.computation_names == ["split", "upper", "count"]
    assert [s.urn for s in topology.streams()] == ["demo/counts", "demo/in", "demo/upper", "demo/words"]
    assert topology.roots() == ["split"]
    assert topology.children("split") == ["upper"]
    assert topology.parents("count") == ["upper"]
    assert topology.descendants("split") == ["count", "upper"]
    assert topology.ancestors("count") == ["split", "upper"]
    assert topology.is_source("split") and topology.is_sink("count")
    assert topology.input_streams("upper") == [Name.of_urn("demo/words")]
    assert topology.metadata("count").outputs == ("o1",)


def test_topology_descriptions() -> None:
    topology = three_stages()
    text = topology.describe()
    assert "i1 <- demo/words  (from split)" in text
    assert "o1 -> demo/counts  (to none)" in text
    dot = topology.to_dot()
    assert dot.startswith("digraph topology {") and dot.endswith("}")
    assert '"s:demo/words" -> "c:upper" [label="i1"];' in dot
    assert '"c:split" -> "s:demo/words" [label="o1"];' in dot
    mermaid = topology.to_mermaid()
    assert mermaid.startswith("flowchart LR")
    assert mermaid.count("-->|") == 6


def test_cycle_is_rejected_and_named() -> None:
    builder = (
        Topology.builder()
        .add_computation(step("a"), ["i1:ns/x", "o1:ns/y"])
        .add_computation(step("b"), ["i1:ns/y", "o1:ns/z"])
        .add_computation(step("c"), ["i1:ns/z", "o1:ns/x"])
    )
    with pytest.raises(TopologyError, match=r"cycle: a -\[ns/y\]-> b -\[ns/z\]-> c -\[ns/x\]-> a"):
        builder.build()


def test_self_loop_is_a_cycle() -> None:
    with pytest.raises(TopologyError, match=r"cycle: a -\[ns/x\]-> a"):
        Topology.builder().add_computation(step("a"), ["i1:ns/x", "o1:ns/x"]).build()


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (["i1:ns/in", "o9:ns/out"], "unknown stream 'o9'"),
        (["i1-ns/in", "o1:ns/out"], "bad stream mapping 'i1-ns/in'"),
        (["i1:ns/in"], "output 'o1' is not mapped"),
        (["i1:ns/in", "o1:bad name"], "bad stream in mapping"),
        (["i1:ns/a", "i1:ns/b", "o1:ns/c"], "'i1' is mapped twice"),
        ("i1:ns/in", "list of 'local:ns/stream'"),
    ],
)
def test_bad_mappings(mapping: list[str], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        Topology.builder().add_computation(step("a"), mapping).build()


def test_duplicate_names_and_bad_factories() -> None:
    builder = Topology.builder().add_computation(step("a"), ["i1:ns/x", "o1:ns/y"])
    with pytest.raises(TopologyError, match="duplicate computation name 'a'"):
        builder.add_computation(step("a"), ["i1:ns/y", "o1:ns/z"])
    with pytest.raises(TopologyError, match="not a Computation"):
        Topology.builder().add_computation(lambda: "nope", ["i1:ns/x"])  # type: ignore[arg-type,return-value]
    with pytest.raises(TopologyError, match="at least one computation"):
        Topology.builder().build()
    with pytest.raises(TopologyError, match="unknown computation 'zz'"):
        three_stages().spec("zz")


def test_decorated_function_computation() -> None:
    @computation("demo/upper")
    def upper(record: Record) -> Record:
        return Record(record.key, record.data.upper())

    topology = Topology.builder().add_computation(upper, ["i1:demo/in", "o1:demo/out"]).build()
    assert topology.computation_names == ["demo/upper"]
    instance = upper()
    context = ComputationContext("demo/upper", {"o1": Name.of_urn("demo/out")}, ComputationPolicy())
    instance.process_record(context, "i1", Record("k", b"abc"))
    assert [r.data for r in context.records("o1")] == [b"ABC"]
    assert [r.data for r in context.records("demo/out")] == [b"ABC"]
    with pytest.raises(TopologyError, match="no output stream 'o2'"):
        context.produce_record("o2", Record("k", b""))


def test_group_names() -> None:
    assert group_of("bulk/scroller") == Name.of("bulk", "scroller")
    assert group_of("demo-upper") == Name.of("demo", "upper")
    assert group_of("upper") == Name.of(None, "upper")


def test_policy_backoff_and_validation() -> None:
    policy = ComputationPolicy(max_retries=5, delay_s=0.5, max_delay_s=3)
    assert [policy.retry_delay(i) for i in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.should_retry(ValueError(), 1) and policy.should_retry(ValueError(), 5)
    assert not policy.should_retry(ValueError(), 6)
    assert not policy.should_retry(NoRetryError("no"), 1)
    assert ComputationPolicy.NONE.max_retries == 0 and not ComputationPolicy.NONE.continue_on_failure
    with pytest.raises(ConfigurationError, match="max_retries"):
        ComputationPolicy(max_retries=-1)
    with pytest.raises(ConfigurationError, match="max_delay_s"):
        ComputationPolicy(delay_s=5, max_delay_s=1)
    with pytest.raises(ConfigurationError, match="skip_first_failures"):
        ComputationPolicy(continue_on_failure=True, skip_first_failures=2)
    with pytest.raises(ConfigurationError, match="batch_capacity"):
        ComputationPolicy(batch_capacity=0)


def test_settings_overrides_and_validation() -> None:
    settings = (
        Settings(concurrency=2, partitions=4, codec="json")
        .with_concurrency("upper", 3)
        .with_partitions("demo/in", 8)
        .with_codec("demo/out", "msgpack")
        .with_policy("upper", ComputationPolicy(max_retries=2))
        .with_external("demo/ext")
    )
    assert settings.concurrency_of("upper") == 3 and settings.concurrency_of("other") == 2
    assert settings.partitions_of("demo/in") == 8 and settings.partitions_of("demo/x") == 4
    assert settings.codec_of("demo/out") == "msgpack" and settings.codec_of("demo/in") == "json"
    assert settings.policy_of("upper").max_retries == 2 and settings.policy_of("x").max_retries == 0
    assert settings.is_external("demo/ext")
    with pytest.raises(ConfigurationError, match="concurrency"):
        Settings(concurrency=0)
    with pytest.raises(ConfigurationError, match="partitions of 'demo/in'"):
        Settings(stream_partitions={"demo/in": 0})


def test_watermark_interval() -> None:
    interval = WatermarkMonotonicInterval()
    assert interval.low.value == 0
    w1, w2, w3 = (Watermark.of_timestamp(t) for t in (1000, 2000, 3000))
    interval.mark(w2)
    interval.mark(w1)
    interval.mark(w3)
    assert interval.low == w1 and interval.high == w3
    assert not interval.is_done(1000)
    interval.checkpoint()
    assert interval.low == Watermark.completed_of(w3) and interval.low.completed
    assert interval.is_done(3000) and not interval.is_done(3001)
    # A late record cannot move the low watermark below the checkpoint, only un-complete it.
    interval.mark(w1)
    assert interval.low.timestamp == 3000 and not interval.low.completed
    interval.mark(Watermark.of_timestamp(4000))
    interval.checkpoint()
    assert interval.low == Watermark.completed_of(Watermark.of_timestamp(4000))


def test_dead_letter_round_trip() -> None:
    original = Record("k", b"\x00\xffdata", watermark=Watermark.of_timestamp(5).value, flags=3)
    letter = DeadLetter("c", "ns/in", "ns-in-00:+3", "ValueError", "bad", "Traceback...", 2, original)
    parsed = DeadLetter.from_record(letter.to_record())
    assert parsed == letter and parsed.original() == original
