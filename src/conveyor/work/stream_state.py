"""Shared state of the stream WorkManager: which Works are waiting or running, counters, heartbeats.

Kept in a key-value store (the node's ``kv_store("work")`` when there is one, so that every node
of a cluster sees it) or, failing that, in :class:`LocalKV`, an in-process store with the same
methods. The log holds the Works; this state only says, per Work id, which of its records are
still wanted (their tokens) and who runs them, so that cancel, coalescing, ``IF_NOT_*`` and
metrics work without reading the log.

Keys (all under ``prefix``): ``w:<work id>`` the state of a Work (msgpack), ``c:<queue>:<name>``
counters (``scheduled``, ``completed``, ``canceled``), ``r:<queue>:<owner>`` Works running on
one manager, ``o:<queue>`` the managers that run the queue (space-separated), ``hb:<owner>``
the owner's heartbeat (wall-clock seconds, with a TTL where the store has them),
``x:<id>:<token>`` Works too big for a record, ``born`` when the state was created (records
older than that were written before it and cannot be known to it). With ``store_state=false``:
``l:<id>`` the latest copy of a coalescing Work, ``p:<queue>:<partition>`` the partition's
horizon (no reader started a record at or past that offset) and ``d:<queue>:<partition>:<offset>``
how many readers started a record below the horizon of the reader before them (re-deliveries
of records that may have been running when their reader died).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import msgspec

from conveyor.errors import WorkError

__all__ = ["KV", "LocalKV", "WorkRecord", "WorkStateStore", "WorkStatus"]

T = TypeVar("T")

Value = bytes | str | int | None


class KV(Protocol):
    """The part of :class:`conveyor.kv.KeyValueStore` the stream WorkManager uses."""

    def put(self, key: str, value: Value, ttl: float | None = None) -> None: ...

    def get(self, key: str) -> Any: ...

    def compare_and_set(self, key: str, expected: Value, value: Value, ttl: float | None = None) -> bool: ...

    def add_and_get(self, key: str, delta: int) -> int: ...

    def keys(self, prefix: str = "") -> Iterable[str]: ...


class LocalKV:
    """An in-process key-value store (thread-safe), used when the node has no shared one.

    Not persistent and not shared between processes: after a restart the state is empty, and
    records older than it are run as they come (see ``born``).
    """

    _named: dict[str, LocalKV] = {}
    _named_lock = threading.Lock()

    def __init__(self) -> None:
        self._data: dict[str, Value] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> LocalKV:
        """The store called ``name`` in this process (created on first use)."""
        with cls._named_lock:
            store = cls._named.get(name)
            if store is None:
                store = cls()
                cls._named[name] = store
            return store

    def put(self, key: str, value: Value, ttl: float | None = None) -> None:
        """Set ``key`` (None deletes it); ``ttl`` is ignored."""
        with self._lock:
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def get(self, key: str) -> Value:
        """The value of ``key`` or None."""
        with self._lock:
            return self._data.get(key)

    def compare_and_set(self, key: str, expected: Value, value: Value, ttl: float | None = None) -> bool:
        """Set ``key`` to ``value`` (None deletes) if it is ``expected`` (None: absent)."""
        with self._lock:
            if self._data.get(key) != expected:
                return False
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value
            return True

    def add_and_get(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer at ``key`` (0 when absent); the new value."""
        with self._lock:
            value = int(self._data.get(key) or 0) + delta
            self._data[key] = value
            return value

    def keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``."""
        with self._lock:
            return [k for k in self._data if k.startswith(prefix)]

    def close(self) -> None:
        """Nothing to release."""


class WorkStatus(msgspec.Struct):
    """What the state knows of one Work id: tokens of its wanted records, who runs which, and
    the last scheduled state (for ``find``)."""

    queue: str
    waiting: list[str] = msgspec.field(default_factory=list)
    running: dict[str, str] = msgspec.field(default_factory=dict)
    data: bytes | None = None
    canceling: list[str] = msgspec.field(default_factory=list)
    """Tokens of running copies asked to stop (their node polls this at each heartbeat)."""
    recoveries: int = 0
    """Times a copy of this Work was taken over from a dead owner (kept until the Work is done)."""

    @property
    def empty(self) -> bool:
        """Neither waiting nor running: the state can be dropped."""
        return not self.waiting and not self.running


class WorkRecord(msgspec.Struct, array_like=True):
    """One record of a ``work/<queue>`` log: the Work id, the token of this copy, when it was
    written, and the Work itself as encoded by the Work codec (or, when ``external``, nothing:
    the Work is stored under ``x:<id>:<token>`` in the KV store, Nuxeo's EXTERNAL_VALUE)."""

    id: str
    token: str
    at: float
    data: bytes
    external: bool = False
    """The Work was too big for a record: ``data`` is empty, the Work is in the KV store."""
    untracked: bool = False
    """Written without a per-Work state (``store_state=false``): run as read, no claim."""
    coalescing: bool = False
    """An untracked coalescing Work: it runs only if its token is still the id's latest."""


_status_enc = msgspec.msgpack.Encoder()
_status_dec = msgspec.msgpack.Decoder(WorkStatus)
_KEEP = object()
_NO_GUESS: Any = object()
_WRITTEN_MAX = 10_000
_WRITTEN_MAX_BYTES = 8192  # bigger states (a big Work inline) are read back instead of kept


def _as_int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bytes):
        value = value.decode()
    return int(value)


