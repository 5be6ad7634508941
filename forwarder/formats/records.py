"""Cutting CloudTrail records out of a streamed `{"Records": [...]}` document.

CloudTrail files are a single JSON document, up to gigabytes, usually on one line. Parsing it whole
would hold it all in memory, and a Python loop per byte is far too slow, so records are cut out of
the stream: a search proposes where a record ends, the head reader confirms it (a JSON object is
prefix-free, so a slice that is one valid object is the record) and decodes the few fields encoding
needs, and an exact tokenizer takes over when proposals keep failing. docs/architecture.md explains
the runs (`RecordRun`): many records cut at a literal and proved together.

A stream may also start just after a record's closing brace, inside the array (a continuation), so
the separators and the closing `]` are checked as on a full pass.

Top-level members before "Records" (`{"fileVersion": "1.0", "Records": [...]}`) are skipped whole
and checked (`RecordCutter._open_array`); `outline` is the same walk over a head, for sniffing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TypeVar

import orjson

from forwarder.errors import InputError
from forwarder.formats.jsonhead import Head, HeadReader, InvalidRecord
from forwarder.formats.outline import (
    RECORDS,
    NotJson,
    Past,
    after_value,
    close_scan,
    colon,
    member_name,
    value_end,
)
from forwarder.formats.run import RUN_LITERAL, RecordRun, RunCutter
from forwarder.model import RawEvent

_WS = b" \t\r\n"
_OPEN_OBJECT = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*\{")
_HEAD_LIMIT = 1 << 20
"""How much leading whitespace is looked through for the document's opening brace."""
_NON_WS = re.compile(rb"[^ \t\r\n]")
_FIRST_KEY = re.compile(rb'\{[ \t\r\n]*("[^"\\]*(?:\\.[^"\\]*)*")', re.DOTALL)
_ANY_SEPARATOR_PATTERN = rb"\}[ \t\r\n]*,[ \t\r\n]*(\{)"
_ANY_SEPARATOR = re.compile(_ANY_SEPARATOR_PATTERN)
_MAX_PROPOSALS = 4
"""Failed end proposals tolerated per record before the exact tokenizer takes over."""
_PROPOSAL_REACH = 1 << 20
"""How far past a record's start a proposal is looked for before the exact tokenizer takes over."""
RUN_MAX_BYTES = 512 * 1024
"""The longest span a run covers (`run.RunCutter`)."""
_RUNS_REFUSED_TOLERATED = 8
"""Runs whose cuts could not be proved before a file is cut one record at a time: a file that keeps
defeating the proof pays for each attempt."""


_T = TypeVar("_T")


