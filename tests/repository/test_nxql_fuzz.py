"""The NXQL parser and compiler fuzzed with hypothesis (issue 14, item 8): over 10,000 inputs in
all (random text, token sequences from the grammar, deep parentheses, huge numbers, surrogates),
and only the documented error comes out: :class:`~conveyor.errors.NXQLError` (a QueryError) with
a message that is text. A query that parses compiles to SQL (on one of the three dialects per
input), or fails the same way.

Derandomized (the same inputs on every run) so that CI is stable; about 15 s on one core.
"""

from __future__ import annotations

from functools import cache

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql, sqlite

from conveyor.errors import NXQLError, QueryError
from conveyor.repository import Repository, open_repository
from conveyor.repository.nxql import compile_query, parse
from conveyor.repository.store import documents_table

DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect(), "mysql": mysql.dialect()}
NAMES = sorted(DIALECTS)
# Small limits: the same checks as the defaults, reached by inputs hypothesis can build quickly.
MAX_LENGTH = 2_000
MAX_TERMS = 40


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


@cache
def _table() -> sa.Table:
    return documents_table(sa.MetaData(), "fuzz_")


def check(text: str) -> None:
    """Parse and compile ``text``: NXQLError with a printable message, or SQL."""
    try:
        query = parse(text, max_length=MAX_LENGTH, max_terms=MAX_TERMS)
    except NXQLError as exc:
        str(exc).encode("utf-8")  # printable, loggable, sendable as JSON
        assert exc.position is None or 0 <= exc.position <= len(text)
        return
    name = NAMES[len(text) % len(NAMES)]  # one dialect per input: all three over the run
    try:
        compiled = compile_query(query, _table(), name)
    except NXQLError as exc:
        str(exc).encode("utf-8")
        return
    if len(text) % 4 == 0:  # SQL text for a quarter of the inputs: SQLAlchemy's compiler is slow
        stmt = sa.select(_table().c.id).where(compiled.where).order_by(*compiled.order_by)
        str(stmt.compile(dialect=DIALECTS[name]))


KEYWORDS = ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "LIKE", "ILIKE", "IN", "IS", "NULL"]
KEYWORDS += ["STARTSWITH", "BETWEEN", "ORDER", "BY", "ASC", "DESC", "LIMIT", "OFFSET", "DATE"]
KEYWORDS += ["TIMESTAMP", "TRUE", "FALSE", "select", "Where", "*"]
FIELDS = ["dc:title", "ecm:path", "ecm:uuid", "ecm:isTrashed", "dc:created", "ecm:primaryType"]
FIELDS += ["file:content/name", "dc:subjects/0", "ecm:mixinType", "ecm:isProxy", "ecm:fulltext", "x"]
FIELDS += ["ecm:parentId", "dc:modified", "my:list/*1", "Document", "File", "Note"]
VALUES = ["'a'", "'it''s'", "'\\''", "'%_\\'", '"q"', "'2024-01-31'", "'2024-01-31T12:00:00Z'"]
VALUES += ["'not a date'", "0", "-1", "1.5", "1e309", "-1e-400", "9223372036854775808", ".5", "1."]
VALUES += ["'unterminated", "'\ud800'", "'\x00'", "''"]
SYMBOLS = ["=", "<>", "!=", "<", "<=", ">", ">=", "(", ")", ",", ";", "--", "'", "-", "/*", "?", ":"]
TOKENS = st.sampled_from(KEYWORDS + FIELDS + VALUES + SYMBOLS)
CLAUSE = st.sampled_from(
    [
        "dc:title = 'a'",
        "ecm:path STARTSWITH '/a'",
        "dc:n IN (1, 2, 'x')",
        "dc:n NOT BETWEEN 1 AND 2",
        "ecm:isTrashed = 0",
        "dc:created > DATE '2024-01-01'",
        "dc:title ILIKE 'a%'",
        "dc:x IS NOT NULL",
    ]
)
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


@fuzz(2_500)
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    check(text)


@fuzz(1_000)
@given(
    st.text(alphabet=st.characters(codec=None), max_size=80).map(lambda t: "SELECT * FROM File WHERE " + t)
)
def test_random_text_after_a_valid_prefix(text: str) -> None:
    check(text)


@fuzz(3_500)
@given(st.lists(TOKENS, max_size=30), st.sampled_from([" ", "", "\n", "\t "]))
def test_token_sequences(tokens: list[str], separator: str) -> None:
    check(separator.join(tokens))


@fuzz(1_500)
@given(
    st.lists(TOKENS, max_size=12),
    st.lists(st.sampled_from(["AND", "OR"]), min_size=1, max_size=4),
    st.lists(CLAUSE, min_size=1, max_size=5),
)
def test_token_sequences_inside_valid_queries(tokens: list[str], ops: list[str], clauses: list[str]) -> None:
    where = f" {ops[0]} ".join(clauses)
    check(f"SELECT * FROM Document WHERE {where} {' '.join(tokens)}")
    check(f"SELECT * FROM Document WHERE {' '.join(tokens)} {ops[-1]} {where}")


