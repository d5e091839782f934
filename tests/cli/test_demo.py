"""The first run: ``conveyor demo`` shows progress for every step, and the package builds without
setuptools warnings (what ``make demo`` prints while installing)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def test_demo_shows_progress_for_every_step(tmp_path: Path) -> None:
    sizes = {"--documents": 30, "--works": 5, "--records": 40}
    args = ["demo", "--data-dir", str(tmp_path / "demo"), "--timeout", "60"]
    for option, count in sizes.items():
        args += [option, str(count)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    # One finished bar per step (and per stream computation): "<label> ━━━ done/total elapsed"
    # (the bar is ASCII on a console that cannot print it).
    for label, count in (
        ("repository import", 30),
        ("Works on queue 'demo'", 5),
        ("stream: sentences appended", 40),
        ("stream: demo-upper", 40),
        ("stream: demo-count", 40),
        ("bulk setProperties", 20),  # the Files among the 30 documents
    ):
        assert re.search(rf"^{re.escape(label)}\s+\S+\s+{count}/{count}\s", out, re.MULTILINE), out
    # Below its target rate, the stream step says why.
    assert "below 20,000/s: 40 records are too few to measure" in " ".join(out.split()), out


def test_pyproject_license_is_an_spdx_expression() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # A TOML table here is deprecated by setuptools (a warning on every install); the string form
    # needs setuptools 77.
    assert pyproject["project"]["license"] == "Apache-2.0"
    requires = pyproject["build-system"]["requires"]
    setuptools = [r for r in requires if r.startswith("setuptools")]
    assert setuptools, requires
    minimum = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools[0].replace(" ", ""))
    assert minimum is not None and int(minimum.group(1)) >= 77, requires


@pytest.mark.slow
def test_package_builds_without_setuptools_warnings(tmp_path: Path) -> None:
    # A copy of what the build reads, so the build leaves nothing in the work tree.
    source = tmp_path / "source"
    (source / "src").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src" / "conveyor", source / "src" / "conveyor", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path / "out"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", str(out), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    assert not re.search(r"deprecat|BuildBackendWarning|SetuptoolsWarning", output, re.IGNORECASE), output
    (wheel,) = out.glob("conveyor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        assert "License-Expression: Apache-2.0" in archive.read(metadata).decode()
