"""The ``conveyor`` command line: ``conveyor --help`` lists the subcommands."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from conveyor.cli import bulk, demo, kv, node, stream, web, work
from conveyor.cli.common import (
    ConfigOption,
    console,
    err_console,
    fail,
    handle_errors,
    settings_from,
)
from conveyor.errors import ConveyorError
from conveyor.runtime.settings import Settings

app = typer.Typer(
    name="conveyor",
    help="Conveyor: Works, streams, bulk actions, key-value stores, on one machine or a cluster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stream.app, name="stream")
app.add_typer(kv.app, name="kv")
app.add_typer(work.app, name="work")
app.add_typer(bulk.app, name="bulk")
app.command("demo")(demo.demo)
app.command("node")(node.node)
app.command("nodes")(node.nodes)
web.register(app)

config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


PROBE_TIMEOUT_S = 5.0
"""Default seconds ``config check --connect`` waits for each backend to answer."""
PROBE_GRACE_S = 1.0
"""Past the timeout given to the clients that take one (Kafka's), time for their own error to come."""


@config_app.command("check")
@handle_errors
def config_check(
    connect: Annotated[
        bool, typer.Option("--connect", help="Also reach the log, key-value and repository backends.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="With --connect: seconds each backend has to answer."),
    ] = PROBE_TIMEOUT_S,
    config: ConfigOption = None,
) -> None:
    """Validate the configuration and print the effective settings (secrets masked).

    Without connecting: every key, the scheme of every backend URL (with the Python package
    it needs), and that node.modules can be found (not run). With --connect: each backend
    answers within --timeout seconds.
    """
    from conveyor.runtime.config import config_path

    settings = settings_from(config)  # refuses an unknown CONVEYOR_* variable that looks like a setting
    origin = str(config_path(config) or "<embedded defaults>")
    problems = _check_urls(settings) + _check_modules(settings)
    if problems:
        fail("\n".join(f"{origin}: {problem}" for problem in problems))
    console.print_json(json.dumps(settings.redacted()))
    if connect:
        _probe_backends(settings, origin, timeout)


def _check_urls(settings: Settings) -> list[str]:
    """What is wrong with the backend URLs of ``settings``, found without connecting: an unknown
    scheme (the known ones listed), a backend whose Python package is missing, a Kafka URL's
    bad brokers, prefix or client properties, a repository URL that is not SQL."""
    from conveyor.kv import kv_registry
    from conveyor.log import log_registry
    from conveyor.pubsub import pubsub_registry
    from conveyor.registry import url_scheme
    from conveyor.repository.store import split_url
    from conveyor.work import work_registry

    problems = []
    checks: list[tuple[str, str, Any]] = [
        ("log.url", settings.log.url, log_registry),
        ("kv.url", settings.kv.url, kv_registry),
        ("pubsub.url", settings.pubsub.url, pubsub_registry),
        ("work.url", settings.work.url, work_registry),
    ]
    for key, url, registry in checks:
        try:
            registry.resolve(settings.resolve(url))
            if url_scheme(url) == "kafka":  # its brokers, prefix and client properties
                from conveyor.log.kafka.config import parse_kafka_url

                parse_kafka_url(url, settings.log.options if key == "log.url" else {})
        except ConveyorError as exc:
            problems.append(f"{key}: {exc}")
    try:
        split_url(settings.resolve(settings.repository.url))
    except ConveyorError as exc:
        problems.append(f"repository.url: {exc}")
    return problems


def _check_modules(settings: Settings) -> list[str]:
    """The modules of ``node.modules`` that cannot be found where a node would import them from
    (the working directory first, then ``sys.path``); found without running them: only the
    top-level package of a dotted name is looked up, as finding a submodule imports its parent."""
    import importlib.util

    from conveyor.runtime.node import working_directory_on_path

    cwd = working_directory_on_path()
    problems = []
    for module in settings.node.modules:
        top = module.partition(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            problems.append(
                f"node.modules: no module {top!r} in the working directory ({cwd}) nor on sys.path"
            )
    return problems


def _probe_backends(settings: Settings, origin: str, timeout: float) -> None:
    """Reach the log, KV and repository backends at once, each bounded by ``timeout`` seconds;
    exit 1 naming every one that failed or did not answer."""
    from conveyor.kv import open_kv_store
    from conveyor.log import open_log_manager
    from conveyor.registry import redact_url, url_scheme
    from conveyor.repository import open_repository
    from conveyor.runtime.node import NODES_STORE, Conveyor

    node = Conveyor(settings)  # only to resolve {data_dir}: nothing is opened through it
    urls = {
        "log.url": node.url(settings.log.url),
        "kv.url": node.url(settings.kv.url),
        "repository.url": node.url(settings.repository.url),
    }

    def log() -> None:
        options: dict[str, Any] = dict(settings.log.options)
        if url_scheme(urls["log.url"]) == "kafka":
            options.setdefault("timeout", timeout)  # the client's own wait (30 s by default)
        with open_log_manager(urls["log.url"], **options) as manager:
            manager.list_all()

    def kv() -> None:
        store = open_kv_store(urls["kv.url"], NODES_STORE)
        try:
            store.keys("")
        finally:
            store.close()

    def repository() -> None:
        open_repository(urls["repository.url"]).close()

    probes = {"log.url": log, "kv.url": kv, "repository.url": repository}
    outcomes = {key: _Probe(probe) for key, probe in probes.items()}
    deadline = time.monotonic() + timeout + PROBE_GRACE_S
    problems = []
    for key, outcome in outcomes.items():
        outcome.thread.join(max(0.0, deadline - time.monotonic()))
        if outcome.thread.is_alive():
            problems.append(f"{key}: no answer from {redact_url(urls[key])} within {timeout:g} s")
        elif isinstance(outcome.error, ConveyorError):
            problems.append(f"{key}: {outcome.error}")
        elif outcome.error is not None:
            problems.append(f"{key}: {type(outcome.error).__name__}: {outcome.error}")
    if problems:
        fail("\n".join(f"{origin}: {problem}" for problem in problems))
    err_console.print("backends reachable: log, kv, repository", highlight=False)


class _Probe:
    """A probe running in a daemon thread: one that hangs is left behind, the command does not wait."""

    def __init__(self, probe: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self._probe = probe
        self.thread = threading.Thread(target=self._run, name="conveyor-probe", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._probe()
        except BaseException as exc:  # reported by the command
            self.error = exc


def main() -> None:
    """Entry point of the ``conveyor`` script."""
    app()


if __name__ == "__main__":
    main()
