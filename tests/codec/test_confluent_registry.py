"""``avroConfluent`` against a minimal HTTP schema registry (the two endpoints it calls)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conveyor.codec import get_codec
from conveyor.codec.avro import AvroConfluentCodec
from conveyor.errors import BackendUnavailableError
from conveyor.record import Record


class _Registry(BaseHTTPRequestHandler):
    schemas: dict[int, str] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ids = {s: i for i, s in self.schemas.items()}
        schema_id = ids.get(body["schema"]) or 100 + len(self.schemas)
        self.schemas[schema_id] = body["schema"]
        self._send(200, {"id": schema_id})

    def do_GET(self) -> None:
        schema_id = int(self.path.rsplit("/", 1)[-1])
        if schema_id in self.schemas:
            self._send(200, {"schema": self.schemas[schema_id]})
        else:
            self._send(404, {"error_code": 40403})

    def _send(self, status: int, answer: object) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    _Registry.schemas = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_registry_round_trip_and_old_writer(registry_url: str) -> None:
    old = AvroConfluentCodec(Record, schema="2021", registry_url=registry_url)
    new = AvroConfluentCodec(Record, registry_url=registry_url)
    record = Record("k", b"v", 5, 3, None, "t")
    message = old.encode(record)
    assert message[:5] == b"\x00" + old.schema_id.to_bytes(4, "big")
    assert new.decode(message) == record  # writer schema fetched by id, resolved to 2023
    assert new.decode(new.encode(record)) == record
    assert new.schema_id != old.schema_id


def test_unreachable_registry_is_backend_unavailable() -> None:
    codec = get_codec("avroConfluent", Record, registry_url="http://127.0.0.1:9")
    with pytest.raises(BackendUnavailableError, match="schema registry"):
        codec.encode(Record("k", b"v"))
