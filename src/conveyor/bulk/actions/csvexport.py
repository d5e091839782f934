"""``csvExport``: the documents as a CSV file, downloadable from the transient store.

Each bucket's rows are written as one partial blob of the transient store (shared between
nodes); once every document is processed, :meth:`CSVExportAction.complete` concatenates the
partials in bucket order (the scroll order: the repository's storage order, see
:meth:`~conveyor.repository.Repository.scroll_ids`) under one header, zips them if asked, and
stores the file under the command id. The status's ``result`` says where: ``transient_store``,
``key``, ``filename``, ``mimetype``, ``length``, ``count`` and a ``url``
(``transient://<store>/<key>``).

The file is UTF-8 with a byte order mark and CRLF line ends, every field that needs it quoted
(RFC 4180), so spreadsheets open it with its accents and embedded quotes, commas and newlines.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.bulk.action import ActionContext, BulkAction, check_params
from conveyor.bulk.command import BulkCommand
from conveyor.errors import BulkValidationError
from conveyor.transient import Blob

if TYPE_CHECKING:
    from conveyor.bulk.status import BulkStatus
    from conveyor.repository import Document

__all__ = ["DEFAULT_COLUMNS", "CSVExportAction", "csv_value"]

DEFAULT_COLUMNS = ("ecm:uuid", "ecm:path", "ecm:primaryType", "dc:title")
PART = "-part-"
BOM = "\ufeff"


def csv_value(doc: Document, column: str) -> str:
    """The text of ``column`` for ``doc`` (lists and objects as JSON, None as empty)."""
    value: Any
    if column == "ecm:uuid":
        value = doc.id
    elif column == "ecm:path":
        value = doc.path
    elif column == "ecm:name":
        value = doc.name
    elif column == "ecm:primaryType":
        value = doc.type
    elif column == "ecm:parentId":
        value = doc.parent_id
    elif column == "ecm:isTrashed":
        value = doc.is_trashed
    elif column == "dc:created":
        value = doc.created
    elif column == "dc:modified":
        value = doc.modified
    else:
        value = doc.properties.get(column)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _rows_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


class CSVExportAction(BulkAction):
    """Export the documents' ``columns`` (param, default ecm:uuid, ecm:path, ecm:primaryType, dc:title).

    Params: ``columns`` (list of field names), ``zip`` (bool, default False), ``filename``.
    """

    name = "csvExport"
    http_enabled = True
    bucket_size = 500
    batch_size = 500
    query_limit = 1_000_000

    @classmethod
    def validate(cls, command: BulkCommand) -> None:
        params = command.params
        check_params(cls.name, params, allowed=("columns", "zip", "filename"))
        columns = params.get("columns", list(DEFAULT_COLUMNS))
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
            raise BulkValidationError(
                "bulk action 'csvExport': param 'columns' must be a non-empty list of field names"
            )
        if not isinstance(params.get("zip", False), bool):
            raise BulkValidationError("bulk action 'csvExport': param 'zip' must be a boolean")
        filename = params.get("filename", "export.csv")
        if not isinstance(filename, str) or not filename or "/" in filename or "\\" in filename:
            raise BulkValidationError("bulk action 'csvExport': param 'filename' must be a plain file name")

    @staticmethod
    def columns(params: dict[str, Any]) -> list[str]:
        """The exported columns."""
        return list(params.get("columns", DEFAULT_COLUMNS))

    def start_bucket(self, context: ActionContext) -> None:
        context.state["rows"] = []

    def compute(self, context: ActionContext, ids: list[str], params: dict[str, Any]) -> None:
        columns = self.columns(params)
        docs = context.require_repository().get_many(ids)
        context.state["rows"].extend([csv_value(doc, c) for c in columns] for doc in docs)

    def end_bucket(self, context: ActionContext) -> None:
        store = context.require_transient_store()
        rows: list[list[str]] = context.state.get("rows", [])
        key = f"{context.command.id}{PART}{context.bucket:09d}"
        store.put_blobs(key, [Blob(data=_rows_text(rows).encode(), filename=key, mimetype="text/csv")])
        store.put_parameter(key, "count", len(rows))

    def complete(self, context: ActionContext, status: BulkStatus) -> dict[str, Any] | None:
        store = context.require_transient_store()
        command = context.command
        key = command.id
        if store.is_completed(key):  # already assembled (a redelivery)
            done = store.get_parameter(key, "result")
            return dict(done) if isinstance(done, dict) else None
        params = command.params
        filename = str(params.get("filename", "export.csv"))
        parts = sorted(k for k in store.keys() if k.startswith(key + PART))  # noqa: SIM118 (not a dict)
        count = 0
        fd, tmp_name = tempfile.mkstemp(prefix=".csv-", dir=store.blob_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write((BOM + _rows_text([self.columns(params)])).encode())
                for part in parts:
                    for blob in store.get_blobs(part) or []:
                        with blob.open() as handle:
                            while chunk := handle.read(1 << 20):
                                out.write(chunk)
                    count += int(store.get_parameter(part, "count") or 0)
            mimetype = "text/csv"
            if params.get("zip", False):
                zipped = tmp.with_suffix(".zip")
                with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
                    archive.write(tmp, filename)
                tmp.unlink()
                tmp, filename, mimetype = zipped, filename.rsplit(".", 1)[0] + ".zip", "application/zip"
            length = tmp.stat().st_size
            store.put_blobs(key, [Blob(path=tmp, filename=filename, mimetype=mimetype)])
        finally:
            tmp.unlink(missing_ok=True)
        result = {
            "transient_store": store.name,
            "key": key,
            "filename": filename,
            "mimetype": mimetype,
            "length": length,
            "count": count,
            "url": f"transient://{store.name}/{key}",
        }
        store.put_parameter(key, "result", result)
        store.set_completed(key, True)
        for part in parts:
            store.remove(part)
        return result
