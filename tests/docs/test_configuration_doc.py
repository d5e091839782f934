"""docs/configuration.md stays the reference of conveyor.toml: its generated part is what the
settings model gives today, every setting has a description, every ``CONVEYOR_*`` variable read
anywhere is documented, and no SQLite URL in the docs hides a relative path behind three slashes."""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

from pydantic import BaseModel

from conveyor.runtime import config
from conveyor.runtime.config import ENV_VARIABLES
from conveyor.runtime.configdoc import BEGIN, END, REGENERATE, render
from conveyor.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"
VARIABLE = re.compile(r"^CONVEYOR_[A-Z][A-Z0-9_]*$")


def test_reference_is_generated_from_the_settings_model() -> None:
    page = PAGE.read_text(encoding="utf-8")
    fresh = render(page)
    diff = "".join(
        difflib.unified_diff(
            page.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            "docs/configuration.md",
            "generated",
        )
    )
    assert fresh == page, f"docs/configuration.md is out of date: run `{REGENERATE}`\n{diff[:4000]}"


def _submodel(annotation: object) -> type[BaseModel] | None:
    """The model of a sub-table (or array of tables) field, else None."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _models(model: type[BaseModel], path: str) -> list[tuple[str, type[BaseModel]]]:
    found = [(path, model)]
    for name, field in model.model_fields.items():
        sub = _submodel(field.annotation)
        if sub is not None:
            found += _models(sub, f"{path}.{name}" if path else name)
    return found


def test_every_table_and_key_is_described() -> None:
    page = PAGE.read_text(encoding="utf-8")
    undescribed = []
    for path, model in _models(Settings, ""):
        if not path:
            continue  # the top-level tables: their class docstrings head their sections
        heading = re.compile(rf"^### `\[\[?{re.escape(path)}\]\]?`$", re.M)
        assert heading.search(page), f"table {path} missing from docs/configuration.md"
        for name, field in model.model_fields.items():
            if _submodel(field.annotation) is None:
                assert f"| `{name}` |" in page, f"{path}.{name} missing from docs/configuration.md"
            if not (field.description or "").strip():
                undescribed.append(f"{path}.{name}")
    assert not undescribed, (
        f"settings without a docstring (write one under the field in settings.py, then `{REGENERATE}`): "
        f"{', '.join(undescribed)}"
    )


def _variables(paths: list[Path]) -> dict[str, set[str]]:
    """``CONVEYOR_*`` names written as whole string literals in these Python files, and where."""
    found: dict[str, set[str]] = {}
    for top in paths:
        for file in sorted(top.rglob("*.py")) if top.is_dir() else [top]:
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and VARIABLE.match(str(node.value)):
                    found.setdefault(node.value, set()).add(str(file.relative_to(ROOT)))
    return found


# os.environ.get("X"), os.environ["X"], os.getenv("X"), "X" in os.environ: what the tests read
# (they also set variables, some made up to be refused: those are not read).
READ = re.compile(
    r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](CONVEYOR_\w+)["']|["'](CONVEYOR_\w+)["']\s+(?:not\s+)?in\s+os\.environ"""
)


def _reads(paths: list[Path]) -> dict[str, set[str]]:
    """``CONVEYOR_*`` variables these Python files read from the environment, and where."""
    found: dict[str, set[str]] = {}
    for top in paths:
        for file in sorted(top.rglob("*.py")):
            for match in READ.finditer(file.read_text(encoding="utf-8")):
                found.setdefault(match.group(1) or match.group(2), set()).add(str(file.relative_to(ROOT)))
    return found


def test_every_environment_variable_is_documented() -> None:
    page = PAGE.read_text(encoding="utf-8")
    generated = page[page.index(BEGIN) : page.index(END)]
    tests_part = page[page.index("## Test environment") :]
    # Names of the test suite's variables may be listed in the code too (to leave them alone).
    tools = set(getattr(config, "TOOL_VARIABLES", ()))
    code = {v: files for v, files in _variables([ROOT / "src" / "conveyor"]).items() if v not in tools}
    assert set(ENV_VARIABLES) <= set(code)
    missing = {v: sorted(files) for v, files in code.items() if f"`{v}`" not in generated}
    assert not missing, f"variables Conveyor reads, missing from the reference (see config.py): {missing}"
    test_only = {v: files for v, files in _reads([ROOT / "tests", ROOT / "bench"]).items() if v not in code}
    test_only.update((v, {"src/conveyor/runtime/config.py"}) for v in tools)
    assert "CONVEYOR_REDIS" in test_only and "CONVEYOR_REQUIRE_SERVICES" in test_only
    missing = {v: sorted(files) for v, files in test_only.items() if f"`{v}`" not in tests_part}
    assert not missing, (
        f"variables the tests read, missing from configuration.md's 'Test environment': {missing}"
    )


# sqlite:/// then a path that does not say whether it is relative: ./x, /abs, {data_dir}/x and
# the PATH placeholder are plain; sqlite:///var/x (relative, looks absolute) is the trap.
AMBIGUOUS_SQLITE = re.compile(r"sqlite:///(?![./{]|PATH\b)[^\s`'\"]+")


def test_no_doc_hides_a_relative_sqlite_path() -> None:
    offenders = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if doc == PAGE and "also relative" in line:
                continue  # the one line that shows the trap, to explain it
            offenders += [f"{doc.name}:{number}: {m}" for m in AMBIGUOUS_SQLITE.findall(line)]
    assert not offenders, "write sqlite:///./relative or sqlite:////absolute:\n" + "\n".join(offenders)
