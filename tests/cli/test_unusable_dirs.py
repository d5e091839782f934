"""A data directory or blob directory that cannot be created is one line naming it, not a traceback.

``node.data_dir`` (or ``transient.blob_dir``) under a regular file, or under ``/proc``: the
node used to die in ``Path.mkdir`` with a bare ``OSError`` and the CLI printed its traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor import Conveyor
from conveyor.cli.main import app
from conveyor.errors import ConfigurationError, StorageError
from conveyor.kv import open_kv_store
from conveyor.transient import TransientStore


def test_a_data_dir_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    config = tmp_path / "conveyor.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path}/file/data"\n', encoding="utf-8")
    node = Conveyor.from_config(config)
    with pytest.raises(
        ConfigurationError, match=r"node\.data_dir: cannot create the data directory .*file/data"
    ):
        node.kv_store("work")

    result = CliRunner().invoke(app, ["work", "stats", "-c", str(config)])
    assert result.exit_code == 1
    assert "node.data_dir: cannot create" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_blob_dir_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    kv = open_kv_store("memory://", "t")
    with pytest.raises(StorageError, match=r"transient store 'x': creating its blob directory: .*file/blobs"):
        TransientStore("x", kv, tmp_path / "file" / "blobs")
