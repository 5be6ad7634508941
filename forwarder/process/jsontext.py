"""Where a JSON document's string values are, found in its text without parsing it, for scrubbing.

Scanning from a point outside any string of a valid document, `"` … `"` (escapes skipped) finds
exactly its strings, and a string followed by `:` is a key. Without a backslash in the text every
quote is a string's first or last character, so which string holds a position is a matter of
counting the quotes before it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

POINTED_SPANS_MAX = 32
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"(?P<key>[ \t\r\n]*:)?', re.DOTALL)
_KEY_AFTER = re.compile(r"[ \t\r\n]*:")
_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SHORT_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_CONTEXT = {"AT", "ASSERT", "ASSERT_NOT", "ATOMIC_GROUP", "POSSESSIVE_REPEAT"}
"""What makes a pattern look beyond its match (anchors, word boundaries, lookarounds) or keep from
backtracking: for those, a match inside a string need not be one inside the whole text."""


def all_values(document: str) -> list[tuple[int, int]]:
    """The spans of every string value (not key), quotes included."""
    return [found.span() for found in _STRING.finditer(document) if found.group("key") is None]


def values_at(document: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans of the string values (quotes included) whose content overlaps one of `spans`
    (an empty span: touches it), in order; `document` has no backslash.

    The spans are taken in order and the quotes counted from one to the next, a pass over the text
    in all; past `POINTED_SPANS_MAX` spans every value is returned instead, so that no text costs
    more than a few passes over it.
    """
    if len(spans) > POINTED_SPANS_MAX:
        return all_values(document)
    found: set[tuple[int, int]] = set()
    counted = quotes = 0
    for start, end in sorted(spans):
        quotes += document.count('"', counted, start)
        counted = start
        inside = quotes % 2
        opening = document.rfind('"', 0, start) if inside else document.find('"', start)
        while opening != -1 and opening + 1 < max(end, start + 1):
            closing = document.find('"', opening + 1)
            if closing == -1:
                break
            overlaps = opening + 1 < end and start < closing if end > start else opening < start <= closing
            if overlaps and _KEY_AFTER.match(document, closing + 1) is None:
                found.add((opening, closing + 1))
            opening = document.find('"', closing + 1)
    return sorted(found)


def values_escaped_or_at(document: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`values_at` for a document with escapes: the values whose content overlaps one of `spans`,
    and every value holding an escape (its decoded text may match where its raw text does not).

    The quotes are counted in the document with each escape masked to as many `_`, so an escaped
    quote is never taken for a string's end; the escapes' own spans point at the values holding them.
    """
    escapes: list[tuple[int, int]] = []

    def masked(escape: re.Match[str]) -> str:
        escapes.append(escape.span())
        return "_" * len(escape.group())

    return values_at(_ESCAPE.sub(masked, document), [*spans, *escapes])


def unescaped(document: str) -> str:
    """The text with its JSON escapes decoded: every string value is a substring of it."""
    return _ESCAPE.sub(_unescape, document)


def has_escaped_surrogate(document: str) -> bool:
    """Whether a `\\uD800`-`\\uDFFF` escape is present: decoded one by one, a pair would not be its character."""
    return _SURROGATE_ESCAPE.search(document) is not None


def is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def context_free(pattern: re.Pattern[str]) -> bool:
    """Whether `pattern` matches at a place depends only on the characters it consumes there
    (no anchor, word boundary, lookaround, atomic group or possessive repeat). False when unsure."""
    try:
        from re import _parser  # type: ignore[attr-defined]  # the parser `re` itself uses

        parsed = _parser.parse(pattern.pattern, pattern.flags)
    except (ImportError, AttributeError, re.error):
        return False
    return not _uses_context(parsed)


_ZERO_WIDTH = {"AT", "ASSERT", "ASSERT_NOT"}
"""Context that consumes nothing (anchors, word boundaries, lookarounds): a pattern without it matches
wherever the pattern does, consuming the same characters, and more besides."""


def context_free_finder(pattern: re.Pattern[str]) -> re.Pattern[str] | None:
    """A context-free pattern that matches wherever `pattern` does: `pattern` itself when it is
    context free, else `pattern` less its zero-width context (`\bAKIA[A-Z0-9]{16}\b` finds with
    `AKIA[A-Z0-9]{16}`); None when it has other context or cannot be rebuilt."""
    if context_free(pattern):
        return pattern
    try:
        from re import _compiler, _parser  # type: ignore[attr-defined]  # those `re` itself uses

        parsed = _parser.parse(pattern.pattern, pattern.flags)
        _drop_zero_width(parsed)
        if _uses_context(parsed):
            return None
        found: re.Pattern[str] = _compiler.compile(parsed, pattern.flags)
    except (ImportError, AttributeError, TypeError, re.error):
        return None
    return found


def _drop_zero_width(items: Any) -> None:
    items.data[:] = [(op, argument) for op, argument in items.data if op.name not in _ZERO_WIDTH]
    for _, argument in items.data:
        for part in argument if isinstance(argument, tuple | list) else ():
            if _is_subpattern(part):
                _drop_zero_width(part)
            elif isinstance(part, list):
                for branch in part:
                    if _is_subpattern(branch):
                        _drop_zero_width(branch)


def _uses_context(items: object) -> bool:
    for op, argument in items:  # type: ignore[attr-defined]
        if op.name in _CONTEXT:
            return True
        for part in argument if isinstance(argument, tuple | list) else ():
            if _is_subpattern(part) and _uses_context(part):
                return True
            if isinstance(part, list) and any(_is_subpattern(branch) and _uses_context(branch) for branch in part):
                return True
    return False


def _is_subpattern(value: object) -> bool:
    return type(value).__name__ == "SubPattern"


def _unescape(escape: re.Match[str]) -> str:
    text = escape.group()
    if text[1] == "u":
        return chr(int(text[2:], 16))
    return _SHORT_ESCAPES.get(text[1], text[1])
