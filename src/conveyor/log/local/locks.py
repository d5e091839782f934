"""File locks (``flock``) shared by the processes of one machine; the OS drops them when a holder dies.

``flock`` locks belong to an open file description, so two opens of one file in the same process
exclude each other too, just as two processes do.
"""

from __future__ import annotations

import fcntl
import os
import threading

__all__ = ["FileLock", "try_lock_file"]


class FileLock:
    """An exclusive lock on ``path`` (created if missing); re-entrant across threads of a holder is
    not supported: each holder is one object used under its own thread lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._mutex = threading.Lock()

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def acquire(self) -> None:
        """Block until this process holds the lock (threads of this process queue on a mutex)."""
        self._mutex.acquire()
        try:
            fcntl.flock(self._open(), fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise

    def release(self) -> None:
        """Release the lock."""
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def try_acquire(self) -> bool:
        """Take the lock without waiting and keep it until :meth:`close`; True if taken."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        """Close the file, dropping the lock if held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_lock_file(path: str) -> int | None:
    """Open ``path`` and lock it without waiting: the fd holding the lock, or None if it is held
    (or gone). Close the fd to release."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
