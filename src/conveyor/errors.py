"""The errors Conveyor raises: one root, one base per layer.

Every error Conveyor raises on purpose is a :class:`ConveyorError`. Errors that a caller may
sensibly retry (a server that is down, a rebalance) carry ``retriable = True``. Driver exceptions
never escape bare: they are wrapped and chained (``raise ... from exc``).
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Root of every error Conveyor raises."""

    retriable: bool = False


# --- configuration and backends ---------------------------------------------------------------


class ConfigurationError(ConveyorError, ValueError):
    """A setting, a URL or an argument is invalid; the message names it."""


class BackendUnavailableError(ConveyorError):
    """A backend server cannot be reached (or a driver is missing); the message names the URL."""

    retriable = True


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional dependency needed by a backend is not installed; the message says what to install."""


class StorageError(BackendUnavailableError):
    """A store cannot write (or read) its files: an I/O error, or the disk is full.

    The message names the store (a log and partition, a key-value or transient store, a
    repository) and ``path`` the file or directory. The call that raised is not acknowledged
    (nothing it wrote counts); what was acknowledged before is kept. Retriable: the same call
    succeeds once the device is healthy again or space is freed.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StorageFullError(StorageError):
    """The disk or quota holding a store is full (``ENOSPC``, ``EDQUOT``, SQLite's "database or
    disk is full"); retriable once space is freed."""


# --- codecs -------------------------------------------------------------------------------------


class CodecError(ConveyorError, ValueError):
    """Bytes cannot be decoded (or an object encoded) by a codec; the message names the codec."""


# --- log ----------------------------------------------------------------------------------------


class LogError(ConveyorError):
    """Base of the log layer's errors."""


class InvalidNameError(LogError, ValueError):
    """A stream or group name does not follow Nuxeo's naming rules."""


class LogNotFoundError(LogError, KeyError):
    """The log does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message.
        return str(self.args[0]) if self.args else ""


class PartitionOutOfRangeError(LogError, IndexError):
    """A partition index is outside ``0 .. size-1`` of its log."""


class RecordTooLargeError(LogError, ValueError):
    """A record is larger than the log accepts."""


class LogClosedError(LogError):
    """The appender, tailer or manager has been closed."""


class LogCorruptedError(LogError):
    """A log file holds bytes that are not a valid entry (checksum or framing); names file and position."""

    def __init__(self, message: str, path: str | None = None, position: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.position = position


class TailerAlreadyExistsError(LogError):
    """A tailer for this (group, partition) is already open in this process or held by another member."""


class ConsumerGroupActiveError(LogError):
    """A consumer group cannot be deleted, nor its position moved, while it has members reading
    the log (subscribers, or tailers holding its partitions): stop its consumers first."""


class ConsumerGroupNotFoundError(LogError, LookupError):
    """A consumer group has never committed on the log (a position move would create it)."""


class PositionError(LogError, ValueError):
    """A consumer position cannot be set as asked: an offset outside the partition's range, or no
    time to search by in the records; the message says which and what is valid."""


class RebalanceError(LogError):
    """Partitions were reassigned during a read of a subscribed tailer; call read again."""

    retriable = True


class UnsupportedOperationError(LogError, NotImplementedError):
    """The backend cannot honour this operation (see its capabilities)."""


# --- stream -------------------------------------------------------------------------------------


class StreamError(ConveyorError):
    """Base of the computation framework's errors."""


class TopologyError(StreamError, ValueError):
    """A topology is invalid: a cycle, a bad mapping, a duplicate computation."""


class NoRetryError(StreamError):
    """Raised by a computation to fail a record at once, without retry (Nuxeo's StreamNoRetryException)."""


# --- kv / pubsub / transient --------------------------------------------------------------------


class KeyValueError(ConveyorError):
    """Base of the key-value store's errors (bad key, bad value, bad TTL)."""


class PubSubError(ConveyorError):
    """Base of the pub/sub layer's errors."""


class TransientStoreError(ConveyorError):
    """Base of the transient store's errors."""


class StorageLimitExceededError(TransientStoreError):
    """A put would take the transient store past its absolute maximum size."""


# --- work ---------------------------------------------------------------------------------------