class WorkStateStore:
    """Typed access to the stream WorkManager's state in a :class:`KV` (see module doc)."""

    def __init__(self, kv: KV, prefix: str = "") -> None:
        self.kv = kv
        self.prefix = prefix
        self._written: dict[str, bytes] = {}  # last value written per Work id, oldest first
        self._written_lock = threading.Lock()
        self._pending: dict[tuple[str, str], int] = {}
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        now = time.time()
        self.created = kv.compare_and_set(self._k("born"), None, repr(now))
        self.born = now if self.created else float(_str(kv.get(self._k("born")) or repr(now)))

    def _k(self, key: str) -> str:
        return self.prefix + key

    # --- per Work ------------------------------------------------------------------------------

    def status(self, work_id: str) -> WorkStatus | None:
        """The state of ``work_id`` or None."""
        raw = self.kv.get(self._k("w:" + work_id))
        return _decode_status(raw, work_id) if raw is not None else None

    def update(
        self, work_id: str, change: Callable[[WorkStatus | None], tuple[Any, T]], guess: Any = _NO_GUESS
    ) -> T:
        """Apply ``change`` atomically (compare-and-set, retried on conflict).

        ``change(status)`` returns ``(new status, result)``; new status None deletes the state,
        ``WorkStateStore.KEEP`` leaves it as is. Returns the result. The value this store wrote
        last for ``work_id``, if it remembers one, or else ``guess`` (what the state probably is:
        a :class:`WorkStatus`, or None for none) is tried first, without reading the state.
        """
        key = self._k("w:" + work_id)
        with self._written_lock:
            raw_guess: Any = self._written.get(work_id, _NO_GUESS)
        if raw_guess is _NO_GUESS and guess is not _NO_GUESS:
            raw_guess = _status_enc.encode(guess) if guess is not None else None
        if raw_guess is not _NO_GUESS:
            # A guess saves the read (a round trip) when right; a decision to keep the state or
            # to write nothing is only trusted from a real read.
            current = _decode_status(raw_guess, work_id) if raw_guess is not None else None
            new, result = change(current)
            if new is not _KEEP and not (raw_guess is None and new is None):
                value = _status_enc.encode(new) if new is not None else None
                if self.kv.compare_and_set(key, raw_guess, value):
                    self._remember(work_id, value)
                    return result
        while True:
            raw = self.kv.get(key)
            current = _decode_status(raw, work_id) if raw is not None else None
            new, result = change(current)
            if new is _KEEP:
                return result
            value = _status_enc.encode(new) if new is not None else None
            if raw is None and value is None:
                return result
            if self.kv.compare_and_set(key, raw, value):
                self._remember(work_id, value)
                return result

    def _remember(self, work_id: str, value: bytes | None) -> None:
        """Keep the last value written for ``work_id`` (the guess of its next update)."""
        with self._written_lock:
            self._written.pop(work_id, None)
            if value is not None and len(value) <= _WRITTEN_MAX_BYTES:
                self._written[work_id] = value
                if len(self._written) > _WRITTEN_MAX:
                    del self._written[next(iter(self._written))]

    KEEP: Any = _KEEP

    # --- Works too big for a record -----------------------------------------------------------

    def put_external(self, work_id: str, token: str, data: bytes) -> None:
        """Store the encoded Work of the record ``token`` outside the log."""
        self.kv.put(self._k(f"x:{work_id}:{token}"), data)

    def get_external(self, work_id: str, token: str) -> bytes | None:
        """The encoded Work of the record ``token``, if still stored."""
        raw = self.kv.get(self._k(f"x:{work_id}:{token}"))
        if raw is None:
            return None
        return raw.encode("latin-1") if isinstance(raw, str) else bytes(raw)

    def drop_external(self, work_id: str, token: str) -> None:
        """Forget the encoded Work of the record ``token`` (done with it)."""
        self.kv.put(self._k(f"x:{work_id}:{token}"), None)

    # --- coalescing without a per-Work state ---------------------------------------------------

    def set_latest(self, work_id: str, token: str) -> None:
        """Say the copy ``token`` is the last scheduled of the coalescing Work ``work_id``."""
        self.kv.put(self._k("l:" + work_id), token)

    def latest(self, work_id: str) -> str | None:
        """The token of the last scheduled copy of the coalescing Work ``work_id``, if known."""
        raw = self.kv.get(self._k("l:" + work_id))
        return _str(raw) if raw is not None else None

    def replace_latest(self, work_id: str, token: str, new: str | None, ttl: float | None = None) -> bool:
        """Move the latest copy of ``work_id`` from ``token`` to ``new`` (None: forget it; ``ttl``:
        seconds to keep ``new``), unless another copy was scheduled since; whether it moved."""
        return self.kv.compare_and_set(self._k("l:" + work_id), token, new, ttl)

    # --- re-deliveries without a per-Work state -------------------------------------------------

    def horizon(self, queue_id: str, partition: int) -> tuple[Any, int]:
        """The stored horizon of a partition of ``queue_id`` (no reader started a record at or past
        it; 0 when unknown), as ``(raw value, offset)``: the raw value is what :meth:`move_horizon`
        compares with."""
        raw = self.kv.get(self._k(f"p:{queue_id}:{partition}"))
        return raw, _as_int(raw)

    def move_horizon(self, queue_id: str, partition: int, raw: Any, offset: int) -> tuple[Any, int] | None:
        """Set the horizon to ``offset`` if it is still ``raw``; None when done, else the horizon
        as it is now (another reader moved it)."""
        if self.kv.compare_and_set(self._k(f"p:{queue_id}:{partition}"), raw, offset):
            return None
        return self.horizon(queue_id, partition)

    def redelivered(self, queue_id: str, partition: int, offset: int) -> int:
        """Count one more start of the record at ``offset``; how many starts were counted."""
        return self.kv.add_and_get(self._k(f"d:{queue_id}:{partition}:{offset}"), 1)

    def delivered(
        self, queue_id: str, partition: int, offset: int, keep: tuple[int, float] | None = None
    ) -> None:
        """Forget the starts of the record at ``offset`` (it is done with), or with ``keep``
        (starts, seconds), keep that count that long (a record dead-lettered and not committed
        past yet: read again, it must still be found dead)."""
        key = self._k(f"d:{queue_id}:{partition}:{offset}")
        if keep is None:
            self.kv.put(key, None)
        else:
            self.kv.put(key, keep[0], ttl=keep[1])

    # --- counters ------------------------------------------------------------------------------

    def add(self, queue_id: str, name: str, delta: int) -> int:
        """Add ``delta`` to the counter ``name`` of ``queue_id``."""
        if delta == 0:
            return self.count(queue_id, name)
        return self.kv.add_and_get(self._k(f"c:{queue_id}:{name}"), delta)

    def add_later(self, queue_id: str, name: str, delta: int) -> None:
        """Add ``delta`` to the counter ``name`` of ``queue_id`` at the next :meth:`flush`.

        Seen at once by :meth:`count` in this process, by other processes after the flush: the
        caller defers only changes whose delay errs on the safe side (a Work still counted as
        waiting, a completion counted late), never one that would make a busy queue look idle.
        """
        if delta:
            with self._pending_lock:
                key = (queue_id, name)
                self._pending[key] = self._pending.get(key, 0) + delta

    def flush(self) -> None:
        """Write the deferred counter changes (kept for the next flush if the store fails)."""
        with self._flush_lock:
            with self._pending_lock:
                pending, self._pending = self._pending, {}
            try:
                for key in list(pending):
                    queue_id, name = key
                    self.kv.add_and_get(self._k(f"c:{queue_id}:{name}"), pending[key])
                    del pending[key]
            finally:
                with self._pending_lock:
                    for key, delta in pending.items():
                        self._pending[key] = self._pending.get(key, 0) + delta

    def count(self, queue_id: str, name: str) -> int:
        """The counter ``name`` of ``queue_id`` (with this process's deferred changes)."""
        with self._flush_lock:  # not while a flush moves changes from this process to the store
            with self._pending_lock:
                pending = self._pending.get((queue_id, name), 0)
            return _as_int(self.kv.get(self._k(f"c:{queue_id}:{name}"))) + pending

    def set_running(self, queue_id: str, owner: str, count: int) -> None:
        """Say ``owner`` runs ``count`` Works of ``queue_id``."""
        self.kv.put(self._k(f"r:{queue_id}:{owner}"), count)

    def running(self, queue_id: str, timeout: float, own: tuple[str, int] | None = None) -> int:
        """Works running on ``queue_id`` on every live owner (``own``: an owner and the count it
        knows better than the state)."""
        total = 0
        for owner in self.owners(queue_id):
            if own is not None and owner == own[0]:
                total += own[1]
            elif self.alive(owner, timeout):
                total += max(0, _as_int(self.kv.get(self._k(f"r:{queue_id}:{owner}"))))
            elif self.kv.get(self._k("hb:" + owner)) is None:  # its heartbeat expired: forget it
                self.join(queue_id, owner, present=False)
        return total

    def owners(self, queue_id: str) -> list[str]:
        """The managers that process (or processed) ``queue_id`` and did not leave cleanly."""
        raw = self.kv.get(self._k(f"o:{queue_id}"))
        return [o for o in _str(raw).split(" ") if o] if raw is not None else []

    def join(self, queue_id: str, owner: str, present: bool = True) -> None:
        """Add ``owner`` to (or, ``present`` False, remove it from) the owners of ``queue_id``."""
        key = self._k(f"o:{queue_id}")
        while True:
            raw = self.kv.get(key)
            owners = [o for o in _str(raw).split(" ") if o] if raw is not None else []
            if (owner in owners) == present:
                return
            owners = [*owners, owner] if present else [o for o in owners if o != owner]
            if self.kv.compare_and_set(key, raw, " ".join(owners) or None):
                return

    # --- owners --------------------------------------------------------------------------------

    def beat(self, owner: str, ttl: float) -> None:
        """Say ``owner`` is alive now."""
        self.kv.put(self._k("hb:" + owner), repr(time.time()), ttl=ttl)

    def leave(self, owner: str, queue_ids: Iterable[str]) -> None:
        """``owner`` stops cleanly: drop its heartbeat and running counters."""
        for qid in queue_ids:
            self.join(qid, owner, present=False)
            self.kv.put(self._k(f"r:{qid}:{owner}"), None)
        self.kv.put(self._k("hb:" + owner), None)

    def alive(self, owner: str, timeout: float) -> bool:
        """True when ``owner`` beat less than ``timeout`` seconds ago."""
        raw = self.kv.get(self._k("hb:" + owner))
        if raw is None:
            return False
        try:
            return time.time() - float(_str(raw)) < timeout
        except ValueError:
            return False


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_status(raw: Any, work_id: str) -> WorkStatus:
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    try:
        status: WorkStatus = _status_dec.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise WorkError(f"corrupt state of Work {work_id!r} in the work store: {exc}") from exc
    return status