@fuzz(600)
@given(st.integers(0, 400), st.integers(0, 400), st.sampled_from(["(", "NOT ", "NOT (", "( NOT "]))
def test_deep_parentheses(opened: int, closed: int, opener: str) -> None:
    check("SELECT * FROM File WHERE " + opener * opened + "dc:title = 'a'" + ")" * closed)


@fuzz(500)
@given(
    st.integers(1, 6_000),
    st.sampled_from(["", "-", ".", "0.", "1e", "-1e"]),
    st.sampled_from(["", ".5", "e99999", "e-99999"]),
)
def test_huge_numbers(digits: int, prefix: str, suffix: str) -> None:
    number = prefix + "7" * digits + suffix
    for text in (f"SELECT * FROM File WHERE dc:n = {number}", f"SELECT * FROM File LIMIT {number}"):
        try:  # the default limits: numbers of thousands of digits reach the number parsing
            parse(text)
        except NXQLError as exc:
            str(exc).encode("utf-8")
        check(text)


@fuzz(500)
@given(st.lists(CLAUSE, min_size=1, max_size=4), st.integers(0, 200), SURROGATE)
def test_surrogates(clauses: list[str], where: int, surrogate: str) -> None:
    query = "SELECT * FROM File WHERE " + " AND ".join(clauses)
    where = where % (len(query) + 1)
    text = query[:where] + surrogate + query[where:]
    with pytest.raises(NXQLError, match="lone surrogate"):
        parse(text)
    check(text)


@fuzz(400)
@given(st.integers(MAX_TERMS - 5, MAX_TERMS + 20), st.sampled_from(["IN", "OR", "ORDER", "SELECT"]))
def test_many_terms(count: int, shape: str) -> None:
    if shape == "IN":
        text = "SELECT * FROM File WHERE dc:n IN (" + ",".join(["1"] * count) + ")"
    elif shape == "OR":
        text = "SELECT * FROM File WHERE " + " OR ".join(["dc:n = 1"] * count)
    elif shape == "ORDER":
        text = "SELECT * FROM File ORDER BY " + ", ".join(["dc:n"] * count)
    else:
        text = "SELECT " + ", ".join(["dc:n"] * count) + " FROM File"
    if count > MAX_TERMS and len(text) <= MAX_LENGTH:
        with pytest.raises(NXQLError, match=f"more than {MAX_TERMS} terms"):
            parse(text, max_length=MAX_LENGTH, max_terms=MAX_TERMS)
    check(text)


@cache
def _sqlite_repository() -> Repository:
    repository = open_repository("sqlite://", max_query_length=MAX_LENGTH, max_query_terms=MAX_TERMS)
    repository.import_documents(
        [
            {"type": "File", "name": "a", "parent_path": "/a", "properties": {"dc:title": "a", "dc:n": 1}},
            {"type": "Note", "name": "b", "properties": {"dc:title": "it's", "dc:subjects": ["x", "y"]}},
        ]
    )
    return repository


PREDICATE = st.builds(
    "{} {} {}".format,
    st.sampled_from(FIELDS),
    st.sampled_from(["=", "<>", "<", ">=", "LIKE", "NOT ILIKE", "STARTSWITH", "IN", "NOT BETWEEN"]),
    st.sampled_from([*VALUES, "(1, 'a')", "('x')", "1 AND 2", "'a' AND 'b'", "DATE '2024-01-01'"]),
)


@fuzz(600)
@given(
    st.lists(TOKENS, max_size=4),
    st.lists(st.sampled_from(["AND", "OR", "AND NOT"]), min_size=1, max_size=3),
    st.lists(st.one_of(CLAUSE, PREDICATE), min_size=1, max_size=4),
    st.sampled_from(["", " ORDER BY dc:title DESC", " ORDER BY ecm:path, dc:n", " LIMIT 1 OFFSET 1"]),
)
def test_queries_run_on_sqlite(tokens: list[str], ops: list[str], clauses: list[str], tail: str) -> None:
    """A query that compiles runs: answered, or a QueryError (never another error)."""
    where = f" {ops[0]} ".join(clauses)
    for text in (
        f"SELECT * FROM Document WHERE {where}{tail}",
        f"SELECT * FROM Document WHERE {where} {' '.join(tokens)}",
        f"SELECT * FROM Document WHERE {' '.join(tokens)} {ops[-1]} {where}",
    ):
        try:
            _sqlite_repository().query(text)
            _sqlite_repository().count(text)
        except QueryError as exc:
            str(exc).encode("utf-8")
