"""Membership of consumer groups across the processes of one machine.

Each subscriber publishes ``<root>/.members/<group id>/<member id>.member`` (the logs it reads, as
JSON) and holds an ``flock`` on it for as long as it lives. A member whose lock can be taken is
dead (the OS released it, even after ``kill -9``): whoever notices removes its file. Every member
computes the same assignment from the sorted list of live members, and a partition is read only
by the member holding its partition lock (see ``LocalSubscriber``).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid

from conveyor.log.local.diskio import remove_quietly, storage_error
from conveyor.log.local.locks import try_lock_file
from conveyor.log.names import Name
from conveyor.log.types import LogPartition

__all__ = ["Membership", "assign", "live_members"]

_SUFFIX = ".member"


class Membership:
    """This process's membership in a group (see module doc)."""

    def __init__(self, root: str, group: Name, names: list[Name]) -> None:
        self.directory = os.path.join(root, ".members", group.id)
        os.makedirs(self.directory, exist_ok=True)
        self.member_id = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.names = list(names)
        self._known: dict[str, list[Name]] = {}
        path = os.path.join(self.directory, self.member_id + _SUFFIX)
        temp = path + ".tmp"
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise storage_error(exc, f"joining group {group.urn!r} of the local log", temp) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps({"names": [n.urn for n in names], "pid": os.getpid()}).encode())
            os.rename(temp, path)  # visible only once locked
        except BaseException as exc:
            os.close(fd)
            remove_quietly(temp)
            if isinstance(exc, OSError):
                raise storage_error(exc, f"joining group {group.urn!r} of the local log", temp) from exc
            raise
        self._fd: int | None = fd
        self.path = path

    def members(self) -> dict[str, list[Name]]:
        """Live members (id -> subscribed logs), dead ones removed on the way."""
        live: dict[str, list[Name]] = {self.member_id: self.names}
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.endswith(_SUFFIX):
                continue
            member = entry[: -len(_SUFFIX)]
            if member == self.member_id:
                continue
            path = os.path.join(self.directory, entry)
            fd = try_lock_file(path)
            if fd is not None:  # its holder is gone
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                finally:
                    os.close(fd)
                self._known.pop(member, None)
                continue
            names = self._known.get(member)
            if names is None:
                names = _read_names(path)
                if names is None:
                    continue
                self._known[member] = names
            live[member] = names
        return live

    def close(self) -> None:
        """Leave the group."""
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None


def live_members(root: str, group: Name) -> dict[str, list[Name]]:
    """The live members of ``group`` under ``root`` (member id -> subscribed logs), read from
    outside the group (files of dead members are left to the members to remove)."""
    directory = os.path.join(root, ".members", group.id)
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return {}
    live: dict[str, list[Name]] = {}
    for entry in entries:
        if not entry.endswith(_SUFFIX):
            continue
        path = os.path.join(directory, entry)
        fd = try_lock_file(path)
        if fd is not None:  # its holder is gone
            os.close(fd)
            continue
        names = _read_names(path)  # None: gone meanwhile, or not written yet
        if names is not None:
            live[entry[: -len(_SUFFIX)]] = names
    return live


def _read_names(path: str) -> list[Name] | None:
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read())
        return [Name.of_urn(urn) for urn in data["names"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def assign(members: dict[str, list[Name]], sizes: dict[Name, int]) -> dict[str, list[LogPartition]]:
    """Round-robin partitions of each log over the members subscribed to it (by member id)."""
    result: dict[str, list[LogPartition]] = {member: [] for member in members}
    ordered = sorted(members)
    for name in sorted({n for names in members.values() for n in names}, key=lambda n: n.urn):
        size = sizes.get(name)
        if size is None:
            continue
        readers = [m for m in ordered if name in members[m]]
        for index in range(size):
            result[readers[index % len(readers)]].append(LogPartition(name, index))
    return result