class RecordCutter:
    """The state of one pass over a CloudTrail document.

    `data` holds the unconsumed part of the stream, starting at absolute offset `base`. It is only
    ever refilled with at least as many new bytes as it keeps (`_refill`), so re-reading what is kept
    stays linear however small the chunks or large the record.

    With `records_before`, the stream starts just after that many records' closing brace, `offset`
    bytes into the decompressed document: inside the array, before the next `,` or the closing `]`.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        origin: str,
        heads: HeadReader,
        max_event_bytes: int,
        offset: int = 0,
        records_before: int = 0,
    ) -> None:
        self.chunks = iter(chunks)
        self.heads = heads
        self.read_head = heads.read
        self.runs = RunCutter(heads, RUN_MAX_BYTES)
        self.origin = origin
        self.max_event_bytes = max_event_bytes
        self.data = b""
        self.base = offset
        self.eof = False
        self.separator = _ANY_SEPARATOR
        self.literal: bytes | None = None
        self.records_before = records_before
        self.literal_absent = False

    def blocks(self) -> Iterator[RawEvent | RecordRun]:
        index = self.records_before
        start = self._open_array() if index == 0 else 0
        learned = False
        while True:
            start = self._next_record(start, index)
            if start < 0:
                return
            if learned:
                index, start = yield from self._fast(start, index)
            record, head, start = self._careful(start, index)
            if not learned:
                self._learn_separator(record)
                learned = True
            yield RawEvent.structured(index, record, head, self.base + start)
            index += 1

    def _fast(self, start: int, index: int) -> Generator[RawEvent | RecordRun, None, tuple[int, int]]:
        """Records whose proposed end is right at the first try: the hot loop.

        Minified files (CloudTrail's own) are cut with `bytes.find` on the literal `},{"eventVersion"`,
        a run of them at a time where `RunCutter.cut` can prove the cuts (nearly always), else one search and
        one check per record; a proposal that is not one valid object hands over to `_careful`, which
        never guesses. A slice that is one valid object is exactly one record whatever proposed it: an
        object has one end.
        """
        if self.literal is not None and not self.literal_absent:
            while True:
                runs = (
                    self.literal == RUN_LITERAL
                    and self.runs.refused < _RUNS_REFUSED_TOLERATED
                    and self.max_event_bytes >= RUN_MAX_BYTES  # so no record of a run can be over it
                )
                if runs:
                    run = self.runs.cut(self.data, start, index, self.base)
                    if run is not None:
                        yield run
                        index += len(run)
                        start = run.end_offset - self.base + 1
                        continue
                stop = start + RUN_MAX_BYTES if runs else len(self.data)
                index, start, more = yield from self._one_by_one(start, index, stop)
                if not more:
                    return index, start
        search = self.separator.search
        data = self.data
        base = self.base
        check = self.read_head
        event = RawEvent.structured
        while True:
            found = search(data, start + 1)
            if found is None:
                break
            end = found.start() + 1
            if end - start > self.max_event_bytes:
                break
            record = data[start:end]
            try:
                head = check(record)
            except InvalidRecord:
                break
            yield event(index, record, head, base + end)
            index += 1
            start = found.start(1)
        return index, start

    def _one_by_one(self, start: int, index: int, stop: int) -> Generator[RawEvent, None, tuple[int, int, bool]]:
        """Records cut at the literal one at a time, up to the first proposed end at or past `stop`:
        `(index, start, more)`, `more` when the hot loop may go on from there."""
        data = self.data
        base = self.base
        check = self.read_head
        limit = self.max_event_bytes
        event = RawEvent.structured
        literal = self.literal
        assert literal is not None
        find = data.find
        while True:
            at = find(literal, start + 1)
            if at < 0:
                self.literal_absent = True  # from here to the end of the data: no search until a refill
                return index, start, False
            end = at + 1
            if end - start > limit:
                return index, start, False
            record = data[start:end]
            try:
                head = check(record)
            except InvalidRecord:
                self.literal = None  # not minified after all: the separator regex takes over
                return index, start, False
            yield event(index, record, head, base + end)
            index += 1
            start = at + 2
            if end >= stop:
                return index, start, True

    def _careful(self, start: int, index: int) -> tuple[bytes, Head, int]:
        """The record at `start` (a "{"), reading more as needed: `(record, head, end)`.

        Proposals are tried first; after a few failures, or none within reach, the tokenizer finds
        the exact end, and a record that still does not parse is repaired (UTF-8) or reported.
        """
        proposals = 0
        search_from = start + 1
        while proposals < _MAX_PROPOSALS:
            found = self.separator.search(self.data, search_from)
            if found is not None:
                end = found.start() + 1
                parsed = self._parse_prefix(start, end)
                if parsed is not None and parsed[2] == end:
                    return parsed
                self.separator = _ANY_SEPARATOR  # a learned first key that misleads is no help
                if parsed is not None:
                    return parsed
                proposals += 1
                search_from = end
                continue
            reach = len(self.data) - start
            if self.eof or reach >= min(_PROPOSAL_REACH, self.max_event_bytes):
                break
            last_brace = self.data.rfind(b"}", search_from)
            search_from = (last_brace if last_brace >= 0 else len(self.data)) - start
            self._refill(start)
            start = 0
        self.separator = _ANY_SEPARATOR
        start, end = self._exact_end(start, index)
        return self._parse_exact(start, end, index)

    def _parse_prefix(self, start: int, end: int) -> tuple[bytes, Head, int] | None:
        """data[start:end], or the complete object inside it, if either is one valid object.

        The error's position (orjson's) says where an object inside the slice ends.
        """
        if end - start > self.max_event_bytes:
            return None
        record = self.data[start:end]
        try:
            return record, self.read_head(record), end
        except InvalidRecord as exc:
            cut = exc.pos
        if not 0 < cut < len(record):
            return None
        if not record.isascii():  # orjson counts characters, not bytes
            cut = len(record.decode()[:cut].encode())
        record = record[:cut].rstrip(_WS)
        if not record.endswith(b"}"):
            return None
        try:
            return record, self.read_head(record), start + len(record)
        except InvalidRecord:
            return None

    def _parse_exact(self, start: int, end: int, index: int) -> tuple[bytes, Head, int]:
        if end - start > self.max_event_bytes:
            raise self._error(index, start, f"record longer than {self.max_event_bytes} bytes")
        record = self.data[start:end]
        try:
            return record, self.read_head(record), end
        except InvalidRecord as exc:
            error: Exception = exc
        try:
            record.decode()
        except UnicodeDecodeError:
            record = record.decode("utf-8", "replace").encode()
            try:
                return record, self.read_head(record), end
            except InvalidRecord as exc:
                error = exc
        raise self._error(index, start, f"record is not valid JSON: {error}")

    def _exact_end(self, start: int, index: int) -> tuple[int, int]:
        """Tokenize from `start` to the matching close: `(start, end)` after any refills."""
        depth = 0
        at = start
        while True:
            end, at, depth = close_scan(self.data, at, depth)
            if end >= 0:
                return start, end
            if self.eof:
                raise self._error(index, start, "document ends inside a record, before the Records array closes")
            if len(self.data) - start > self.max_event_bytes:
                raise self._error(index, start, f"record longer than {self.max_event_bytes} bytes")
            at -= start
            self._refill(start)
            start = 0

    def _next_record(self, start: int, index: int) -> int:
        """From the end of the previous element, the start of the next record, or -1 after "]"."""
        start = self._skip_space(start, index)
        if index:
            if self.data[start] == ord("]"):
                return -1
            if self.data[start] != ord(","):
                raise self._error(index, start, "expected ',' or ']' after a record")
            start = self._skip_space(start + 1, index)
        elif self.data[start] == ord("]"):
            return -1
        if self.data[start] != ord("{"):
            raise self._error(index, start, "expected a record (a JSON object)")
        return start

    def _skip_space(self, start: int, index: int) -> int:
        while True:
            found = _NON_WS.search(self.data, start)
            if found is not None:
                return found.start()
            if self.eof:
                raise self._error(index, start, "document ends before the Records array closes")
            self._refill(len(self.data))
            start = 0

    def _open_array(self) -> int:
        """Just inside the top-level "Records" array, wherever it stands among the members.

        The members before it are skipped whole, each bounded like a record and checked by orjson,
        so a "Records" inside one of their values does not count. Members after the array are never
        read.
        """
        while True:
            found = _OPEN_OBJECT.match(self.data)
            if found is not None:
                break
            if self.eof or len(self.data) > _HEAD_LIMIT:
                raise self._head_error(0, 'no {"Records": [')
            self._refill(0)
        at = found.end()
        while True:
            at, (name, after) = self._head_step(at, member_name)
            if name is None:
                raise self._head_error(at, 'no "Records" array')
            at, start = self._head_step(after, colon)
            if name == RECORDS:
                if self.data[start] != ord("["):
                    raise self._head_error(start, '"Records" is not an array')
                return start + 1
            start, end = self._head_step(start, value_end)
            if end - start > self.max_event_bytes:
                raise self._head_error(start, f"the value of {name!r} is longer than {self.max_event_bytes} bytes")
            try:
                orjson.loads(memoryview(self.data)[start:end])
            except orjson.JSONDecodeError as exc:
                raise self._head_error(start, f"the value of {name!r} is not valid JSON: {exc}") from None
            at, (more, after) = self._head_step(end, after_value)
            if not more:
                raise self._head_error(at, 'no "Records" array')
            at = after

    def _head_step(self, at: int, step: Callable[[bytes, int], _T]) -> tuple[int, _T]:
        """`step(data, at)`, reading more while the data ends before what it looks for: `(at, result)`,
        `at` moved by any refill."""
        while True:
            try:
                return at, step(self.data, at)
            except Past:
                if self.eof:
                    raise self._head_error(at, "the document ends before its Records array") from None
                if len(self.data) - at > self.max_event_bytes:
                    raise self._head_error(at, f"a member is longer than {self.max_event_bytes} bytes") from None
                self._refill(at)
                at = 0
            except NotJson as exc:
                raise self._head_error(at, str(exc)) from None

    def _head_error(self, at: int, reason: str) -> InputError:
        return InputError(self.origin, f"decompressed byte {self.base + at}", f"not a CloudTrail file: {reason}")

    def _learn_separator(self, record: bytes) -> None:
        """Expect later records to start with the first record's first key, as CloudTrail writes them.

        `},{"eventVersion"` is then almost never a false end: a string cannot contain that quote.
        """
        key = _FIRST_KEY.match(record)
        if key is not None:
            self.separator = re.compile(_ANY_SEPARATOR_PATTERN + rb"[ \t\r\n]*" + re.escape(key.group(1)))
            self.literal = b"},{" + key.group(1)

    def _refill(self, keep: int) -> None:
        """Drop data before `keep` and append at least as many new bytes as are kept (or up to EOF)."""
        kept = self.data[keep:]
        parts = [kept]
        wanted = max(len(kept), 1)
        while wanted > 0:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.eof = True
                break
            parts.append(chunk)
            wanted -= len(chunk)
        self.base += keep
        self.data = b"".join(parts)
        self.literal_absent = False

    def _error(self, index: int, at: int, reason: str) -> InputError:
        return InputError(self.origin, f"record {index} (decompressed byte {self.base + at})", reason)
