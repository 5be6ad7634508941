"""Regexes compiled where they are first used.

`sources` holds about forty in its rules tables; choosing one container's source tries a few of them,
and compiling them all at import took about 6 ms of every cold start.
"""

from __future__ import annotations

import re


class Regex:
    """A regex compiled where it is first used, for tables of patterns of which one input tries a few.

    `needle`, when given, is a literal that every text the regex matches contains: a text without it
    is refused by a substring test, the regex neither compiled nor run (a CloudTrail key passes the
    Security Lake and digest rules that way).
    """

    __slots__ = ("_compiled", "_flags", "needle", "pattern")

    def __init__(self, pattern: str, flags: int = 0, needle: str = "") -> None:
        self.pattern = pattern
        self._flags = flags
        self.needle = needle
        self._compiled: re.Pattern[str] | None = None

    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self._flags)
        return self._compiled

    def search(self, text: str) -> re.Match[str] | None:
        if self.needle and self.needle not in text:
            return None
        return self.compiled().search(text)

    def fullmatch(self, text: str) -> re.Match[str] | None:
        return self.compiled().fullmatch(text)

    def sub(self, replacement: str, text: str) -> str:
        return self.compiled().sub(replacement, text)

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"
