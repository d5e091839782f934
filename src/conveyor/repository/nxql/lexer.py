"""NXQL tokens: keywords, identifiers (``dc:title``, ``ecm:path``), strings, numbers, operators.

Anything else (``;``, ``--``, a stray quote) is a :class:`~conveyor.errors.NXQLError` at the
offending character, so nothing outside this small alphabet ever reaches the compiler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from conveyor.errors import NXQLError

__all__ = ["KEYWORDS", "Token", "TokenKind", "tokenize"]


class TokenKind(Enum):
    """What a token is."""

    KEYWORD = "keyword"
    IDENT = "identifier"
    STRING = "string"
    NUMBER = "number"
    OP = "operator"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    STAR = "*"
    EOF = "end of query"


KEYWORDS = frozenset(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "LIKE",
        "ILIKE",
        "IN",
        "IS",
        "NULL",
        "STARTSWITH",
        "BETWEEN",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "LIMIT",
        "OFFSET",
        "DATE",
        "TIMESTAMP",
        "TRUE",
        "FALSE",
    ]
)

_SEGMENT = r"[A-Za-z_][A-Za-z0-9_\-]*(?::[A-Za-z_][A-Za-z0-9_\-]*)?"
_IDENT = re.compile(rf"{_SEGMENT}(?:/(?:{_SEGMENT}|[0-9]+))*")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OPS = ("<>", "!=", "<=", ">=", "=", "<", ">")
_SINGLE = {"(": TokenKind.LPAREN, ")": TokenKind.RPAREN, ",": TokenKind.COMMA, "*": TokenKind.STAR}


@dataclass(frozen=True)
class Token:
    """One token: its kind, its value (keywords upper-cased, strings unescaped) and its offset."""

    kind: TokenKind
    value: str
    pos: int


def _string(text: str, start: int) -> tuple[str, int]:
    """The unescaped string literal opening at ``start`` and the offset just past it.

    The quote is doubled to include it (``'it''s'``) or escaped by a backslash (``'it\\'s'``, as
    Nuxeo's lexer accepts); ``\\\\`` is a backslash; any other backslash is kept (LIKE escapes).
    """
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            if text.startswith(quote, i + 1):
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        if char == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    raise NXQLError("unterminated string literal", text, start)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an EOF token; NXQLError on any character outside NXQL."""
    tokens: list[Token] = []
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char in " \t\r\n":
            i += 1
            continue
        if char in ("'", '"'):
            value, end = _string(text, i)
            tokens.append(Token(TokenKind.STRING, value, i))
            i = end
            continue
        if char in _SINGLE:
            tokens.append(Token(_SINGLE[char], char, i))
            i += 1
            continue
        number = _NUMBER.match(text, i)
        if number is not None and (char != "-" or _after_value_expected(tokens)):
            end = number.end()
            if end < length and (text[end].isalnum() or text[end] in "_:"):
                raise NXQLError(f"malformed number {text[i : end + 1]!r}", text, i)
            tokens.append(Token(TokenKind.NUMBER, number.group(), i))
            i = end
            continue
        ident = _IDENT.match(text, i)
        if ident is not None:
            word = ident.group()
            upper = word.upper()
            if upper in KEYWORDS:
                tokens.append(Token(TokenKind.KEYWORD, upper, i))
            else:
                tokens.append(Token(TokenKind.IDENT, word, i))
            i = ident.end()
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(Token(TokenKind.OP, op, i))
            i += len(op)
            continue
        raise NXQLError(f"unexpected character {char!r}", text, i)
    tokens.append(Token(TokenKind.EOF, "", length))
    return tokens


def _after_value_expected(tokens: list[Token]) -> bool:
    """True when a ``-`` here starts a negative number (after an operator, ``(``, ``,`` or a keyword)."""
    if not tokens:
        return True
    return tokens[-1].kind in (TokenKind.OP, TokenKind.LPAREN, TokenKind.COMMA, TokenKind.KEYWORD)
