"""The examples of the README and the docs run as written, and the README's Work keeps its promise:
scheduled in a transaction, it runs after the commit (not after a rollback), on the embedded
default, and survives a restart of the node."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

# (file, index of its ```python block): the complete ones; the others are fragments of a page.
EXAMPLES = [
    ("README.md", 0),
    ("docs/stream.md", 0),
    ("docs/bulk.md", 1),
    ("docs/kv.md", 0),
    ("docs/repository.md", 0),
]


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file."""
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def run(code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,  # the caller asserts the exit code, with the child's stderr in the message
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(("doc", "index"), EXAMPLES, ids=[f"{d}#{i}" for d, i in EXAMPLES])
def test_example_runs_as_written(doc: str, index: int, tmp_path: Path) -> None:
    blocks = python_blocks(ROOT / doc)
    assert len(blocks) > index, f"{doc} lost its python example #{index}"
    done = run(blocks[index], tmp_path)
    assert done.returncode == 0, f"{doc} example #{index} failed:\n{done.stderr[-3000:]}"


USER_WORKS = '''
from pathlib import Path
from conveyor.work import Work


class Resize(Work):
    """The README's Work, leaving a trace of each run."""

    category = "pictures"
    doc_id: str
    width: int = 256

    def work(self) -> None:
        with Path("runs.txt").open("a") as out:
            out.write(f"{self.doc_id} {self.width}\\n")
        self.set_progress(1, 1)
'''

SCHEDULE = """
import conveyor
from conveyor import Conveyor
from userworks import Resize

config = {"node": {"modules": ["userworks"]}, "work": {"processing": {"*": False}}}
with Conveyor.from_config(config) as node:
    wm = node.work_manager
    with conveyor.transaction():
        wm.schedule(Resize(doc_id="kept", width=512))
        assert wm.metrics("default").scheduled == 0   # not before the commit
    try:
        with conveyor.transaction():
            wm.schedule(Resize(doc_id="dropped"))
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert wm.metrics("default").scheduled == 1
print("scheduled")
"""

RUN = """
from conveyor import Conveyor

with Conveyor.from_config({"node": {"modules": ["userworks"]}}) as node:
    node.start()
    assert node.work_manager.await_completion(timeout=60)
print("ran")
"""


def test_readme_work_runs_after_commit_and_survives_a_restart(tmp_path: Path) -> None:
    (tmp_path / "userworks.py").write_text(textwrap.dedent(USER_WORKS))
    first = run(SCHEDULE, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (tmp_path / "runs.txt").exists()  # that node does not process: nothing ran yet
    second = run(RUN, tmp_path)  # a new process on the same data directory
    assert second.returncode == 0, second.stderr[-3000:]
    assert (tmp_path / "runs.txt").read_text().splitlines() == ["kept 512"]
