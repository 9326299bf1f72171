"""Compute Engine's list filters, as clients write them: `labels.env = "prod"`,
`name != web-1`, `(labels.a = "x") AND (labels.b = "y")`, `labels.team:*`, `NOT deprecated.state:*`,
`creationTimestamp > "2024-01-01"`, and the legacy `name eq 'golden-.*'` (a regular expression).

Precedence as in AIP-160: OR binds tighter than AND, and terms side by side are ANDed. As on
GCE, `eq`/`ne` terms stand alone or side by side, never with the other operators or AND/OR/NOT
(the API answers 400 "Invalid list filter expression"). A field path walks maps and lists (any
element may match); a missing field matches only `!=` and `ne`. String values may use `*` as a
wildcard.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<open>\()
      | (?P<close>\))
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<word>[^\s()=!<>:"']+)""",
    re.VERBOSE,
)
_LEGACY = {"eq", "ne"}


class FilterError(ValueError):
    """The filter does not parse; the message says where."""


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(f"unexpected {text[position:]!r}")
        position = match.end()
        kind = match.lastgroup or ""
        if kind == "space":
            continue
        value = match.group()
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(_Token(kind, value))
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        # What the expression used, since GCE refuses to mix the regular-expression syntax with
        # AIP-160's: `eq`/`ne` terms only side by side, never with operators or AND/OR/NOT.
        self.legacy = False
        self.aip = False

    def peek(self, offset: int = 0) -> _Token | None:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise FilterError("unexpected end of the filter")
        self.position += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text == word:
            self.position += 1
            self.aip = True
            return True
        return False

    def expression(self) -> Predicate:
        factors = [self.factor()]
        while True:
            token = self.peek()
            if token is None or token.kind == "close":
                break
            self.keyword("AND")
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else lambda r: all(f(r) for f in factors)

    def factor(self) -> Predicate:
        terms = [self.term()]
        while self.keyword("OR"):
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else lambda r: any(t(r) for t in terms)

    def term(self) -> Predicate:
        if self.keyword("NOT"):
            inner = self.term()
            return lambda r: not inner(r)
        token = self.take()
        if token.kind == "open":
            inner = self.expression()
            if self.take().kind != "close":
                raise FilterError("a parenthesis is not closed")
            return inner
        if token.kind != "word":
            raise FilterError(f"expected a field name, found {token.text!r}")
        negate = token.text.startswith("-")
        field = token.text[1:] if negate else token.text
        operator = self.take()
        if operator.kind != "op" and not (operator.kind == "word" and operator.text in _LEGACY):
            raise FilterError(f"expected a comparison after {field!r}, found {operator.text!r}")
        value = self.take()
        if value.kind not in ("word", "string"):
            raise FilterError(f"expected a value after {field} {operator.text}, found {value.text!r}")
        if operator.text in _LEGACY:
            self.legacy = True
        else:
            self.aip = True
        compare = _comparison(field, operator.text, value.text)
        return (lambda r: not compare(r)) if negate else compare


def parse(text: str) -> Predicate:
    """A predicate over a resource's JSON representation; FilterError if `text` does not parse."""
    if not text.strip():
        return lambda r: True
    parser = _Parser(text)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {parser.peek().text!r}")  # type: ignore[union-attr]
    if parser.legacy and parser.aip:
        raise FilterError("regular expressions (eq, ne) cannot be mixed with other operators, AND, OR or NOT")
    return predicate


def _walk(value: Any, path: list[str]) -> Iterator[Any]:
    if not path:
        if isinstance(value, list):
            yield from value
        else:
            yield value
        return
    if isinstance(value, list):
        for item in value:
            yield from _walk(item, path)
    elif isinstance(value, dict) and path[0] in value:
        yield from _walk(value[path[0]], path[1:])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _equal(actual: Any, expected: str) -> bool:
    text = _text(actual)
    if "*" in expected:
        return fnmatch.fnmatchcase(text, expected)
    if text == expected:
        return True
    a, b = _number(text), _number(expected)
    return a is not None and a == b


def _ordered(actual: Any, operator: str, expected: str) -> bool:
    a, b = _number(_text(actual)), _number(expected)
    left: Any = a if a is not None and b is not None else _text(actual)
    right: Any = b if a is not None and b is not None else expected
    results: dict[str, bool] = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}
    return results[operator]


def _comparison(field: str, operator: str, expected: str) -> Predicate:
    path = field.split(".")
    if operator in _LEGACY:
        try:
            pattern = re.compile(expected)
        except re.error as exc:
            raise FilterError(f"{expected!r} is not a regular expression: {exc}") from exc

        def legacy(resource: dict[str, Any]) -> bool:
            found = any(pattern.fullmatch(_text(v)) for v in _walk(resource, path))
            return found if operator == "eq" else not found

        return legacy

    def compare(resource: dict[str, Any]) -> bool:
        values = list(_walk(resource, path))
        if operator == "!=":
            return not any(_equal(v, expected) for v in values)
        if operator == "=":
            return any(_equal(v, expected) for v in values)
        if operator == ":":
            if expected == "*":
                return bool(values)
            return any((expected in v) if isinstance(v, dict) else _equal(v, expected) for v in values)
        return any(_ordered(v, operator, expected) for v in values)

    return compare
