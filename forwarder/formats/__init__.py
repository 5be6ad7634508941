"""Readers: one per content format, each turning decompressed bytes into bounded blocks of events.

A block is a `RawEvent` (one event) or a run a reader cut and checked together (`RecordRun`,
`MessageRun`). Every block has a length, a one-by-one view of its events (the simple reference the
tests compare fast paths against) and a last event, where a checkpoint after it points. The pipeline
never looks inside a block's type; an encoder may, for its fast paths.

An S3 object's format is sniffed from its first bytes (`sniff`); a continuation names its own, as a
stream entered mid-way cannot be sniffed.
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Protocol

from forwarder.formats.jsonhead import HeadReader
from forwarder.formats.lines import BOM, read_lines
from forwarder.formats.records import RecordCutter
from forwarder.model import MAX_EVENT_BYTES, Checkpoint, RawEvent

SNIFF_BYTES = 512
"""How many non-whitespace leading bytes `sniff` gathers before deciding the format."""
SNIFF_LIMIT = 64 * 1024
"""Gathering stops here even if it is all whitespace, so a blank object cannot fill memory."""

_WS = b" \t\r\n"
_CLOUDTRAIL = re.compile(rb'\{[ \t\r\n]*"Records"[ \t\r\n]*(?::|\Z)')
_DIGEST_KEYS = (b'"awsAccountId"', b'"digestStartTime"')


class Block(Protocol):
    """Events read together: counted, checked for the deadline and encoded as one."""

    def __len__(self) -> int: ...

    def events(self) -> Iterator[RawEvent]: ...

    def last(self) -> RawEvent: ...


class Format(enum.Enum):
    """How an object's content is split into events."""

    CLOUDTRAIL = "cloudtrail"
    DIGEST = "digest"
    LINES = "lines"


def sniff(head: bytes) -> Format:
    """Recognise a CloudTrail log file (first key "Records") or digest file from its first bytes."""
    text = head.removeprefix(BOM).lstrip(_WS)
    if _CLOUDTRAIL.match(text):
        return Format.CLOUDTRAIL
    if text.startswith(b"{") and all(key in text for key in _DIGEST_KEYS):
        return Format.DIGEST
    return Format.LINES


def sniffed(chunks: Iterable[bytes]) -> tuple[Format, Iterator[bytes]]:
    """The format of a stream from its leading bytes, and the whole stream again."""
    stream = iter(chunks)
    head = _gather_head(stream)
    return sniff(head), itertools.chain((head,), stream)


def read_object(
    chunks: Iterable[bytes],
    origin: str,
    form: Format,
    watched: frozenset[str],
    max_event_bytes: int = MAX_EVENT_BYTES,
    start: Checkpoint | None = None,
) -> Iterator[Block]:
    """The blocks of an object's events in format `form`; with `start`, `chunks` begins at that
    checkpoint's resume point. `watched` names the top-level record fields the encoder must know of."""
    offset, before = (start.decompressed, start.position) if start is not None else (0, 0)
    if form is Format.CLOUDTRAIL:
        return RecordCutter(chunks, origin, HeadReader(watched), max_event_bytes, offset, before).blocks()
    if form is Format.LINES:
        return read_lines(chunks, origin, max_event_bytes, offset, before)
    raise ValueError(f"a {form.value} object has no events to read")


def each_event(blocks: Iterable[Block]) -> Iterator[RawEvent]:
    """One `RawEvent` per event, the events of each run included."""
    for block in blocks:
        yield from block.events()


def _gather_head(stream: Iterator[bytes]) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < SNIFF_LIMIT:
        chunk = next(stream, None)
        if chunk is None:
            break
        parts.append(chunk)
        size += len(chunk)
        if size >= SNIFF_BYTES and len(b"".join(parts).removeprefix(BOM).lstrip(_WS)) >= SNIFF_BYTES:
            break
    return b"".join(parts)
