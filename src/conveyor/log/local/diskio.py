"""Writing files of a local log when the disk may be full: reserving space first, and naming errors.

An append reserves the bytes it is about to write (``fallocate`` with ``FALLOC_FL_KEEP_SIZE``: the
file size does not change, so readers see nothing) before writing them; when the disk is full
the reservation fails and nothing at all was written. File systems without ``fallocate`` fall
back to plain writes, whose partial tail the next appender seals over like a torn write.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from conveyor.errors import StorageError, StorageFullError

__all__ = ["fsync_dir", "remove_quietly", "reserve", "storage_error", "write_all"]

_KEEP_SIZE = 1  # FALLOC_FL_KEEP_SIZE
_FULL = {errno.ENOSPC, errno.EDQUOT}

_fallocate = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    _fallocate = _libc.fallocate
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    _fallocate.restype = ctypes.c_int
except (OSError, AttributeError):  # not Linux/glibc: plain writes only
    _fallocate = None

_unsupported = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def reserve(fd: int, position: int, length: int) -> bool:
    """Reserve ``[position, position + length)`` of ``fd`` without changing its size.

    True when reserved, False when the file system cannot (then writes may fail part-way);
    raises ``OSError`` (``ENOSPC``...) when the space is not there.
    """
    if _fallocate is None or length <= 0:
        return False
    if _fallocate(fd, _KEEP_SIZE, position, length) == 0:
        return True
    code = ctypes.get_errno()
    if code in _unsupported:
        return False
    raise OSError(code, os.strerror(code))


def storage_error(exc: OSError, what: str, path: str) -> StorageError:
    """The Conveyor error for ``exc`` raised while ``what`` (e.g. "appending to log X partition
    0") on ``path``: ``StorageFullError`` when the disk or quota is full, else ``StorageError``."""
    full = exc.errno in _FULL
    cls = StorageFullError if full else StorageError
    reason = "the disk is full" if full else "an I/O error"
    detail = exc.strerror or str(exc)
    return cls(
        f"{what}: {reason} ({detail}, errno {exc.errno}) on {path}; nothing of this call was "
        "acknowledged, retry once the device has space / is healthy",
        path,
    )


def remove_quietly(path: str) -> None:
    """Delete a temporary file left by a failed write, if it is there."""
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (files created, renamed or deleted in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write the whole of ``data`` to ``fd`` (``os.write`` may write only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
