"""NXQL text -> :class:`~conveyor.repository.nxql.ast.Query` (a recursive-descent parser).

Grammar (keywords case-insensitive)::

    query     := SELECT ('*' | field (',' field)*) FROM type (',' type)*
                 [WHERE expr] [ORDER BY field [ASC|DESC] (',' ...)*] [LIMIT n] [OFFSET n]
    expr      := and (OR and)*
    and       := not (AND not)*
    not       := NOT not | '(' expr ')' | predicate
    predicate := field op value | field [NOT] (LIKE|ILIKE) string | field [NOT] IN (value, ...)
               | field IS [NOT] NULL | field STARTSWITH string | field [NOT] BETWEEN value AND value
    value     := string | number | TRUE | FALSE | DATE string | TIMESTAMP string
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from functools import lru_cache

from conveyor.errors import NXQLError
from conveyor.repository.nxql.ast import (
    And,
    Between,
    Compare,
    Expr,
    Field,
    InList,
    IsNull,
    Like,
    Literal,
    Not,
    Or,
    OrderKey,
    Query,
    StartsWith,
)
from conveyor.repository.nxql.lexer import Token, TokenKind, tokenize

__all__ = ["DEFAULT_MAX_LENGTH", "DEFAULT_MAX_TERMS", "check_text", "parse", "parse_timestamp"]

MAX_DEPTH = 100  # nesting of parentheses / NOT: deeper is refused rather than overflowing the stack
MAX_INT = 2**63 - 1
MAX_NUMBER_CHARS = 400  # a longer number literal is no 64-bit int or finite float anyway
DEFAULT_MAX_LENGTH = 100_000
"""Characters an NXQL query may have unless configured otherwise (``max_length``)."""
DEFAULT_MAX_TERMS = 2_000
"""Terms an NXQL query may have unless configured otherwise (``max_terms``): predicates, values
of IN lists, ORDER BY keys and selected fields each count as one."""


_SURROGATES = re.compile("[\ud800-\udfff]")


def check_text(text: str, max_length: int = DEFAULT_MAX_LENGTH) -> None:
    """Raise :class:`~conveyor.errors.NXQLError` unless ``text`` is at most ``max_length``
    characters of encodable text (no lone surrogate, no NUL character): checked before any
    parsing, so a huge query costs nothing."""
    if len(text) > max_length:
        raise NXQLError(
            f"query is {len(text)} characters long, more than the limit of {max_length} (max_query_length)"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # The error shows the query with U+FFFD in place of surrogates: its message must be text too.
        raise NXQLError(
            f"query holds a lone surrogate {text[exc.start]!r}, which is not text "
            "(was it decoded from UTF-16 or with surrogateescape?)",
            _SURROGATES.sub("\ufffd", text),
            exc.start,
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise NXQLError("query holds a NUL character", text, nul)


def parse_timestamp(text: str) -> datetime | None:
    """``text`` (ISO 8601 date or date-time) as a naive UTC datetime, or None when it is not one."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


