"""``conveyor stream``: Nuxeo's stream.sh for Conveyor logs.

Subcommands: list, lag, tail, cat, dump, restore, position, monitor, check, repair.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import enum
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from conveyor.cli.common import (
    EXIT_ERROR,
    EXIT_USAGE,
    ConfigOption,
    console,
    fail,
    handle_errors,
    is_tty,
    settings_from,
)
from conveyor.cli.render import describe_message, describe_raw
from conveyor.log import LogLag, LogManager, LogOffset, LogPartition, LogTailer, Name, open_log_manager
from conveyor.log.local import LocalLogManager
from conveyor.log.local.check import DamagedRange
from conveyor.log.positions import move_group, parse_timestamp
from conveyor.work.inspect import message_timestamp

app = typer.Typer(help="Inspect and manage streams (logs): Nuxeo's stream.sh.", no_args_is_help=True)

ADMIN_GROUP = "admin/tools"

LogArg = Annotated[str, typer.Argument(help="Log name, as an urn (e.g. bulk/command).")]


@contextlib.contextmanager
def log_manager(config: Path | None) -> Iterator[tuple[LogManager, str | None]]:
    """The configured log manager (raw bytes codec) and the configured record codec name."""
    settings = settings_from(config)
    manager = open_log_manager(settings.resolve(settings.log.url), default_codec="bytes")
    try:
        yield manager, settings.log.codec
    finally:
        manager.close()


def _tailer(manager: LogManager, name: Name, partition: int | None) -> LogTailer[bytes]:
    source = LogPartition(name, partition) if partition is not None else name
    # A private admin group per call: reading never commits, so it leaves no trace.
    group = Name.of("admin", f"tools{time.monotonic_ns()}")
    return manager.create_tailer(group, source, codec="bytes")


@app.command("list")
@handle_errors
def list_logs(config: ConfigOption = None) -> None:
    """List logs with their partitions, records and consumer groups."""
    with log_manager(config) as (manager, _):
        table = Table("log", "partitions", "records", "consumer groups")
        for name in manager.list_all():
            groups = manager.list_consumer_groups(name)
            records = sum(lag.upper for lag in manager.lag_per_partition(name, ADMIN_GROUP))
            table.add_row(
                name.urn, str(manager.size(name)), str(records), ", ".join(g.urn for g in groups) or "-"
            )
        console.print(table)


@app.command()
@handle_errors
def lag(
    name: Annotated[str | None, typer.Argument(help="Log (default: every log).")] = None,
    group: Annotated[str | None, typer.Option("--group", "-g", help="Only this consumer group.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="One row per partition.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show the lag of consumer groups: records not yet committed, per log (and partition)."""
    with log_manager(config) as (manager, _):
        names = [Name.of_urn(name)] if name else manager.list_all()
        table = Table("log", "group", "partition", "lag", "committed", "end")
        for log in names:
            groups = [Name.of_urn(group)] if group else manager.list_consumer_groups(log)
            for grp in groups:
                lags = manager.lag_per_partition(log, grp)
                if verbose:
                    for index, part in enumerate(lags):
                        table.add_row(
                            log.urn,
                            grp.urn,
                            str(index),
                            str(part.lag),
                            str(part.lower_offset),
                            str(part.upper_offset),
                        )
                total = manager.lag(log, grp)
                table.add_row(
                    log.urn,
                    grp.urn,
                    "all",
                    str(total.lag),
                    str(total.lower),
                    str(total.upper),
                    style="bold" if verbose else None,
                )
        console.print(table)


def _print_records(
    tailer: LogTailer[bytes],
    codec: str | None,
    limit: int | None,
    follow: bool,
    as_json: bool,
    raw: bool = False,
) -> int:
    count = 0
    while limit is None or count < limit:
        record = tailer.read(1.0 if follow else 0.2)
        if record is None:
            if follow:
                continue
            break
        offset = record.offset
        if raw:
            fields = describe_raw(record.message, None if as_json else 120)
        else:
            fields = describe_message(record.message, offset.partition.name.urn, codec)
        if as_json:
            typer.echo(json.dumps({"offset": str(offset), **fields}))
        else:
            console.print(
                f"{offset} {_record_line(fields)}", highlight=False, markup=False, soft_wrap=True, crop=False
            )
        count += 1
        if follow:
            sys.stdout.flush()
    return count


