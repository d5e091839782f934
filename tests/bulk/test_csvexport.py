"""csvExport: a CSV file in the transient store that a spreadsheet opens correctly."""

from __future__ import annotations

import csv
import io
import zipfile

from conveyor.bulk import BulkCommand, BulkService, BulkState
from conveyor.repository import Repository

N = 10_000
TRICKY = ["plain", 'with "quotes"', "comma, inside", "new\nline", "accents éàü 漢字 🚀", "=1+2", ""]


def _import(repo: Repository, count: int) -> None:
    repo.import_documents(
        {
            "type": "File",
            "name": f"d{i:05d}",
            "parent_path": "/csv",
            "properties": {"dc:title": TRICKY[i % len(TRICKY)], "demo:index": i, "demo:tags": ["a", "b"]},
        }
        for i in range(count)
    )


def test_csv_export(service: BulkService, repo: Repository) -> None:
    _import(repo, N)
    command = BulkCommand(
        "csvExport",
        "SELECT * FROM File",
        params={"columns": ["ecm:uuid", "ecm:name", "dc:title", "demo:index", "demo:tags"]},
        bucket_size=100,
        batch_size=30,
    )
    command_id = service.submit(command)
    assert service.wait(command_id, 120), service.status(command_id)
    status = service.status(command_id)
    assert (status.state, status.total, status.processed, status.error_count) == (
        BulkState.COMPLETED,
        N,
        N,
        0,
    )
    result = service.result(command_id)
    assert result["count"] == N and result["mimetype"] == "text/csv"
    blob = service.download(command_id)
    assert blob is not None
    raw = blob.read_bytes()
    assert raw.startswith("\ufeff".encode()) and len(raw) == result["length"]
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["ecm:uuid", "ecm:name", "dc:title", "demo:index", "demo:tags"]
    body = rows[1:]
    assert len(body) == N
    scrolled = [i for page in repo.scroll_ids("SELECT * FROM File") for i in page]
    assert [r[0] for r in body] == scrolled  # in scroll order
    docs = {d.id: d for d in repo.query("SELECT * FROM File")}
    for uuid, name, title, index, tags in body:
        doc = docs[uuid]
        assert (name, title, index, tags) == (
            doc.name,
            doc.properties["dc:title"],
            str(doc.properties["demo:index"]),
            '["a", "b"]',
        )
    assert {r[2] for r in body} == set(TRICKY)
    # partial files are gone, only the result stays
    assert service.transient_store is not None
    assert service.transient_store.keys() == {command_id}


def test_csv_export_zip_and_empty(service: BulkService, repo: Repository) -> None:
    _import(repo, 50)
    command_id = service.submit(
        BulkCommand("csvExport", "SELECT * FROM File", params={"zip": True, "filename": "out.csv"})
    )
    assert service.wait(command_id, 60)
    result = service.result(command_id)
    assert result["filename"] == "out.zip" and result["count"] == 50
    blob = service.download(command_id)
    assert blob is not None and blob.path is not None
    with zipfile.ZipFile(blob.path) as archive:
        assert archive.namelist() == ["out.csv"]
        text = archive.read("out.csv").decode("utf-8-sig")
    assert len(list(csv.reader(io.StringIO(text, newline="")))) == 51
    empty = service.submit(BulkCommand("csvExport", "SELECT * FROM Note"))
    assert service.wait(empty, 60)
    assert service.result(empty)["count"] == 0
    blob = service.download(empty)
    assert (
        blob is not None
        and blob.read_bytes().decode("utf-8-sig") == "ecm:uuid,ecm:path,ecm:primaryType,dc:title\r\n"
    )
