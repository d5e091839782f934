"""Options of a ``local://`` log manager, parsed from the URL query and keyword arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from conveyor.errors import ConfigurationError
from conveyor.flags import parse_flag

__all__ = ["FsyncPolicy", "LocalLogOptions", "Retention", "parse_local_url"]

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
}


@dataclass(frozen=True, slots=True)
class Retention:
    """Nuxeo's retention ``<n><unit>`` (unit s, m, h or d): segments roll every cycle, ``n`` kept.

    ``cycles == 0`` disables retention (and rolling by time).
    """

    cycles: int
    cycle_ms: int
    text: str

    @classmethod
    def parse(cls, text: str) -> Retention:
        """Parse ``4d``, ``12h``, ``30m``, ``10s``; ``""``, ``none`` or ``0<unit>`` disable it."""
        value = str(text).strip().lower()
        if value in ("", "none", "0"):
            return cls(0, 0, "")
        match = re.fullmatch(r"(\d+)([smhd])", value)
        if match is None:
            raise ConfigurationError(
                f"retention must look like 4d, 12h, 30m or 10s (n cycles of a unit), got {text!r}"
            )
        cycles = int(match.group(1))
        return cls(cycles, _UNITS[match.group(2)], value if cycles else "")

    def cycle(self, now_ms: int) -> int:
        """The number of the cycle ``now_ms`` falls in (0 without retention)."""
        return now_ms // self.cycle_ms if self.cycles else 0


@dataclass(frozen=True, slots=True)
class FsyncPolicy:
    """When appended data is forced to disk: ``never`` (the OS decides: survives a process crash,
    not a power loss), ``always`` (every append), every ``N`` records, or every ``N ms``."""

    records: int = 0
    interval_ms: int = 0
    always: bool = False
    text: str = "never"

    @classmethod
    def parse(cls, text: str | int) -> FsyncPolicy:
        """Parse ``never``, ``always``, ``100`` (records) or ``50ms`` (milliseconds)."""
        value = str(text).strip().lower()
        if value in ("never", "no", "false", "0"):
            return cls()
        if value in ("always", "yes", "true", "1"):
            return cls(always=True, text="always")
        if value.isdigit():
            return cls(records=int(value), text=value)
        match = re.fullmatch(r"(\d+)ms", value)
        if match is not None and int(match.group(1)) > 0:
            return cls(interval_ms=int(match.group(1)), text=value)
        raise ConfigurationError(
            f"fsync must be never, always, a record count (100) or an interval (50ms), got {text!r}"
        )


def _size(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a size in bytes, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"(\d+)\s*([a-z]*)", str(value).strip().lower())
        if match is None or match.group(2) not in _SIZE_UNITS:
            raise ConfigurationError(f"{name} must be a size such as 65536, 64k or 64m, got {value!r}")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum} bytes, got {value!r}")
    return size


@dataclass(frozen=True, slots=True)
class LocalLogOptions:
    """Settings of a local log manager (URL query keys have the same names)."""

    root: str
    retention: Retention = Retention(4, 86_400_000, "4d")
    """Retention of logs created by this manager (existing logs keep theirs)."""
    segment_bytes: int = 64 << 20
    """A segment rolls once it holds this many bytes."""
    window_bytes: int = 16 << 20
    """Size of the mmap windows readers use (memory stays bounded by it)."""
    max_record_bytes: int = 4 << 20
    """Larger encoded records raise ``RecordTooLargeError``."""
    fsync: FsyncPolicy = FsyncPolicy()
    sync_commits: bool = True
    """fsync committed offsets (written atomically in any case)."""
    poll_max_ms: float = 1.0
    """Longest sleep of a waiting tailer between two looks at its files."""
    poll_idle_ms: float = 10.0
    """Longest sleep once a tailer has been idle for 0.2 s (bounds the latency after a lull)."""
    codec: str | None = None


_KEYS = {
    "retention",
    "segment_bytes",
    "window_bytes",
    "max_record_bytes",
    "fsync",
    "sync_commits",
    "poll_max_ms",
    "poll_idle_ms",
    "codec",
}


def parse_local_url(url: str, options: dict[str, Any]) -> LocalLogOptions:
    """Parse ``local:///dir?key=value...`` (or ``file://``); ``options`` override the query."""
    parts = urlsplit(url)
    if parts.scheme not in ("local", "file"):
        raise ConfigurationError(f"not a local log URL: {url!r}")
    # local://relative/dir: the host part is the first path element
    path = unquote(parts.netloc + parts.path if parts.netloc not in ("", "localhost") else parts.path)
    if not path:
        raise ConfigurationError(f"local log URL {url!r} names no directory (local:///path/to/dir)")
    values: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    values.update(options)
    unknown = set(values) - _KEYS
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {sorted(unknown)} for local log {url!r}; known: {sorted(_KEYS)}"
        )
    segment = _size("segment_bytes", values.get("segment_bytes", 64 << 20), 4096)
    max_record = _size("max_record_bytes", values.get("max_record_bytes", 4 << 20), 1)
    if max_record >= 0xFFFFFFF0:
        raise ConfigurationError(f"max_record_bytes must be below 4 GiB, got {max_record}")
    window = _size("window_bytes", values.get("window_bytes", 16 << 20), 1 << 16)
    try:
        poll = float(values.get("poll_max_ms", 1.0))
    except (TypeError, ValueError):
        raise ConfigurationError(f"poll_max_ms must be a number, got {values['poll_max_ms']!r}") from None
    if not 0 < poll <= 1000:
        raise ConfigurationError(f"poll_max_ms must be in (0, 1000], got {poll}")
    try:
        idle = float(values.get("poll_idle_ms", 10.0))
    except (TypeError, ValueError):
        raise ConfigurationError(f"poll_idle_ms must be a number, got {values['poll_idle_ms']!r}") from None
    if not 0 < idle <= 10_000:
        raise ConfigurationError(f"poll_idle_ms must be in (0, 10000], got {idle}")
    codec = values.get("codec")
    return LocalLogOptions(
        root=path,
        retention=Retention.parse(values.get("retention", "4d")),
        segment_bytes=segment,
        window_bytes=window,
        max_record_bytes=max_record,
        fsync=FsyncPolicy.parse(values.get("fsync", "never")),
        sync_commits=parse_flag("sync_commits", values.get("sync_commits", True)),
        poll_max_ms=poll,
        poll_idle_ms=idle,
        codec=str(codec) if codec else None,
    )
