"""Codec throughput: encode/decode ops/s of every codec on a ~100-byte Record, with baselines.

    .venv/bin/python bench/codec.py [-n 50000] [--runs 5]

Baselines in the same run: fastavro ``schemaless_writer``/``schemaless_reader`` on the same datum
(Nuxeo 2023 Record schema) and msgspec JSON of the same dataclass without our wrapper. Prints the
median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import fastavro
import msgspec

from conveyor.codec import get_codec
from conveyor.codec.avro import RECORD_SCHEMA_2023
from conveyor.codec.avro.binding import record_to_datum
from conveyor.record import Record


def rate(n: int, op: Callable[[], object]) -> float:
    """Calls of ``op`` per second over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        op()
    return n / (time.perf_counter() - start)


def _bind(fn: Callable[[Any], object], arg: object) -> Callable[[], object]:
    return lambda: fn(arg)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    record = Record("key-000001", b"v" * 64, 219353282518319104, 1)
    cases: dict[str, tuple[Callable[[], object], Callable[[], object], int]] = {}
    for name in ("json", "msgpack", "avro", "avroBinary", "avroJson", "avroConfluent"):
        codec = get_codec(name)
        data = codec.encode(record)
        cases[name] = (_bind(codec.encode, record), _bind(codec.decode, data), len(data))

    parsed = fastavro.parse_schema(RECORD_SCHEMA_2023, named_schemas={})
    datum = record_to_datum(record)

    def fa_write() -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, datum)
        return out.getvalue()

    body = fa_write()
    cases["raw fastavro (dict)"] = (
        fa_write,
        lambda: fastavro.schemaless_reader(io.BytesIO(body), parsed),
        len(body),
    )
    enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder(Record)
    js = enc.encode(record)
    cases["raw msgspec json"] = (lambda: enc.encode(record), lambda: dec.decode(js), len(js))

    results: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for label, (encode, decode, _) in cases.items():
            results[label].append((rate(args.n, encode), rate(args.n, decode)))

    print(f"Record key=10 chars, data=64 bytes; n={args.n}, median of {args.runs} runs")
    print(f"| {'codec':<22} | {'bytes':>5} | {'encode ops/s':>12} | {'decode ops/s':>12} |")
    print(f"|{'-' * 24}|{'-' * 7}|{'-' * 14}|{'-' * 14}|")
    for label, runs in results.items():
        e = statistics.median(r[0] for r in runs)
        d = statistics.median(r[1] for r in runs)
        print(f"| {label:<22} | {cases[label][2]:>5} | {e:>12,.0f} | {d:>12,.0f} |")


if __name__ == "__main__":
    main()
