"""The repository contract on SQLite, PostgreSQL and MariaDB: one fresh table per test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.errors import ConfigurationError, DocumentNotFoundError, QueryError, RepositoryError
from conveyor.repository import Document, Repository, open_repository

SAMPLE = [
    {"type": "File", "path": "/ws/one/a", "properties": {"dc:title": "alpha", "n": 1, "ok": True}},
    {"type": "File", "path": "/ws/one/b", "properties": {"dc:title": "Beta", "n": 9, "ok": False}},
    {"type": "Note", "name": "c", "parent_path": "/ws/two", "properties": {"dc:title": "gamma", "n": 10}},
    {"type": "Note", "name": "d", "parent_path": "/ws/two", "properties": {"dc:title": "50% off_", "n": 2.5}},
    {"type": "File", "name": "e", "parent_path": "/other", "properties": {"dc:title": "it's", "n": "10"}},
    {"type": "File", "path": "/ws/f", "properties": {"dc:title": None, "x:nested": {"k": "v"}}},
]


@pytest.fixture
def sample(repo: Repository) -> Repository:
    """``repo`` holding SAMPLE (plus the folders /ws, /ws/one, /ws/two, /other)."""
    assert repo.import_documents(SAMPLE) == len(SAMPLE)
    return repo


def names(repo: Repository, nxql: str) -> list[str]:
    return sorted(doc.name for doc in repo.query(nxql))


def test_create_get_and_folders(repo: Repository) -> None:
    doc = repo.create("File", "report", "/a/b", {"dc:title": "Report", "n": 3})
    assert isinstance(doc, Document)
    assert (doc.type, doc.name, doc.path, doc.properties, doc.is_trashed) == (
        "File", "report", "/a/b/report", {"dc:title": "Report", "n": 3}, False
    )  # fmt: skip
    assert doc.title == "Report"
    assert doc.created is not None and doc.created.tzinfo is not None
    assert abs(doc.created - datetime.now(UTC)) < timedelta(minutes=5)
    parent = repo.get_by_path("/a/b")
    assert parent.type == "Folder" and doc.parent_id == parent.id
    assert repo.get_by_path("/a").parent_id is None
    assert repo.get(doc.id) == doc
    with pytest.raises(DocumentNotFoundError, match="nope"):
        repo.get("nope")
    with pytest.raises(DocumentNotFoundError):
        repo.get_by_path("/a/zzz")


def test_taken_name_gets_a_free_one(repo: Repository) -> None:
    first = repo.create("File", "same", "/")
    second = repo.create("File", "same", "/")
    assert first.path == "/same"
    assert second.path.startswith("/same.") and second.path != first.path
    imported = repo.import_documents([{"name": "same"}, {"name": "same"}])
    assert imported == 2
    assert repo.count("SELECT * FROM Document") == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"name": "a/b"},
        {"name": "x", "type": "Bad Type"},
        {"name": "x", "parent_path": "relative"},
        {"name": "x", "properties": ["not", "a", "map"]},
        {"name": "x", "surprise": 1},
        {"name": "x", "properties": {"when": object()}},
    ],
)
def test_invalid_documents_are_refused(repo: Repository, bad: dict[str, object]) -> None:
    with pytest.raises(RepositoryError):
        repo.import_documents([bad])
    assert repo.count("SELECT * FROM Document") == 0


def test_import_many_creates_parents_once(repo: Repository) -> None:
    docs = ({"name": f"d{i}", "parent_path": f"/bulk/f{i % 7}", "properties": {"i": i}} for i in range(2500))
    assert repo.import_documents(docs, batch_size=1000) == 2500
    assert repo.count("SELECT * FROM File") == 2500
    assert repo.count("SELECT * FROM Folder") == 8
    folder = repo.get_by_path("/bulk/f3")
    assert repo.count(f"SELECT * FROM Document WHERE ecm:parentId = '{folder.id}'") == len(range(3, 2500, 7))
    doc = repo.query("SELECT * FROM Document WHERE i = 1234")[0]
    assert doc.path == "/bulk/f2/d1234"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("dc:title = 'alpha'", "a"),
        ("dc:title = 'ALPHA'", ""),
        ("dc:title <> 'alpha'", "b c d e"),
        ("dc:title != 'alpha'", "b c d e"),
        ("dc:title = 'it''s'", "e"),
        ("dc:title > 'b'", "c e"),
        ("n = 10", "c"),
        ("n = '10'", "e"),
        ("n > 2", "b c d"),
        ("n >= 2.5", "b c d"),
        ("n < 9", "a d"),
        ("n BETWEEN 2 AND 9", "b d"),
        ("n NOT BETWEEN 2 AND 9", "a c"),
        ("ok = 1", "a"),
        ("ok = 0", "b"),
        ("ok = TRUE", "a"),
        ("dc:title LIKE 'a%'", "a"),
        ("dc:title LIKE '%a'", "a b c"),
        ("dc:title ILIKE 'b%'", "b"),
        ("dc:title LIKE 'B%'", "b"),
        ("dc:title LIKE '50\\% off\\_'", "d"),
        ("dc:title LIKE '50_ off%'", "d"),
        ("dc:title NOT LIKE '%a%'", "d e"),
        ("dc:title IN ('alpha', 'gamma', 'zzz')", "a c"),
        ("dc:title NOT IN ('alpha', 'gamma')", "b d e"),
        ("n IN (1, 10, '10')", "a c e"),
        ("dc:title IS NULL", "f"),
        ("dc:title IS NOT NULL", "a b c d e"),
        ("missing:prop IS NULL", "a b c d e f"),
        ("x:nested/k = 'v'", "f"),
        ("ecm:path STARTSWITH '/ws'", "a b c d f"),
        ("ecm:path STARTSWITH '/ws/'", "a b c d f"),
        ("ecm:path STARTSWITH '/ws/one'", "a b"),
        ("ecm:path STARTSWITH '/w'", ""),
        ("ecm:path = '/other/e'", "e"),
        ("ecm:name IN ('a', 'c')", "a c"),
        ("ecm:primaryType = 'Note'", "c d"),
        ("ecm:isTrashed = 0", "a b c d e f"),
        ("ecm:isProxy = 0 AND ecm:isVersion = 0", "a b c d e f"),
        ("ecm:mixinType != 'HiddenInNavigation'", "a b c d e f"),
        ("n = 1 OR n = 10", "a c"),
        ("(n = 1 OR n = 10) AND ecm:primaryType = 'Note'", "c"),
        ("NOT (n = 1 OR n = 10)", "b d"),
        ("NOT ecm:primaryType = 'Note'", "a b e f"),
        ("dc:created > DATE '2000-01-01' AND dc:modified <= TIMESTAMP '2999-01-01T00:00:00Z'", "a b c d e f"),
        ("dc:created < '2000-01-01'", ""),
    ],
)
def test_where_clauses(sample: Repository, where: str, expected: str) -> None:
    nxql = f"SELECT * FROM File, Note WHERE {where}"
    assert names(sample, nxql) == expected.split()
    assert sample.count(nxql) == len(expected.split())


def test_from_types(sample: Repository) -> None:
    assert sample.count("SELECT * FROM Document") == 10
    assert sample.count("SELECT * FROM Folder") == 4
    assert names(sample, "SELECT * FROM Note") == ["c", "d"]
    assert sample.count("SELECT * FROM Workspace") == 0


def test_order_by_limit_offset(sample: Repository) -> None:
    def ordered(nxql: str) -> list[str]:
        return [doc.name for doc in sample.query(nxql)]

    # strings before numbers, numbers numerically (10 after 9), missing first
    assert ordered("SELECT * FROM File, Note ORDER BY n") == ["f", "e", "a", "d", "b", "c"]
    assert ordered("SELECT * FROM File, Note ORDER BY n DESC") == ["c", "b", "d", "a", "e", "f"]
    assert ordered("SELECT * FROM File, Note WHERE dc:title IS NOT NULL ORDER BY dc:title") == [
        "d", "b", "a", "c", "e"
    ]  # fmt: skip
    assert ordered("SELECT * FROM File, Note ORDER BY ecm:primaryType DESC, ecm:name ASC") == [
        "c", "d", "a", "b", "e", "f"
    ]  # fmt: skip
    assert ordered("SELECT * FROM File, Note ORDER BY ecm:name LIMIT 2 OFFSET 1") == ["b", "c"]
    assert [d.name for d in sample.query("SELECT * FROM File, Note ORDER BY ecm:name", limit=3)] == [
        "a",
        "b",
        "c",
    ]
    assert sample.count("SELECT * FROM File, Note LIMIT 4") == 4
    assert sample.query_ids("SELECT ecm:uuid FROM Note ORDER BY ecm:name") == [
        sample.get_by_path("/ws/two/c").id, sample.get_by_path("/ws/two/d").id
    ]  # fmt: skip


def test_query_and_fetch(sample: Repository) -> None:
    rows = sample.query_and_fetch(
        "SELECT ecm:name, dc:title, n, x:nested, ecm:isTrashed FROM File ORDER BY ecm:name"
    )
    assert rows[0] == {"ecm:name": "a", "dc:title": "alpha", "n": 1, "x:nested": None, "ecm:isTrashed": False}
    assert rows[-1] == {
        "ecm:name": "f",
        "dc:title": None,
        "n": None,
        "x:nested": {"k": "v"},
        "ecm:isTrashed": False,
    }
    assert rows[2]["n"] == "10"
    star = sample.query_and_fetch("SELECT * FROM Note WHERE ecm:name = 'c'")
    assert star[0]["dc:title"] == "gamma" and star[0]["ecm:path"] == "/ws/two/c"


def test_scroll_ids_pages_every_match_once(repo: Repository) -> None:
    repo.import_documents({"name": f"d{i}", "properties": {"i": i}} for i in range(2345))
    pages = list(repo.scroll_ids("SELECT * FROM File WHERE i >= 100", batch_size=500))
    assert [len(p) for p in pages] == [500, 500, 500, 500, 245]
    flat = [i for page in pages for i in page]
    assert len(set(flat)) == 2245
    again = [i for page in repo.scroll_ids("SELECT * FROM File WHERE i >= 100", batch_size=700) for i in page]
    assert again == flat  # one stable order whatever the page size
    if repo.dialect != "sqlite":  # SQLite scrolls in rowid (insertion) order
        assert flat == sorted(flat)
    assert set(flat) == set(repo.query_ids("SELECT * FROM File WHERE i >= 100"))
    limited = list(repo.scroll_ids("SELECT * FROM File LIMIT 1200", batch_size=500))
    assert [len(p) for p in limited] == [500, 500, 200]
    assert list(repo.scroll_ids("SELECT * FROM File WHERE i < 0", 10)) == []
    with pytest.raises(QueryError):
        repo.scroll_ids("SELECT * FROM File WHERE", 10)  # raised now, not at the first page


def test_set_properties(sample: Repository) -> None:
    ids = sample.query_ids("SELECT * FROM File")
    before = {d.id: d for d in sample.get_many(ids)}
    changed = sample.set_properties(
        [*ids, "unknown-id"], {"dc:title": "new", "n": None, "x:nested": {"z": [1, 2]}}
    )
    assert changed == 4
    for doc in sample.get_many(ids):
        assert doc.properties["dc:title"] == "new"
        assert "n" not in doc.properties
        assert doc.properties["x:nested"] == {"z": [1, 2]}  # replaced whole, not merged
        assert doc.modified is not None and doc.modified >= before[doc.id].modified  # type: ignore[operator]
    assert sample.get_by_path("/ws/one/a").properties.get("ok") is True  # other properties kept
    assert sample.count("SELECT * FROM Document WHERE dc:title = 'new'") == 4
    assert sample.set_properties(ids, {"dc:title": "new"}) == 4  # idempotent
    with pytest.raises(RepositoryError, match="invalid property name"):
        sample.set_properties(ids, {"ecm:path": "/x"})
    with pytest.raises(RepositoryError, match="invalid property name"):
        sample.set_properties(ids, {"a\"]') --": 1})
    with pytest.raises(RepositoryError):
        sample.set_properties("one-string-id", {"a": 1})


def test_trash_untrash(sample: Repository) -> None:
    notes = sample.query_ids("SELECT * FROM Note")
    assert sample.trash(notes) == 2
    assert sample.trash(notes) == 0
    assert names(sample, "SELECT * FROM Document WHERE ecm:isTrashed = 1") == ["c", "d"]
    assert sample.get(notes[0]).is_trashed
    assert sample.untrash([*notes, "nope"]) == 2
    assert sample.count("SELECT * FROM Document WHERE ecm:isTrashed = 1") == 0


def test_delete_with_and_without_children(sample: Repository) -> None:
    ws = sample.get_by_path("/ws")
    e = sample.get_by_path("/other/e")
    assert sample.delete([ws.id, e.id, "nope"]) == 9  # /ws, one, two, a, b, c, d, f and e
    assert [d.path for d in sample.query("SELECT * FROM Document")] == ["/other"]
    other = sample.get_by_path("/other")
    sample.create("File", "kept", "/other")
    assert sample.delete([other.id], children=False) == 1
    assert sample.count("SELECT * FROM Document") == 1


def hinted(repo: Repository, nxql: str) -> tuple[list[str], dict[str, int]]:
    """The ids of ``nxql`` in scroll order and a storage hint for each (made up where the
    database gives none: the repository must ignore them there)."""
    ids: list[str] = []
    hints: dict[str, int] = {}
    for page, page_hints in repo.scroll_with_hints(nxql, batch_size=700):
        assert page_hints is None or len(page_hints) == len(page)
        for position, doc_id in enumerate(page):
            hints[doc_id] = page_hints[position] if page_hints is not None else len(ids) + 1
            ids.append(doc_id)
    return ids, hints


def test_scroll_with_hints_pages_as_scroll_ids(repo: Repository) -> None:
    repo.import_documents({"name": f"d{i}", "properties": {"i": i}} for i in range(1234))
    pages = list(repo.scroll_with_hints("SELECT * FROM File WHERE i >= 34", batch_size=500))
    assert [ids for ids, _ in pages] == list(repo.scroll_ids("SELECT * FROM File WHERE i >= 34", 500))
    for ids, page_hints in pages:
        if repo.dialect == "sqlite":
            assert page_hints is not None and page_hints == sorted(page_hints) and len(page_hints) == len(ids)
        else:
            assert page_hints is None
    with pytest.raises(QueryError):
        repo.scroll_with_hints("SELECT * FROM File WHERE", 10)


@pytest.mark.parametrize("count", [300, 2500])  # one chunk (no transaction on SQLite), several
def test_set_properties_with_hints(repo: Repository, count: int) -> None:
    repo.import_documents({"name": f"d{i}", "properties": {"i": i, "keep": [i]}} for i in range(count + 20))
    everything, every_hint = hinted(repo, "SELECT * FROM File")
    ids, outside = everything[:count], everything[count:]
    hints = {doc_id: every_hint[doc_id] for doc_id in ids}
    stale = dict(hints)
    stale[ids[1]], stale[ids[2]] = hints[ids[2]], hints[ids[1]]  # swapped within the ids
    stale[ids[3]] = hints[ids[0]]  # two ids, one hint
    stale[ids[4]] = 10**9  # no such row
    stale[ids[6]] = every_hint[outside[0]]  # another document's row
    assert repo.delete([ids[5]]) == 1  # gone since it was scrolled
    statements: list[str] = []
    sa.event.listen(repo.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    changed = repo.set_properties(ids, {"dc:source": "hinted", "x:obj": {"a": [1, None]}}, hints=stale)
    if repo.dialect == "sqlite":  # by rowid, then the few ids it missed by id
        assert any("rowid IN" in sql for sql in statements), statements
        assert any("rowid NOT IN" in sql for sql in statements), statements
    assert changed == count - 1
    docs = {doc.id: doc for doc in repo.get_many(everything)}
    assert ids[5] not in docs and len(docs) == len(everything) - 1
    for doc_id, doc in docs.items():
        i = doc.properties["i"]
        expected: dict[str, Any] = {"i": i, "keep": [i]}
        if doc_id in hints:
            expected.update({"dc:source": "hinted", "x:obj": {"a": [1, None]}})
        assert doc.properties == expected, (doc_id, doc.properties)
    # no hints, a few hints, hints that are not rowids: by id
    assert repo.set_properties(ids, {"dc:source": "plain"}) == count - 1
    assert repo.set_properties(ids, {"dc:source": "few"}, hints={ids[0]: hints[ids[0]]}) == count - 1
    odd = {doc_id: str(hint) for doc_id, hint in hints.items()}
    assert repo.set_properties(ids, {"dc:source": "odd"}, hints=odd) == count - 1
    assert repo.count("SELECT * FROM File WHERE dc:source = 'odd'") == count - 1
    assert repo.count("SELECT * FROM File WHERE dc:source IS NULL") == len(outside)


def test_trash_untrash_delete_with_hints(repo: Repository) -> None:
    repo.import_documents(
        {"name": f"d{i}", "parent_path": f"/f{i % 3}", "properties": {"i": i}} for i in range(1500)
    )
    ids, hints = hinted(repo, "SELECT * FROM File")
    assert repo.trash(ids[:100]) == 100
    stale = dict(hints)
    stale[ids[200]] = hints[ids[1400]]
    assert repo.trash(ids[:1200], hints=stale) == 1100  # the ones already in the trash not counted
    assert repo.trash(ids[:1200], hints=stale) == 0
    assert repo.count("SELECT * FROM File WHERE ecm:isTrashed = 1") == 1200
    assert not repo.get(ids[1400]).is_trashed
    assert repo.untrash([*ids[:1200], "nope"], hints=hints) == 1200
    assert repo.count("SELECT * FROM File WHERE ecm:isTrashed = 1") == 0
    folders, folder_hints = hinted(repo, "SELECT * FROM Folder")
    stale[ids[300]] = folder_hints[folders[0]]
    assert repo.delete(ids[:1000], hints=stale) == 1000
    assert repo.count("SELECT * FROM File") == 500 and repo.count("SELECT * FROM Folder") == 3
    assert {d.id for d in repo.query("SELECT * FROM File")} == set(ids[1000:])
    inside = sum(1 for doc in repo.query("SELECT * FROM File") if doc.parent_id == folders[0])
    assert inside and repo.delete(folders[:1], hints=folder_hints) == 1 + inside


def test_injection_attempts_leave_data_intact(sample: Repository) -> None:
    attempts = [
        "SELECT * FROM Document WHERE dc:title = 'x'; DROP TABLE documents",
        "SELECT * FROM Document WHERE dc:title = 'x' OR 1=1",
        "SELECT * FROM Document WHERE dc:title = 'x' -- ",
        "SELECT * FROM Document; DELETE FROM documents",
        "SELECT * FROM Document WHERE ecm:path STARTSWITH '/' UNION SELECT * FROM Document",
        'SELECT * FROM Document WHERE dc:title = "x" /* */',
        "SELECT * FROM Document WHERE dc:title) = 'x'",
        f"SELECT * FROM Document WHERE x = 1; DROP TABLE {sample.table_name}",
    ]
    for nxql in attempts:
        with pytest.raises(QueryError):
            sample.query(nxql)
    # quotes inside strings are data, not SQL
    for nxql in [
        "SELECT * FROM Document WHERE dc:title = 'x'' OR ''1''=''1'",
        "SELECT * FROM Document WHERE dc:title = 'x\\' OR 1=1 --'",
        f"SELECT * FROM Document WHERE dc:title = ''; DROP TABLE {sample.table_name}; --'",
        'SELECT * FROM Document WHERE "dc:title" = 1',
    ]:
        try:
            assert sample.query(nxql) == []
        except QueryError:
            pass
    evil = "'); DROP TABLE documents; --"
    doc = sample.create("File", "evil", "/", {"dc:title": evil})
    escaped = evil.replace("'", "''")
    assert sample.query_ids(f"SELECT * FROM Document WHERE dc:title = '{escaped}'") == [doc.id]
    assert sample.count("SELECT * FROM Document") == 11


def test_closed_repository_and_bad_urls(repo_url: str, unique: str) -> None:
    repo = open_repository(repo_url, table_prefix=f"{unique}_")
    try:
        assert repo.dialect in ("sqlite", "postgresql", "mysql", "mariadb")
    finally:
        repo.drop()
    with pytest.raises(RepositoryError, match="closed"):
        repo.count("SELECT * FROM Document")


def test_url_errors() -> None:
    with pytest.raises(ConfigurationError, match="unsupported"):
        open_repository("redis://localhost/0")
    with pytest.raises(ConfigurationError, match="table prefix"):
        open_repository("sqlite://", table_prefix="bad-prefix;")
    with open_repository("sqlite://?table_prefix=mem_") as memory:
        assert memory.table_name == "mem_documents"
        memory.create("File", "x")
        assert memory.count("SELECT * FROM Document") == 1


def test_two_handles_share_one_database(repo_url: str, unique: str) -> None:
    first = open_repository(repo_url, table_prefix=f"{unique}_")
    second = open_repository(repo_url, table_prefix=f"{unique}_")
    try:
        doc = first.create("File", "shared", "/s")
        assert second.get(doc.id).path == "/s/shared"
        assert second.trash([doc.id]) == 1
        assert first.get(doc.id).is_trashed
    finally:
        second.close()
        first.drop()