class WorkError(ConveyorError):
    """Base of the WorkManager's errors."""


class UnknownWorkTypeError(WorkError, LookupError):
    """A queue holds a Work whose type name is not registered in this process."""


class WorkQueueFullError(WorkError):
    """The queue has reached its capacity."""

    retriable = True


# --- bulk and repository ------------------------------------------------------------------------


class BulkError(ConveyorError):
    """Base of the Bulk Service's errors."""


class BulkValidationError(BulkError, ValueError):
    """A bulk command is invalid (unknown action, bad params, bad query); nothing was scheduled."""


class BulkDecodeError(BulkValidationError, CodecError):
    """Bytes read from a bulk stream or store (a command, bucket, status or status delta) that
    cannot be decoded: retrying cannot help, so the pipeline skips them (``skip_undecodable``)."""


class RepositoryError(ConveyorError):
    """Base of the document repository's errors."""


class DocumentNotFoundError(RepositoryError, LookupError):
    """No document has this id or path."""


class QueryError(RepositoryError, ValueError):
    """An NXQL query is invalid; ``position`` is the 0-based character offset of the problem."""

    def __init__(self, message: str, query: str = "", position: int | None = None) -> None:
        if position is not None and query:
            message = f"{message} at position {position}: {query[:position]}>>>{query[position:]}"
        super().__init__(message)
        self.query = query
        self.position = position


# --- kv input and transient limits (appended by the kv/transient area) --------------------------


class KeyValueInputError(KeyValueError, ValueError):
    """A key, value or TTL given to a key-value store is invalid; the message names the problem."""


class KeyValueTypeError(KeyValueError, TypeError):
    """A value given to a key-value store is of a type it cannot store (bytes, str, int or None)."""


class TransientStoreInputError(TransientStoreError, ValueError):
    """An argument given to a transient store is invalid (a blob, a parameter, a key)."""


TransientStoreFullError = StorageLimitExceededError
"""The issue's name for :class:`StorageLimitExceededError` (a put past ``absolute_max_size_mb``)."""


# --- pubsub input and lifecycle (appended by the pubsub area) -----------------------------------


class PubSubInputError(PubSubError, ValueError):
    """A topic, payload, callback or node id given to pub/sub is invalid; the message names it."""


class PubSubClosedError(PubSubError):
    """The pub/sub provider has been closed."""


# --- stream processor (appended by the stream area) ---------------------------------------------


class StreamProcessorError(StreamError):
    """A StreamProcessor was used in a state that does not allow it (started twice, after stop)."""


# --- repository queries (appended by the repository area) ---------------------------------------


_SHOWN = 60  # characters of a long query line shown on each side of an error's position


class NXQLError(QueryError):
    """An NXQL query cannot be parsed or compiled; the message shows the query with a caret line.

    ``query`` is the query text and ``position`` the 0-based offset of the offending character.
    """

    def __init__(self, message: str, query: str = "", position: int | None = None) -> None:
        if position is not None and query:
            position = max(0, min(position, len(query)))
            line_start = query.rfind("\n", 0, position) + 1
            line_end = query.find("\n", position)
            line = query[line_start : len(query) if line_end < 0 else line_end].replace("\t", " ")
            column = position - line_start
            if len(line) > 2 * _SHOWN:  # a long line is shown around the position only
                start = max(0, column - _SHOWN)
                shown = line[start : column + _SHOWN]
                line = ("..." if start else "") + shown + ("..." if column + _SHOWN < len(line) else "")
                column += (3 if start else 0) - start
            caret = " " * column + "^"
            message = f"{message} (at position {position})\n  {line}\n  {caret}"
        super().__init__(message)
        self.query = query
        self.position = position


class QueryRefusedError(QueryError):
    """The database refuses a query the parser accepted, for its size or shape (too many terms,
    parameters or sort keys for that database); the message gives the database's reason.

    A query error, not :class:`BackendUnavailableError`: the same query fails again, a smaller
    one may pass.
    """


# --- bulk (appended by the bulk area) -----------------------------------------------------------


class BulkExclusiveError(BulkError):
    """A command of an exclusive bulk action is already running on that repository; nothing was scheduled."""
