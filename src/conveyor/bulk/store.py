"""The ``bulk`` KV store: commands, statuses (with Nuxeo's TTLs) and exclusive-action locks.

Keys, as Nuxeo's: ``command:<id>`` (the command), ``status:<id>`` (the full status, plus the set
of buckets already counted, so that a bucket delivered twice is counted once) and
``exclusive:<action>:<repository>`` (the command holding an exclusive action). Statuses are
rewritten by compare-and-set, so a submit, an abort and the status computation never lose each
other's changes, on any KV backend and from any process.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from conveyor.bulk.command import BulkCommand
from conveyor.bulk.status import BulkState, BulkStatus, now
from conveyor.errors import BulkError
from conveyor.kv.api import KeyValueStore

__all__ = [
    "ABORTED_TTL_S",
    "COMPLETED_TTL_S",
    "COMPLETED_WITH_ERROR_TTL_S",
    "EXCLUSIVE_TTL_S",
    "BulkStore",
    "DamagedBulkStatus",
    "StoredStatus",
]

COMMAND_PREFIX = "command:"
STATUS_PREFIX = "status:"
EXCLUSIVE_PREFIX = "exclusive:"
COMPLETED_TTL_S = 3_600.0
COMPLETED_WITH_ERROR_TTL_S = 86_400.0
ABORTED_TTL_S = 43_200.0
EXCLUSIVE_TTL_S = 86_400.0
_CAS_ATTEMPTS = 1000

logger = logging.getLogger("conveyor.bulk")


@dataclass
class StoredStatus:
    """A full status as stored: the status and the bitmap of buckets already merged."""

    status: BulkStatus
    buckets: bytearray = field(default_factory=bytearray)
    bucket_count: int | None = None

    def mark_bucket(self, bucket: int) -> bool:
        """Record ``bucket`` as counted; False when it already was (a redelivery)."""
        byte, bit = divmod(bucket, 8)
        if byte >= len(self.buckets):
            self.buckets.extend(bytes(byte + 1 - len(self.buckets)))
        if self.buckets[byte] & (1 << bit):
            return False
        self.buckets[byte] |= 1 << bit
        return True

    def encode(self) -> bytes:
        """JSON bytes."""
        data = {
            "status": self.status.to_data(),
            "buckets": base64.b64encode(bytes(self.buckets)).decode() if self.buckets else "",
            "bucket_count": self.bucket_count,
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> StoredStatus:
        """The stored status from :meth:`encode` bytes."""
        try:
            loaded = json.loads(data)
            return cls(
                BulkStatus.from_data(loaded["status"]),
                bytearray(base64.b64decode(loaded.get("buckets") or "")),
                loaded.get("bucket_count"),
            )
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise BulkError(f"invalid stored bulk status: {type(exc).__name__}: {exc}") from exc


@dataclass
class DamagedBulkStatus(BulkStatus):
    """A stored status that cannot be decoded, as listings show it instead of failing.

    State UNKNOWN; ``error_message`` says why it cannot be decoded, ``size`` is its stored bytes.
    """

    damaged: ClassVar[bool] = True
    size: int = 0


def ttl_of(status: BulkStatus) -> float | None:
    """How long a status is kept (Nuxeo's TTLs); None: until it ends."""
    if status.state is BulkState.COMPLETED:
        return COMPLETED_WITH_ERROR_TTL_S if status.has_error else COMPLETED_TTL_S
    if status.state is BulkState.ABORTED:
        return ABORTED_TTL_S
    return None


class BulkStore:
    """Commands, statuses and exclusive locks of the Bulk Service in one KV store."""

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv

    # --- commands ----------------------------------------------------------------------------

    def put_command(self, command: BulkCommand) -> None:
        """Store ``command`` (no TTL until its status ends)."""
        self.kv.put(COMMAND_PREFIX + command.id, command.encode())

    def get_command(self, command_id: str) -> BulkCommand | None:
        """The stored command, None when unknown or expired."""
        raw = self.kv.get(COMMAND_PREFIX + command_id)
        return None if raw is None else BulkCommand.decode(raw)

    # --- statuses ----------------------------------------------------------------------------

    def get_stored(self, command_id: str) -> tuple[bytes, StoredStatus] | None:
        """The raw bytes and the decoded stored status, None when unknown."""
        raw = self.kv.get(STATUS_PREFIX + command_id)
        return None if raw is None else (raw, StoredStatus.decode(raw))

    def get_status(self, command_id: str) -> BulkStatus:
        """The full status; an UNKNOWN status when the command is unknown or expired."""
        found = self.get_stored(command_id)
        return BulkStatus.unknown_of(command_id) if found is None else found[1].status

    def create_status(self, status: BulkStatus) -> None:
        """Store the first status of a command."""
        self.kv.put(STATUS_PREFIX + status.command_id, StoredStatus(status).encode())

    def update(
        self, command_id: str, change: Callable[[StoredStatus], bool]
    ) -> tuple[StoredStatus, bool] | None:
        """Apply ``change`` to the stored status by compare-and-set, retrying on conflicts.

        ``change`` mutates the status and returns True to write it (False: leave it). Returns the
        status after the call and whether it was written; None when the command is unknown.
        The command's TTL follows its status: set when it ends.
        """
        key = STATUS_PREFIX + command_id
        for _ in range(_CAS_ATTEMPTS):
            found = self.get_stored(command_id)
            if found is None:
                return None
            raw, stored = found
            if not change(stored):
                return stored, False
            ttl = ttl_of(stored.status)
            if self.kv.compare_and_set(key, raw, stored.encode(), ttl=ttl):
                if ttl is not None:
                    self.kv.set_ttl(COMMAND_PREFIX + command_id, ttl)
                return stored, True
        raise BulkError(f"status of bulk command {command_id!r}: too many concurrent updates")

    def listed_status(self, command_id: str) -> BulkStatus:
        """The full status for a listing: a :class:`DamagedBulkStatus` when it cannot be decoded."""
        raw = self.kv.get(STATUS_PREFIX + command_id)
        if raw is None:
            return BulkStatus.unknown_of(command_id)
        try:
            return StoredStatus.decode(raw).status
        except BulkError as exc:
            message = f"undecodable status ({len(raw)} bytes at key {STATUS_PREFIX}{command_id}): {exc}"
            logger.warning("bulk command %s: %s", command_id, message)
            return DamagedBulkStatus(command_id, error_message=message, size=len(raw))

    def abort_damaged(self, command_id: str) -> BulkStatus | None:
        """Replace a stored status that cannot be decoded by a new ABORTED one (its counters are
        lost; ``error_message`` says so and why), so that the command ends; None when the stored
        status is missing, decodable, or changed meanwhile."""
        key = STATUS_PREFIX + command_id
        raw = self.kv.get(key)
        if raw is None:
            return None
        try:
            StoredStatus.decode(raw)
            return None
        except BulkError as exc:
            damage = str(exc)
        try:
            command = self.get_command(command_id)
        except Exception:  # the command may be damaged too: the status says what is known
            command = None
        status = BulkStatus(
            command_id,
            BulkState.ABORTED,
            action=command.action if command is not None else None,
            username=command.username if command is not None else None,
            error_count=1,
            error_message=(
                f"aborted with a damaged stored status ({len(raw)} bytes at key {key}: {damage}); "
                "its counters were lost"
            ),
            completed_time=now(),
        )
        if not self.kv.compare_and_set(key, raw, StoredStatus(status).encode(), ttl=ABORTED_TTL_S):
            return None
        self.kv.set_ttl(COMMAND_PREFIX + command_id, ABORTED_TTL_S)
        return status

    def command_ids(self) -> list[str]:
        """The ids of every command with a stored status."""
        return sorted(key[len(STATUS_PREFIX) :] for key in self.kv.keys(STATUS_PREFIX))

    # --- exclusive actions -------------------------------------------------------------------

    @staticmethod
    def _exclusive_key(action: str, repository: str) -> str:
        return f"{EXCLUSIVE_PREFIX}{action}:{repository}"

    def acquire_exclusive(self, action: str, repository: str, command_id: str) -> str | None:
        """Take the lock of ``action`` on ``repository``; None when taken, else the holder's id.

        A lock whose holder has ended (or is unknown) is taken over.
        """
        key = self._exclusive_key(action, repository)
        for _ in range(_CAS_ATTEMPTS):
            if self.kv.compare_and_set(key, None, command_id, ttl=EXCLUSIVE_TTL_S):
                return None
            holder = self.kv.get_str(key)
            if holder is None:
                continue
            if holder == command_id:
                return None
            if (
                not self.get_status(holder).is_completed
                and self.get_status(holder).state is not BulkState.UNKNOWN
            ):
                return holder
            if self.kv.compare_and_set(key, holder, command_id, ttl=EXCLUSIVE_TTL_S):
                return None
        raise BulkError(f"exclusive lock of {action!r}: too many concurrent updates")

    def release_exclusive(self, action: str, repository: str, command_id: str) -> None:
        """Release the lock of ``action`` on ``repository`` if ``command_id`` holds it."""
        self.kv.compare_and_set(self._exclusive_key(action, repository), command_id, None)

    def describe(self) -> dict[str, Any]:
        """Counts of stored commands by state (for diagnostics)."""
        counts: dict[str, int] = {}
        for command_id in self.command_ids():
            found = self.listed_status(command_id)
            state = "DAMAGED" if isinstance(found, DamagedBulkStatus) else found.state.value
            counts[state] = counts.get(state, 0) + 1
        return counts
