"""The NXQL subset: tokens (:mod:`.lexer`), syntax tree (:mod:`.ast`), parser, SQL compiler."""

from conveyor.repository.nxql.ast import Query
from conveyor.repository.nxql.parser import parse
from conveyor.repository.nxql.sql import CompiledQuery, compile_query

__all__ = ["CompiledQuery", "Query", "compile_query", "parse"]
