"""The NXQL subset without a database: tokens, syntax tree, errors with positions, SQL rendering."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql, sqlite

from conveyor.errors import NXQLError, QueryError
from conveyor.repository.nxql import compile_query, parse
from conveyor.repository.nxql.ast import And, Between, Compare, InList, IsNull, Like, Not, Or, StartsWith
from conveyor.repository.nxql.lexer import TokenKind, tokenize
from conveyor.repository.store import documents_table

TABLE = documents_table(sa.MetaData(), "unit_")
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect(), "mysql": mysql.dialect()}


def where_of(nxql: str) -> object:
    return parse(nxql).where


def test_tokens_of_a_query() -> None:
    tokens = tokenize("SELECT * FROM File WHERE dc:title <> 'it''s' AND x >= -1.5e3")
    kinds = [t.kind for t in tokens]
    assert kinds == [
        TokenKind.KEYWORD, TokenKind.STAR, TokenKind.KEYWORD, TokenKind.IDENT, TokenKind.KEYWORD,
        TokenKind.IDENT, TokenKind.OP, TokenKind.STRING, TokenKind.KEYWORD, TokenKind.IDENT,
        TokenKind.OP, TokenKind.NUMBER, TokenKind.EOF,
    ]  # fmt: skip
    assert tokens[7].value == "it's"
    assert tokens[11].value == "-1.5e3"


@pytest.mark.parametrize(
    ("literal", "value"),
    [("'a''b'", "a'b"), ("'a\\'b'", "a'b"), ('"a""b"', 'a"b'), ("'a\\\\b'", "a\\b"), ("'50\\%'", "50\\%")],
)
def test_string_escapes(literal: str, value: str) -> None:
    where = where_of(f"SELECT * FROM Document WHERE dc:title = {literal}")
    assert isinstance(where, Compare)
    assert where.value.value == value


def test_keywords_are_case_insensitive() -> None:
    query = parse("select * from document where ecm:isTrashed = 0 order by dc:title desc limit 5 offset 2")
    assert query.types == ()
    assert query.limit == 5 and query.offset == 2
    assert query.order_by[0].descending


def test_precedence_and_parentheses() -> None:
    where = where_of("SELECT * FROM Document WHERE a = 1 OR b = 2 AND NOT c = 3")
    assert isinstance(where, Or)
    assert isinstance(where.items[1], And)
    assert isinstance(where.items[1].items[1], Not)
    where = where_of("SELECT * FROM Document WHERE (a = 1 OR b = 2) AND c = 3")
    assert isinstance(where, And) and isinstance(where.items[0], Or)


def test_every_predicate() -> None:
    where = where_of(
        "SELECT * FROM File, Note WHERE a LIKE 'x%' AND b NOT ILIKE 'y' AND c IN (1, 'two') AND d NOT IN (3)"
        " AND e IS NULL AND f IS NOT NULL AND ecm:path STARTSWITH '/a' AND g BETWEEN 1 AND 2"
        " AND h NOT BETWEEN DATE '2024-01-01' AND TIMESTAMP '2024-02-01T10:00:00Z' AND i != TRUE"
    )
    assert isinstance(where, And)
    kinds = [type(item) for item in where.items]
    assert kinds == [Like, Like, InList, InList, IsNull, IsNull, StartsWith, Between, Between, Compare]
    between = where.items[8]
    assert isinstance(between, Between) and between.negated
    assert between.high.value == datetime(2024, 2, 1, 10, 0, 0)
    compare = where.items[9]
    assert isinstance(compare, Compare) and compare.op == "<>" and compare.value.value == 1
    assert parse("SELECT * FROM File, Note").types == ("File", "Note")


def test_select_list() -> None:
    query = parse("SELECT ecm:uuid, dc:title FROM Document")
    assert query.select is not None
    assert [f.name for f in query.select] == ["ecm:uuid", "dc:title"]


@pytest.mark.parametrize(
    ("nxql", "position", "words"),
    [
        ("SELECT * FROM Document WHERE dc:title = 'x'; DROP TABLE documents", 43, "unexpected character ';'"),
        ("SELECT * FROM Document WHERE dc:title = 'x' -- comment", 44, ""),
        ("SELECT * FROM Document WHERE dc:title = 'x' OR 1=1", 47, "a field name"),
        ("SELECT * FROM Document WHERE dc:title = 'unterminated", 40, "unterminated string"),
        ("SELECT * FROM Document WHERE", 28, "end of query"),
        ("SELECT * FROM Document WHERE dc:title =", 39, "expected a value"),
        ("SELECT * FROM Document WHERE (a = 1", 35, "')'"),
        ("SELECT * FROM Document WHERE a = 1)", 34, "unexpected"),
        ("SELECT * FROM WHERE a = 1", 14, "document type"),
        ("DELETE FROM Document", 0, "expected SELECT"),
        ("SELECT * FROM Document WHERE a NOT = 1", 35, "after NOT"),
        ("SELECT * FROM Document WHERE a = 12abc", 33, "malformed number"),
        ("SELECT * FROM Document WHERE a = 99999999999999999999", 33, "64-bit"),
        ("SELECT * FROM Document LIMIT -1", 29, "non-negative"),
        ("SELECT * FROM Document WHERE d = DATE 'yesterday'", 38, "invalid DATE"),
        ("SELECT * FROM Document WHERE a = 1 /* x */", 35, ""),
        ("SELECT * FROM Document WHERE a = `b`", 33, ""),
        ("SELECT * FROM Document WHERE a = 1 UNION SELECT * FROM Document", 35, ""),
    ],
)
def test_syntax_errors_point_at_the_position(nxql: str, position: int, words: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(nxql)
    assert info.value.position == position
    assert info.value.query == nxql
    assert words in str(info.value)
    # the caret line sits under the offending character
    lines = str(info.value).splitlines()
    assert lines[-1].index("^") - 2 == position
    assert lines[-2][2:] == nxql


@pytest.mark.parametrize(
    ("nxql", "words"),
    [
        ("SELECT * FROM Document WHERE ecm:nope = 1", "unknown or unsupported field ecm:nope"),
        ("SELECT * FROM Document WHERE ecm:path = 3", "ecm:path is a string"),
        ("SELECT * FROM Document WHERE ecm:isTrashed = 2", "compare it with 1 or 0"),
        ("SELECT * FROM Document WHERE ecm:isTrashed > 0", "only takes = or <>"),
        ("SELECT * FROM Document WHERE dc:created > 'soon'", "is a date"),
        ("SELECT * FROM Document WHERE ecm:isTrashed LIKE 'x'", "LIKE needs a string field"),
        ("SELECT * FROM Document WHERE a BETWEEN 1 AND 'z'", "both be numbers"),
        ("SELECT * FROM Document ORDER BY ecm:isProxy", "cannot order by"),
        ("SELECT * FROM Document WHERE ecm:isVersion = 'x'", "compare it with 1 or 0"),
    ],
)
def test_semantic_errors(nxql: str, words: str) -> None:
    with pytest.raises(NXQLError, match=words) as info:
        compile_query(parse(nxql), TABLE, "sqlite")
    assert info.value.position is not None


def test_deep_nesting_is_refused_not_a_crash() -> None:
    nxql = "SELECT * FROM Document WHERE " + "(" * 5000 + "a = 1" + ")" * 5000
    with pytest.raises(QueryError, match="nested deeper"):
        parse(nxql)
    with pytest.raises(QueryError):
        parse("SELECT * FROM Document WHERE " + "NOT " * 5000 + "a = 1")


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_values_and_names_are_bound_never_inlined(dialect: str) -> None:
    nxql = (
        "SELECT * FROM File WHERE dc:title = 'x'' OR 1=1 --' AND my:prop LIKE 'DROP%' "
        "AND ecm:path STARTSWITH '/evil' ORDER BY my:prop DESC"
    )
    compiled = compile_query(parse(nxql), TABLE, dialect)
    stmt = sa.select(TABLE.c.id).where(compiled.where).order_by(*compiled.order_by)
    sql = str(stmt.compile(dialect=DIALECTS[dialect]))
    for fragment in ("OR 1=1", "DROP", "evil", "dc:title", "my:prop", "File"):
        assert fragment not in sql


# --- property-based: arbitrary text never raises anything but QueryError -------------------------

NXQL_ALPHABET = st.sampled_from(
    [*"abcdefghijklmnopqrstuvwxyz:_/-0123456789 '\"()*,=<>!.;%\\\n\t",
     "SELECT", " * ", "FROM", "Document", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "IS",
       "NULL", "ORDER BY", "DESC", "STARTSWITH", "BETWEEN", "DATE", "ecm:path", "dc:title", "LIMIT", "'x'"]
)  # fmt: skip


def check_only_query_errors(text: str) -> None:
    try:
        query = parse(text)
    except QueryError as exc:
        assert exc.position is None or 0 <= exc.position <= len(text)
        return
    for dialect, sa_dialect in DIALECTS.items():
        try:
            compiled = compile_query(query, TABLE, dialect)
        except QueryError:
            return
        stmt = sa.select(TABLE.c.id).where(compiled.where).order_by(*compiled.order_by)
        stmt.compile(dialect=sa_dialect)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_random_text_only_raises_query_error(text: str) -> None:
    check_only_query_errors(text)
    check_only_query_errors("SELECT * FROM Document WHERE " + text)


@settings(max_examples=300, deadline=None)
@given(st.lists(NXQL_ALPHABET, max_size=30).map(" ".join))
def test_random_nxql_like_text_only_raises_query_error(text: str) -> None:
    check_only_query_errors(text)
    check_only_query_errors("SELECT * FROM Document WHERE " + text)