_MAX_TEXT = 1000  # characters of a Work's fields or a record's data on one text line


def _short(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else f"{text[:_MAX_TEXT]}... ({len(text)} characters)"


def _record_line(fields: dict[str, Any]) -> str:
    """One text line for the fields of a message (see ``describe_message``)."""
    kind = fields["kind"]
    if kind in ("work", "dead letter"):
        head = "dead letter " if kind == "dead letter" else ""
        parts = [f"{head}{fields.get('type') or '?'} id={fields.get('id')}"]
        for key in ("queue", "category", "failed_at", "written_at", "token"):
            if fields.get(key):
                parts.append(f"{key}={fields[key]}")
        for key in ("untracked", "coalescing"):
            if fields.get(key):
                parts.append(key)
        if "document" in fields:
            parts.append(f"document={json.dumps(fields['document'])}")
        if "error" in fields:
            parts.append(f"error={json.dumps(fields['error'])}")
        if "external" in fields:
            parts.append(f"fields: {fields['external']}")
        elif "undecodable" in fields:
            parts.append(f"fields: {fields['undecodable']}")
        else:
            parts.append(_short(json.dumps(fields.get("fields"), default=repr)))
        return " ".join(parts)
    if "data_base64" in fields:  # --raw
        data = base64.b64decode(fields["data_base64"])
        return f"size={fields['size']} {str(data)[2:-1]}"
    return (
        f"key={fields['key']} {fields['watermark']} flags={fields['flags']} size={fields['size']} "
        f"{fields['codec']} {_short(fields['data'])}"
    )


RawOption = Annotated[
    bool,
    typer.Option("--raw", help="Show the stored bytes undecoded (escaped; base64 with --json)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line and record.")]


@app.command()
@handle_errors
def cat(
    name: LogArg,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=0, help="At most this many records.")
    ] = None,
    partition: Annotated[int | None, typer.Option("--partition", "-p")] = None,
    offset: Annotated[
        int | None, typer.Option("--offset", help="Start at this offset (with --partition).")
    ] = None,
    as_json: JsonOption = False,
    raw: RawOption = False,
    config: ConfigOption = None,
) -> None:
    """Print the records of a log from the start, decoded: Records with the log's codec, Works
    (type, id, fields) in work/<queue> logs, dead letters (with their error) in work/dlq."""
    with log_manager(config) as (manager, codec):
        tailer = _tailer(manager, Name.of_urn(name), partition)
        if offset is not None:
            if partition is None:
                fail("--offset needs --partition", EXIT_USAGE)
            tailer.seek(LogOffset(LogPartition(Name.of_urn(name), partition), offset))
        _print_records(tailer, codec, limit, False, as_json, raw)


@app.command()
@handle_errors
def tail(
    name: LogArg,
    count: Annotated[
        int, typer.Option("--count", "-n", min=0, help="Records to show from the end of each partition.")
    ] = 10,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records.")] = False,
    as_json: JsonOption = False,
    raw: RawOption = False,
    config: ConfigOption = None,
) -> None:
    """Print the last records of a log (decoded as by `cat`), and follow new ones with --follow."""
    with log_manager(config) as (manager, codec):
        log = Name.of_urn(name)
        tailer = _tailer(manager, log, None)
        ends = manager.lag_per_partition(log, ADMIN_GROUP)
        for index, part in enumerate(ends):
            tailer.seek(LogOffset(LogPartition(log, index), max(0, part.upper_offset - count)))
        _print_records(tailer, codec, None, follow, as_json, raw)


