"""``conveyor kv``: read and write the key-value stores."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.common import ConfigOption, console, fail, handle_errors
from conveyor.runtime.node import Conveyor

if TYPE_CHECKING:
    from conveyor.kv import KeyValueStore

app = typer.Typer(help="Read and write key-value stores.", no_args_is_help=True)

StoreOption = Annotated[str, typer.Option("--store", "-s", help="Store name (a namespace).")]


def _store_call(config: Path | None, store: str) -> tuple[Conveyor, KeyValueStore]:
    node = Conveyor.from_config(config)
    return node, node.kv_store(store)


@app.command()
@handle_errors
def get(
    key: str,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help='Print {"store", "key", "value"} (or "value_base64" for bytes that are not UTF-8).'
        ),
    ] = False,
    store: StoreOption = "default",
    config: ConfigOption = None,
) -> None:
    """Print the value of KEY exactly as stored (exit 1 if absent).

    The bytes go to stdout unchanged (no folding, no added newline, except on a terminal).
    """
    node, kv = _store_call(config, store)
    try:
        value = kv.get(key)
        if value is None:
            fail(f"no key {key!r} in store {store!r}")
        if as_json:
            _print_json(store, key, value)
        else:
            _write_raw(value)
    finally:
        node.stop()


def _write_raw(value: bytes) -> None:
    """``value`` on stdout as it is; a newline is added only on a terminal, for the prompt."""
    out = sys.stdout.buffer
    out.write(value)
    if sys.stdout.isatty() and not value.endswith(b"\n"):
        out.write(b"\n")
    out.flush()


def _print_json(store: str, key: str, value: bytes) -> None:
    data: dict[str, str] = {"store": store, "key": key}
    try:
        data["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        data["value_base64"] = base64.b64encode(value).decode("ascii")
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@app.command()
@handle_errors
def put(
    key: str,
    value: str,
    ttl: Annotated[float | None, typer.Option("--ttl", min=0, help="Expire after this many seconds.")] = None,
    store: StoreOption = "default",
    config: ConfigOption = None,
) -> None:
    """Set KEY to VALUE (a string)."""
    node, kv = _store_call(config, store)
    try:
        kv.put(key, value, ttl=ttl)
    finally:
        node.stop()


@app.command()
@handle_errors
def delete(key: str, store: StoreOption = "default", config: ConfigOption = None) -> None:
    """Remove KEY."""
    node, kv = _store_call(config, store)
    try:
        kv.put(key, None)
    finally:
        node.stop()


@app.command()
@handle_errors
def keys(
    prefix: Annotated[str, typer.Argument(help="Only keys starting with this.")] = "",
    store: StoreOption = "default",
    config: ConfigOption = None,
) -> None:
    """List the keys of a store (optionally by prefix)."""
    node, kv = _store_call(config, store)
    try:
        for key in sorted(kv.keys(prefix)):
            console.print(key, highlight=False, markup=False)
    finally:
        node.stop()
