"""Blobs of the transient store: what callers pass and get back, and how files are written."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from conveyor.errors import StorageError, StorageFullError, TransientStoreInputError

__all__ = ["Blob", "BlobInput", "StagedBlob", "stage_blob", "storage_error"]

_CHUNK = 1024 * 1024
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Blob:
    """A binary with a file name and a MIME type.

    Given to :meth:`TransientStore.put_blobs` with exactly one source: ``data`` (bytes in memory),
    ``path`` (a file, copied by chunks) or ``stream`` (a binary file object, read by chunks).
    Returned by :meth:`TransientStore.get_blobs` with ``path`` set to the stored file, which
    :meth:`open` streams and :meth:`read_bytes` loads.
    """

    data: bytes | None = None
    filename: str | None = None
    mimetype: str | None = None
    path: Path | None = None
    stream: IO[bytes] | None = None
    length: int | None = None
    digest: str | None = None

    def open(self) -> IO[bytes]:
        """A binary file object reading the blob (the caller closes it)."""
        if self.path is not None:
            return self.path.open("rb")
        if self.data is not None:
            import io

            return io.BytesIO(self.data)
        raise TransientStoreInputError("this blob has neither a path nor data to open")

    def read_bytes(self) -> bytes:
        """The whole content in memory."""
        if self.data is not None:
            return self.data
        with self.open() as handle:
            return handle.read()


BlobInput = bytes | tuple[str | None, str | None, bytes] | Blob
"""What ``put_blobs`` accepts for one blob: bytes, ``(filename, mimetype, bytes)`` or a Blob."""


@dataclass(frozen=True)
class StagedBlob:
    """A blob written to a temporary file of the blob directory, not yet part of any entry."""

    temp: Path
    filename: str | None
    mimetype: str | None
    length: int
    digest: str

    def commit(self, directory: Path) -> dict[str, Any]:
        """Rename the file to its final name; the metadata stored in the entry."""
        name = uuid.uuid4().hex
        os.replace(self.temp, directory / name)
        return {
            "file": name,
            "filename": self.filename,
            "mimetype": self.mimetype,
            "length": self.length,
            "digest": self.digest,
        }


def _as_blob(item: object, index: int) -> Blob:
    if isinstance(item, Blob):
        sources = sum(s is not None for s in (item.data, item.path, item.stream))
        if sources != 1:
            raise TransientStoreInputError(
                f"blob {index} must have exactly one of data, path or stream, it has {sources}"
            )
        return item
    if isinstance(item, bytes | bytearray | memoryview):
        return Blob(data=bytes(item))
    if isinstance(item, tuple) and len(item) == 3 and isinstance(item[2], bytes | bytearray):
        filename, mimetype, data = item
        if not all(v is None or isinstance(v, str) for v in (filename, mimetype)):
            raise TransientStoreInputError(f"blob {index}: filename and mimetype must be str or None")
        return Blob(data=bytes(data), filename=filename, mimetype=mimetype)
    raise TransientStoreInputError(
        f"blob {index} must be bytes, (filename, mimetype, bytes) or a Blob, got {type(item).__name__}"
    )


def storage_error(exc: OSError, what: str, path: Path) -> StorageError:
    """The :class:`StorageError` (:class:`StorageFullError` for ``ENOSPC``/``EDQUOT``) for an
    ``OSError`` met writing in ``path`` (the blob directory); ``what`` names the store."""
    reason = exc.strerror or str(exc)
    if exc.errno in _FULL_ERRNOS:
        return StorageFullError(
            f"{what}: the disk holding {path} is full ({reason}); free space, then retry", str(path)
        )
    return StorageError(f"{what}: cannot write in {path} ({reason})", str(path))


def stage_blob(item: object, index: int, directory: Path, what: str = "transient store") -> StagedBlob:
    """Write one blob to a temporary file of ``directory``, hashing it on the way.

    A failed write (disk full, I/O error) removes the temporary file and raises
    :class:`StorageError` naming ``what`` (the store) and the file; an error reading the blob's
    own ``path`` or ``stream`` is raised as it is.
    """
    blob = _as_blob(item, index)
    temp = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    digest = hashlib.sha256()
    length = 0
    writing = True  # False while reading the caller's source: its errors are not ours
    try:
        with temp.open("wb") as out:
            if blob.data is not None:
                out.write(blob.data)
                digest.update(blob.data)
                length = len(blob.data)
            else:
                writing = False
                with blob.path.open("rb") if blob.path is not None else _borrow(blob.stream) as src:
                    while chunk := src.read(_CHUNK):
                        writing = True
                        out.write(chunk)
                        writing = False
                        digest.update(chunk)
                        length += len(chunk)
                writing = True  # leaving ``out`` flushes what is buffered
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if writing:
            raise storage_error(exc, f"{what}: writing blob {index}", directory) from exc
        raise
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    filename = blob.filename if blob.filename is not None else (blob.path.name if blob.path else None)
    return StagedBlob(temp, filename, blob.mimetype, length, digest.hexdigest())


class _borrow:  # a context manager that does not close the caller's stream
    def __init__(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        self.stream = stream

    def __enter__(self) -> IO[bytes]:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        return None
