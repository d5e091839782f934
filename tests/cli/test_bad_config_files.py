"""A configuration file that cannot be read gives one line naming it and exit 1, never a traceback
(issue 14, item 7). Run as a real ``conveyor`` process: what an operator sees."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


CASES = [
    pytest.param(
        lambda d: _write(d / "latin1.toml", b'[node]\nid = "caf\xe9"\n'),
        r"not UTF-8 text \(byte 0xe9 on line 2\)",
        id="not-utf8",
    ),
    pytest.param(
        lambda d: _write(d / "deep.toml", b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n"),
        "nested too deep",
        id="5000-deep-arrays",
    ),
    pytest.param(
        lambda d: _write(d / "tables.toml", b"x = " + b"{a = " * 5000 + b"1" + b"}" * 5000 + b"\n"),
        "nested too deep",
        id="5000-deep-tables",
    ),
    pytest.param(
        lambda d: _write(d / "forty.toml", b"[node]\nid = 'n'\n[x]\ny = " + b"[" * 40 + b"]" * 40 + b"\n"),
        "nested deeper than 32 levels",
        id="40-deep",
    ),
    pytest.param(lambda d: (d / "dir.toml").mkdir() or d / "dir.toml", "a directory", id="directory"),
]


@pytest.mark.parametrize(("make", "message"), CASES)
def test_a_bad_config_file_is_one_line_and_exit_1(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    done = subprocess.run(
        [sys.executable, "-m", "conveyor.cli.main", "config", "check", "--config", str(path)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    assert re.search(message, lines[0]), lines[0]
