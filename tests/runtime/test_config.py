"""Configuration: embedded defaults, validation errors that name file and key, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import ConfigurationError
from conveyor.runtime.config import load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conveyor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_embedded_defaults(tmp_path: Path) -> None:
    settings = load_settings({"node": {"data_dir": str(tmp_path)}}, env={})
    assert settings.resolve(settings.log.url) == f"local://{tmp_path}/log"
    assert settings.resolve(settings.kv.url) == f"sqlite:///{tmp_path}/kv.db"
    assert settings.pubsub.url == "local://"
    assert settings.work.url == "stream"
    assert settings.node.id  # hostname-pid


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[node]
id = "node-1"
modules = ["myapp.works"]
[log]
url = "kafka://broker:9092?prefix=nuxeo-"
[work]
url = "redis://localhost:6379/0"
processing = {"*" = false, pictures = true}
[[work.queues]]
id = "pictures"
max_threads = 2
categories = ["pictures"]
""",
    )
    settings = load_settings(path, env={})
    assert settings.node.id == "node-1"
    assert settings.node.modules == ("myapp.works",)
    assert settings.work.queues[0].max_threads == 2
    assert settings.work.processing == {"*": False, "pictures": True}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[node]\nidd = 'x'\n", r"node\.idd: unknown key"),
        ("[wrok]\nurl = 'x'\n", r"wrok: unknown key"),
        (
            "[[work.queues]]\nid = 'q'\nmax_threads = 'two'\n",
            r"work\.queues\.0\.max_threads: .*integer.*'two'",
        ),
        (
            "[[work.queues]]\nid = 'q'\nmax_threads = 0\n",
            r"work\.queues\.0\.max_threads: .*greater than or equal to 1",
        ),
        ("[[work.queues]]\nmax_threads = 1\n", r"work\.queues\.0\.id: Field required"),
        ("[[work.queues]]\nid = 'q'\n[[work.queues]]\nid = 'q'\n", r"duplicate queue id\(s\): q"),
        ("[web]\nport = 70000\n", r"web\.port"),
        ("[node\nid = 1", r"invalid TOML"),
        ("[[stream.processors]]\nname = 'p'\ntopology = 'no colon'\n", r"stream\.processors\.0\.topology"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError, match=expected) as info:
        load_settings(path, env={})
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[node]\nid = 'from-file'\n[kv]\nurl = 'memory://'\n")
    env = {
        "CONVEYOR_NODE_ID": "from-env",
        "CONVEYOR_KV_URL": "redis://127.0.0.1:6379/0",
        "CONVEYOR_MODULES": "a.b, c.d",
        "CONVEYOR_WORK_PROCESSING": "*=false,pictures=true",
        "CONVEYOR_WEB_PORT": "9090",
    }
    settings = load_settings(path, env=env)
    assert settings.node.id == "from-env"
    assert settings.kv.url == "redis://127.0.0.1:6379/0"
    assert settings.node.modules == ("a.b", "c.d")
    assert settings.work.processing == {"*": False, "pictures": True}
    assert settings.web.port == 9090


def test_env_config_path(tmp_path: Path) -> None:
    path = write(tmp_path, "[node]\nid = 'via-env-path'\n")
    assert load_settings(None, env={"CONVEYOR_CONFIG": str(path)}).node.id == "via-env-path"


def test_bad_env_value() -> None:
    with pytest.raises(ConfigurationError, match="CONVEYOR_WORK_PROCESSING"):
        load_settings({}, env={"CONVEYOR_WORK_PROCESSING": "pictures"})
    with pytest.raises(ConfigurationError, match=r"web\.port"):
        load_settings({}, env={"CONVEYOR_WEB_PORT": "eighty"})


def test_settings_are_frozen_and_secrets_masked() -> None:
    settings = load_settings({"kv": {"url": "redis://:s3cret@host:6379/0"}, "web": {"token": "t0k"}}, env={})
    with pytest.raises(Exception, match="frozen"):
        settings.node.id = "x"  # type: ignore[misc]
    shown = str(settings.redacted())
    assert "s3cret" not in shown and "t0k" not in shown
    assert "redis://:***@host:6379/0" in shown