@app.command()
@handle_errors
def dump(
    name: LogArg,
    output: Annotated[Path, typer.Argument(help="File to write (JSON lines).")],
    config: ConfigOption = None,
) -> None:
    """Dump every record of a log to a file (one JSON line per record, data in base64)."""
    with log_manager(config) as (manager, _):
        log = Name.of_urn(name)
        tailer = _tailer(manager, log, None)
        written = 0
        try:
            opened = output.open("w", encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
        with opened as handle:
            handle.write(json.dumps({"log": log.urn, "partitions": manager.size(log), "format": 1}) + "\n")
            while True:
                batch = tailer.read_batch(1000, 0.2)
                if not batch:
                    break
                for record in batch:
                    handle.write(
                        json.dumps(
                            {
                                "partition": record.offset.partition.partition,
                                "offset": record.offset.offset,
                                "data": base64.b64encode(record.message).decode("ascii"),
                            }
                        )
                        + "\n"
                    )
                    written += 1
        console.print(f"dumped {written} records of {log.urn} to {output}")


@app.command()
@handle_errors
def restore(
    source: Annotated[Path, typer.Argument(help="A file written by `stream dump`.")],
    name: Annotated[
        str | None, typer.Option("--log", help="Restore into this log (default: the dumped one).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Append the records of a dump to a log (created if missing), keeping their partitions."""
    try:
        opened = source.open(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror or exc}")
    with log_manager(config) as (manager, _), opened as handle:
        try:
            header = json.loads(handle.readline())
            log = Name.of_urn(name or header["log"])
            partitions = int(header["partitions"])
        except (ValueError, KeyError, TypeError) as exc:
            fail(f"{source}: not a stream dump (bad header: {exc})")
        manager.create_if_not_exists(log, partitions)
        size = manager.size(log)
        appender = manager.appender(log, codec="bytes")
        batch: list[tuple[str | int, bytes]] = []
        restored = 0
        for line_no, line in enumerate(handle, start=2):
            try:
                item = json.loads(line)
                batch.append((int(item["partition"]) % size, base64.b64decode(item["data"], validate=True)))
            except (ValueError, KeyError, TypeError) as exc:
                fail(f"{source}:{line_no}: bad record ({exc}); {restored} records restored before it")
            if len(batch) >= 1000:
                restored += len(appender.append_many(batch))
                batch = []
        restored += len(appender.append_many(batch))
        console.print(f"restored {restored} records into {log.urn}")


class Position(enum.StrEnum):
    """Where ``stream position --to`` moves a group (``start`` is an alias of ``beginning``)."""

    BEGINNING = "beginning"
    START = "start"
    END = "end"
    OFFSET = "offset"
    TIMESTAMP = "timestamp"


@app.command()
@handle_errors
def position(
    name: LogArg,
    group: Annotated[str, typer.Option("--group", "-g", help="Consumer group to move.")],
    to: Annotated[
        Position,
        typer.Option("--to", help="beginning (or start), end, offset (with --partition) or timestamp."),
    ],
    partition: Annotated[
        int | None, typer.Option("--partition", "-p", help="Only this partition (required for --to offset).")
    ] = None,
    offset: Annotated[int | None, typer.Option("--offset", help="For --to offset.")] = None,
    timestamp: Annotated[
        str | None, typer.Option("--timestamp", help="ISO date or epoch ms, for --to timestamp.")
    ] = None,
    create: Annotated[
        bool, typer.Option("--create", help="Create the group if it never committed on this log.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Move a consumer group's committed position (refused while the group has consumers running).

    --to timestamp moves each partition to its first record at or after the time (the end when
    there is none): Kafka looks it up by append time; on other logs a search reads the time of
    the records (a Record's watermark, when a Work was written, when a dead letter failed).
    """
    where = "beginning" if to is Position.START else to.value
    if where == "offset" and (partition is None or offset is None):
        fail("--to offset needs --partition and --offset", EXIT_USAGE)
    if where != "offset" and offset is not None:
        fail(f"--offset goes with --to offset, not --to {to.value}", EXIT_USAGE)
    if where == "timestamp" and timestamp is None:
        fail("--to timestamp needs --timestamp", EXIT_USAGE)
    if where != "timestamp" and timestamp is not None:
        fail(f"--timestamp goes with --to timestamp, not --to {to.value}", EXIT_USAGE)
    millis = _parse_timestamp(timestamp) if timestamp is not None else None
    with log_manager(config) as (manager, codec):
        log = Name.of_urn(name)
        lags = move_group(
            manager,
            log,
            Name.of_urn(group),
            where,
            partition=partition,
            offset=offset,
            timestamp_ms=millis,
            codec=codec,
            create=create,
            timestamp_of=message_timestamp,
        )
        total = LogLag.total(lags)
        positions = ", ".join(f"{index}:{lag.lower_offset}" for index, lag in enumerate(lags))
        console.print(
            f"group {group} on {log.urn}: lag {total.lag} of {total.upper} records "
            f"(position per partition {positions})",
            highlight=False,
            soft_wrap=True,
        )


def _parse_timestamp(value: str) -> int:
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        fail(f"--timestamp: {exc}", EXIT_USAGE)


@app.command()
@handle_errors
def monitor(
    interval: Annotated[
        float, typer.Option("--interval", "-i", min=0.01, help="Seconds between refreshes.")
    ] = 1.0,
    iterations: Annotated[
        int | None, typer.Option("--iterations", min=1, help="Stop after this many refreshes.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Every group's lag and throughput (records/s), refreshed every interval: a live table on a
    terminal; otherwise (piped, redirected) plain lines, one per log and group at each refresh."""
    with log_manager(config) as (manager, _):
        previous: dict[tuple[str, str], tuple[float, int, int]] = {}

        def rows() -> list[tuple[str, str, str, str, str, str]]:
            now = time.monotonic()
            found = []
            for log in manager.list_all():
                for grp in manager.list_consumer_groups(log) or [Name.of_urn(ADMIN_GROUP)]:
                    total = manager.lag(log, grp)
                    key = (log.urn, grp.urn)
                    before = previous.get(key)
                    rate_in = rate_out = "-"
                    if before is not None and now > before[0]:
                        span = now - before[0]
                        rate_in = f"{(total.upper - before[1]) / span:,.0f}"
                        rate_out = f"{(total.lower - before[2]) / span:,.0f}"
                    previous[key] = (now, total.upper, total.lower)
                    shown_group = grp.urn if grp.urn != ADMIN_GROUP else "-"
                    found.append(
                        (log.urn, shown_group, f"{total.lag:,}", f"{total.upper:,}", rate_in, rate_out)
                    )
            return found

        def snapshot() -> Table:
            table = Table(
                "log", "group", "lag", "end", "append/s", "consume/s", title="conveyor stream monitor"
            )
            for row in rows():
                table.add_row(*row)
            return table

        def lines() -> None:
            when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            for log, grp, lag, end, rate_in, rate_out in rows():
                typer.echo(
                    f"{when} log={log} group={grp} lag={lag} end={end} "
                    f"append/s={rate_in} consume/s={rate_out}"
                )
            sys.stdout.flush()

        done = 0
        if not is_tty():  # a live view draws nothing until it stops when piped: print lines instead
            lines()
            while iterations is None or done < iterations:
                time.sleep(interval)
                lines()
                done += 1
            return
        with Live(snapshot(), console=console, auto_refresh=False) as live:
            while iterations is None or done < iterations:
                time.sleep(interval)
                live.update(snapshot(), refresh=True)
                done += 1


# --- damage in the local log (check, repair) -----------------------------------------------------


def _local_logs(manager: LogManager, name: str | None) -> tuple[LocalLogManager, list[Name]]:
    if not isinstance(manager, LocalLogManager):
        fail(
            f"stream check and stream repair read the files of a local log (local://...); "
            f"the configured log is {manager.url}"
        )
    if name is None:
        return manager, manager.list_all()
    log = Name.of_urn(name)
    manager.size(log)  # LogNotFoundError (a clean error) when it does not exist
    return manager, [log]


def _describe(log: Name, damage: DamagedRange) -> str:
    last = damage.end_offset - 1
    if damage.lost == 0:  # a damaged seal: the next segment starts right after it
        offsets = f"at offset {damage.first_offset}, no offset"
    elif last > damage.first_offset:
        offsets = f"offsets {damage.first_offset}..{last}"
    else:
        offsets = f"offset {last}"
    kept = f"; {damage.kept} valid record(s) after it are kept" if damage.kept else ""
    return (
        f"{log.urn} partition {damage.partition}: {offsets} damaged ({damage.lost} offset(s), "
        f"{damage.damaged_bytes} bytes at position {damage.position} of {damage.path}): {damage.reason}{kept}"
    )


DamageLogArg = Annotated[str | None, typer.Argument(help="Log name, as an urn (default: every log).")]


@app.command()
@handle_errors
def check(name: DamageLogArg = None, config: ConfigOption = None) -> None:
    """Scan the files of the local log for damage, per partition; exit 1 when some is found.

    Damage (a checksum failure, a truncated segment) stops readers with LogCorruptedError until
    `conveyor stream repair LOG --skip-damaged` quarantines it. A torn tail (an unfinished write at
    the very end) is not damage: the next append seals over it.
    """
    with log_manager(config) as (manager, _):
        local, names = _local_logs(manager, name)
        found = 0
        for log in names:
            partitions = local.check(log)
            damaged = [d for part in partitions for d in part.damaged]
            records = sum(part.records for part in partitions)
            for damage in damaged:
                console.print(f"[red]damaged[/] {_describe(log, damage)}", highlight=False, soft_wrap=True)
            for part in partitions:
                if part.torn is not None:
                    console.print(
                        f"torn tail {log.urn} partition {part.partition}: an unfinished write at position "
                        f"{part.torn.position} of {part.torn.path} (offset {part.torn.offset}); the next "
                        "append seals over it",
                        highlight=False,
                        soft_wrap=True,
                    )
            state = f"{len(damaged)} damaged range(s)" if damaged else "ok"
            console.print(f"{log.urn}: {len(partitions)} partition(s), {records} readable record(s), {state}")
            found += len(damaged)
        if found:
            console.print(
                f"{found} damaged range(s): readers stop there. `conveyor stream repair LOG --skip-damaged` "
                "moves the damaged bytes aside and lets readers go on past them (their records are lost)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_ERROR)


@app.command()
@handle_errors
def repair(
    name: DamageLogArg = None,
    skip_damaged: Annotated[
        bool,
        typer.Option(
            "--skip-damaged",
            help="Quarantine each damaged range and skip its offsets (their records are lost).",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Quarantine the damaged ranges of the local log so readers go on past them.

    The damaged bytes move to P-NN/quarantine/ (kept, with a .json describing them); their offsets
    become a gap that is never given to other records. Stop nothing: appenders wait meanwhile.
    """
    with log_manager(config) as (manager, _):
        local, names = _local_logs(manager, name)
        if not skip_damaged:
            damaged = [(log, d) for log in names for part in local.check(log) for d in part.damaged]
            for log, damage in damaged:
                console.print(f"[red]damaged[/] {_describe(log, damage)}", highlight=False, soft_wrap=True)
            if damaged:
                fail(
                    f"{len(damaged)} damaged range(s), nothing changed: pass --skip-damaged to quarantine "
                    "them (the records they held are lost)"
                )
            console.print("no damage found")
            return
        lost = 0
        repaired = 0
        for log in names:
            for done in local.repair(log):
                repaired += 1
                lost += done.damage.lost
                console.print(
                    f"repaired {_describe(log, done.damage)}; up to {done.damage.lost} record(s) lost, "
                    f"bytes moved to {done.quarantine}",
                    highlight=False,
                    soft_wrap=True,
                )
        if repaired:
            console.print(
                f"{repaired} damaged range(s) quarantined, {lost} offset(s) skipped (up to {lost} record(s) "
                "lost); readers go on past them"
            )
        else:
            console.print("no damage found")


# --- deleting a consumer group -------------------------------------------------------------------


@app.command("delete-group")
@handle_errors
def delete_group(
    names: Annotated[list[str], typer.Argument(help="Logs to delete the group from, as urns.")],
    group: Annotated[str, typer.Option("--group", "-g", help="Consumer group to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
) -> None:
    """Delete a consumer group from logs: its committed positions are forgotten (the records stay).

    Refused on a log where the group has members (a running consumer, in any process): stop them
    first. Exit 1 when the group was refused or had no position on one of the logs.
    """
    # imported here: this command is kept apart from the others of the module
    from rich.markup import escape

    from conveyor.cli.common import err_console
    from conveyor.errors import ConsumerGroupActiveError

    grp = Name.of_urn(group)
    logs = [Name.of_urn(name) for name in names]
    with log_manager(config) as (manager, _):
        for log in logs:
            manager.size(log)  # LogNotFoundError (a clean error) before asking anything
        if not yes:
            typer.confirm(
                f"Delete consumer group {grp.urn} from {', '.join(log.urn for log in logs)}? "
                "Its committed positions are forgotten",
                abort=True,
            )
        failed = 0
        for log in logs:
            try:
                deleted = manager.delete_consumer_group(grp, log)
            except ConsumerGroupActiveError as exc:
                err_console.print(
                    f"[bold red]refused:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
                )
                failed += 1
                continue
            if deleted:
                console.print(f"deleted consumer group {grp.urn} from {log.urn}", highlight=False)
            else:
                err_console.print(
                    f"[bold red]error:[/] consumer group {grp.urn} has no committed position on {log.urn}",
                    highlight=False,
                    soft_wrap=True,
                )
                failed += 1
        if failed:
            raise typer.Exit(EXIT_ERROR)
