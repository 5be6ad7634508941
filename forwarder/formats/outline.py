"""The top level of a JSON document, walked member by member without parsing the values.

Sniffing uses it to see whether an object's members lead to "Records" (`outline`); the CloudTrail
cutter uses the same steps to skip the members before the array. The checks are loose (a value's
brackets are counted, not matched): orjson decides validity where it matters.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import orjson

SPACE = re.compile(rb"[ \t\r\n]*")
STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
SCALAR = re.compile(rb'[^ \t\r\n,:\[\]{}"]+')
TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]"]', re.DOTALL)
"""A whole string, or a structural byte; a lone quote means the string runs past the data so far."""
OPEN = frozenset(b"{[")
QUOTE = ord('"')
RECORDS = "Records"
PAST = -1
"""`Outline.end` when the object runs past the bytes looked at."""


class Outline(NamedTuple):
    """What the first bytes of a document show of the top-level object it starts with."""

    records: bool
    """Whether "Records" is one of its member names (a name inside a member's value does not count)."""
    end: int
    """Where the object ends; PAST when it runs past the bytes, or once "Records" is seen (the walk
    stops there: a CloudTrail file's array runs on for megabytes)."""


def outline(text: bytes) -> Outline | None:
    """The outline of the object `text` starts with; None when `text` cannot start a JSON object.

    The check is loose (a value's brackets are counted, not matched): orjson decides validity later.
    """
    if not text.startswith(b"{"):
        return None
    at = 1
    try:
        while True:
            name, at = member_name(text, at)
            if name is None:
                return Outline(False, at)
            if name == RECORDS:
                return Outline(True, PAST)
            at = value_end(text, colon(text, at))
            more, at = after_value(text, at)
            if not more:
                return Outline(False, at)
    except Past:
        return Outline(False, PAST)
    except NotJson:
        return None


class Past(Exception):
    """The bytes end before the part looked for does."""


class NotJson(Exception):
    """The bytes cannot be that part of a JSON document."""


def space(data: bytes, at: int) -> int:
    """Past the whitespace at `at`; `Past` when the data ends in it."""
    end = SPACE.match(data, at).end()  # type: ignore[union-attr]  # `*` always matches
    if end == len(data):
        raise Past
    return end


def member_name(data: bytes, at: int) -> tuple[str | None, int]:
    """The member name at `at` and the position after it, or None and the position after the "}"."""
    at = space(data, at)
    if data[at] == ord("}"):
        return None, at + 1
    found = STRING.match(data, at)
    if found is None:
        if data[at] == QUOTE:
            raise Past
        raise NotJson("expected a member name")
    try:
        return orjson.loads(found.group()), found.end()
    except orjson.JSONDecodeError:
        raise NotJson("a member name is not a valid JSON string") from None


def colon(data: bytes, at: int) -> int:
    """Where the value starts, after the ":" that follows a member name."""
    at = space(data, at)
    if data[at] != ord(":"):
        raise NotJson("expected ':' after a member name")
    return space(data, at + 1)


def close_scan(data: bytes, at: int, depth: int) -> tuple[int, int, int]:
    """Brackets counted from `at` with `depth` already open: `(end, at, depth)`, `end` just past the
    bracket that brings the depth to 0, or -1 when the data ends first; then `at` is where to scan
    again once more data has come (a string that runs past the data starts over) and `depth` the
    depth there."""
    for token in TOKEN.finditer(data, at):
        first = data[token.start()]
        if first == QUOTE:
            if token.end() - token.start() == 1:
                return -1, token.start(), depth
        elif first in OPEN:
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return token.end(), token.end(), 0
    return -1, len(data), depth


def value_end(data: bytes, at: int) -> int:
    """The end of the JSON value starting at `at`."""
    if data[at] in OPEN:
        end, _, _ = close_scan(data, at, 0)
        if end < 0:
            raise Past
        return end
    if data[at] == QUOTE:
        found = STRING.match(data, at)
    else:
        found = SCALAR.match(data, at)
        if found is None:
            raise NotJson("expected a value")
        if found.end() == len(data):
            raise Past
    if found is None:
        raise Past
    return found.end()


def after_value(data: bytes, at: int) -> tuple[bool, int]:
    """Whether another member follows a value, and the position after the "," or "}"."""
    at = space(data, at)
    if data[at] == ord(","):
        return True, at + 1
    if data[at] == ord("}"):
        return False, at + 1
    raise NotJson("expected ',' or '}' after a member")