class _Parser:
    def __init__(self, text: str, max_terms: int) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.terms = 0
        self.max_terms = max_terms

    def term(self, pos: int) -> None:
        """Count one term, at ``pos``: fail as soon as the query has too many."""
        self.terms += 1
        if self.terms > self.max_terms:
            raise self.error(
                f"query has more than {self.max_terms} terms (predicates, IN values, ORDER BY keys "
                "and selected fields; the limit is max_query_terms)",
                pos,
            )

    # --- token plumbing ------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, pos: int | None = None) -> NXQLError:
        return NXQLError(message, self.text, self.tok.pos if pos is None else pos)

    def describe(self, token: Token) -> str:
        if token.kind is TokenKind.EOF:
            return "end of query"
        if token.kind is TokenKind.STRING:
            return "a string"
        return repr(self.text[token.pos : token.pos + max(1, len(token.value))])

    def advance(self) -> Token:
        token = self.tok
        if token.kind is not TokenKind.EOF:
            self.i += 1
        return token

    def at(self, kind: TokenKind) -> bool:
        return self.tok.kind is kind

    def at_keyword(self, *words: str) -> bool:
        return self.tok.kind is TokenKind.KEYWORD and self.tok.value in words

    def accept_keyword(self, word: str) -> bool:
        if self.at_keyword(word):
            self.advance()
            return True
        return False

    def expect_keyword(self, word: str) -> Token:
        if not self.at_keyword(word):
            raise self.error(f"expected {word}, found {self.describe(self.tok)}")
        return self.advance()

    def expect(self, kind: TokenKind, what: str) -> Token:
        if self.tok.kind is not kind:
            raise self.error(f"expected {what}, found {self.describe(self.tok)}")
        return self.advance()

    # --- the grammar ---------------------------------------------------------------------------

    def query(self) -> Query:
        self.expect_keyword("SELECT")
        select: tuple[Field, ...] | None
        if self.at(TokenKind.STAR):
            self.advance()
            select = None
        else:
            fields = [self.field()]
            self.term(fields[-1].pos)
            while self.at(TokenKind.COMMA):
                self.advance()
                fields.append(self.field())
                self.term(fields[-1].pos)
            select = tuple(fields)
        self.expect_keyword("FROM")
        types = [self.expect(TokenKind.IDENT, "a document type after FROM").value]
        while self.at(TokenKind.COMMA):
            self.advance()
            types.append(self.expect(TokenKind.IDENT, "a document type").value)
        where = None
        if self.accept_keyword("WHERE"):
            where = self.expr()
        order: list[OrderKey] = []
        if self.accept_keyword("ORDER"):
            self.expect_keyword("BY")
            order.append(self.order_key())
            while self.at(TokenKind.COMMA):
                self.advance()
                order.append(self.order_key())
        limit = self.count_clause("LIMIT")
        offset = self.count_clause("OFFSET")
        if self.tok.kind is not TokenKind.EOF:
            raise self.error(f"unexpected {self.describe(self.tok)}")
        all_types = any(t.lower() == "document" for t in types)
        return Query(
            self.text,
            select,
            () if all_types else tuple(dict.fromkeys(types)),
            where,
            tuple(order),
            limit,
            offset,
        )

    def count_clause(self, word: str) -> int | None:
        if not self.accept_keyword(word):
            return None
        token = self.expect(TokenKind.NUMBER, f"a number after {word}")
        if not token.value.isdigit() or len(token.value) > 19 or int(token.value) > MAX_INT:
            raise self.error(f"{word} needs a non-negative integer", token.pos)
        return int(token.value)

    def order_key(self) -> OrderKey:
        field = self.field()
        self.term(field.pos)
        if self.accept_keyword("DESC"):
            return OrderKey(field, True)
        self.accept_keyword("ASC")
        return OrderKey(field, False)

    def field(self) -> Field:
        token = self.expect(TokenKind.IDENT, "a field name")
        return Field(token.value, token.pos)

    def expr(self) -> Expr:
        items = [self.conjunction()]
        while self.accept_keyword("OR"):
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Expr:
        items = [self.negation()]
        while self.accept_keyword("AND"):
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"query nested deeper than {MAX_DEPTH} levels")
        try:
            if self.accept_keyword("NOT"):
                return Not(self.negation())
            if self.at(TokenKind.LPAREN):
                self.advance()
                inner = self.expr()
                self.expect(TokenKind.RPAREN, "')'")
                return inner
            return self.predicate()
        finally:
            self.depth -= 1

    def predicate(self) -> Expr:
        field = self.field()
        self.term(field.pos)
        token = self.tok
        if token.kind is TokenKind.OP:
            self.advance()
            op = "<>" if token.value == "!=" else token.value
            return Compare(field, op, self.value())
        negated = self.accept_keyword("NOT")
        if self.at_keyword("LIKE", "ILIKE"):
            insensitive = self.advance().value == "ILIKE"
            return Like(field, self.string_value("a string pattern"), negated, insensitive)
        if self.accept_keyword("IN"):
            self.expect(TokenKind.LPAREN, "'(' after IN")
            values = [self.value()]
            while self.at(TokenKind.COMMA):
                self.advance()
                self.term(self.tok.pos)
                values.append(self.value())
            self.expect(TokenKind.RPAREN, "')' closing the IN list")
            return InList(field, tuple(values), negated)
        if self.accept_keyword("BETWEEN"):
            low = self.value()
            self.expect_keyword("AND")
            return Between(field, low, self.value(), negated)
        if negated:
            raise self.error(
                f"expected LIKE, ILIKE, IN or BETWEEN after NOT, found {self.describe(self.tok)}"
            )
        if self.accept_keyword("IS"):
            negated = self.accept_keyword("NOT")
            self.expect_keyword("NULL")
            return IsNull(field, negated)
        if self.accept_keyword("STARTSWITH"):
            return StartsWith(field, self.string_value("a path string after STARTSWITH"))
        raise self.error(f"expected an operator after {field.name}, found {self.describe(token)}")

    def string_value(self, what: str) -> Literal:
        token = self.expect(TokenKind.STRING, what)
        return Literal(token.value, "string", token.pos)

    def value(self) -> Literal:
        token = self.tok
        if token.kind is TokenKind.STRING:
            self.advance()
            return Literal(token.value, "string", token.pos)
        if token.kind is TokenKind.NUMBER:
            self.advance()
            return Literal(self.number(token), "number", token.pos)
        if self.at_keyword("TRUE", "FALSE"):
            self.advance()
            return Literal(1 if token.value == "TRUE" else 0, "number", token.pos)
        if self.at_keyword("DATE", "TIMESTAMP"):
            self.advance()
            text = self.expect(TokenKind.STRING, f"a quoted date after {token.value}")
            stamp = parse_timestamp(text.value)
            if stamp is None:
                raise self.error(f"invalid {token.value} {text.value!r}", text.pos)
            return Literal(stamp, "timestamp", token.pos)
        raise self.error(f"expected a value, found {self.describe(token)}")

    def number(self, token: Token) -> int | float:
        text = token.value
        if len(text) > MAX_NUMBER_CHARS:  # int() of thousands of digits is slow, then refused
            raise self.error(f"number of {len(text)} characters is out of range", token.pos)
        if all(c.isdigit() for c in text.lstrip("-")) and text.lstrip("-"):
            value = int(text)
            if abs(value) > MAX_INT:
                raise self.error(f"integer {text} is out of the 64-bit range", token.pos)
            return value
        number = float(text)
        if not math.isfinite(number):
            raise self.error(f"number {text} is out of range", token.pos)
        return number


def parse(text: str, max_length: int = DEFAULT_MAX_LENGTH, max_terms: int = DEFAULT_MAX_TERMS) -> Query:
    """Parse an NXQL query; :class:`~conveyor.errors.NXQLError` with the position on any error.

    A query longer than ``max_length`` characters, with more than ``max_terms`` terms (see
    :data:`DEFAULT_MAX_TERMS`), or holding what is not text (a lone surrogate, NUL) is refused
    before it costs time in proportion to its size.
    """
    if not isinstance(text, str):
        raise NXQLError(f"an NXQL query must be a string, got {type(text).__name__}")
    check_text(text, max_length)
    return _parse(text, max_terms)


@lru_cache(maxsize=512)
def _parse(text: str, max_terms: int) -> Query:
    return _Parser(text, max_terms).query()
