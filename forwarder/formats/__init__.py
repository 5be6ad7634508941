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

import orjson

from forwarder.errors import InputError
from forwarder.formats.jsonhead import HeadReader
from forwarder.formats.lines import BOM, read_lines
from forwarder.formats.outline import PAST, outline
from forwarder.formats.records import RecordCutter
from forwarder.model import MAX_EVENT_BYTES, Checkpoint, RawEvent

SNIFF_BYTES = 512
"""How many non-whitespace leading bytes `sniff` gathers before deciding the format."""
SNIFF_LIMIT = 64 * 1024
"""Gathering stops here even if it is all whitespace, so a blank object cannot fill memory; a digest
longer than this is not recognised by content (its key still says what it is) and is read as lines."""

_WS = b" \t\r\n"
_NON_WS = re.compile(rb"[^ \t\r\n]")
_DIGEST_FIELDS = ("awsAccountId", "digestStartTime", "digestEndTime", "logFiles")
"""Top-level fields every digest has (CloudTrail's digest file structure)."""
_DIGEST_KEYS = tuple(f'"{name}"'.encode() for name in _DIGEST_FIELDS)
_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIX = ".parquet"


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
    K8S_AUDIT = "k8s_audit"
    """Lines (NDJSON) whose first is a Kubernetes audit event: an API server's `--audit-log-path` file."""
    PARQUET = "parquet"
    """Read by random access from the object itself (`formats.parquet`), never from a stream."""


def sniff(head: bytes, whole: bool = False) -> Format:
    """Recognise a Parquet object (its `PAR1` magic), a CloudTrail log file or digest file from its first bytes.

    A CloudTrail file is one JSON object with a top-level "Records" member, wherever it stands among
    the others. NDJSON (a first line that is a whole JSON value, with more after it) is lines, even
    when its first object has a "Records" member, and so is a head whose first object runs past it
    before any "Records" name: reading a document as lines never loses it silently (it goes as one
    event, truncated and counted so, or fails as too long). Lines whose first is a Kubernetes audit
    event (`kind` Event, an `audit.k8s.io/...` apiVersion) are `K8S_AUDIT`, read as lines.

    By content, a digest is what CloudTrail writes: one JSON object with "awsAccountId",
    "digestStartTime", "digestEndTime" and "logFiles" at its top level. That takes the whole stream
    (`whole`: `head` is all of it): those names in a line of NDJSON, which anyone who can write a log
    line controls (a Kubernetes ConfigMap in an audit log), must never hide the file.
    """
    if head.startswith(_PARQUET_MAGIC):
        return Format.PARQUET
    text = head.removeprefix(BOM).lstrip(_WS)
    decided = _decide(text, whole)
    if decided is None or decided is Format.LINES:
        return Format.K8S_AUDIT if _audit_event(text) else Format.LINES
    return decided


def by_key(key: str) -> Format | None:
    """A format the key alone proves: a `.parquet` object (Security Lake's `.gz.parquet` too) is
    read by random access without a first GET to sniff it; None when the content must say."""
    return Format.PARQUET if key.endswith(_PARQUET_SUFFIX) else None


def sniffed(chunks: Iterable[bytes]) -> tuple[Format, Iterator[bytes]]:
    """The format of a stream from its leading bytes, and the whole stream again.

    While the head does not decide (a first object not ended nor showing "Records"; a possible digest,
    which only the whole stream can prove) more is gathered, up to `SNIFF_LIMIT`.
    """
    stream = iter(chunks)
    head, whole = _gather_head(stream)
    return sniff(head, whole), itertools.chain((head,), stream)


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
    if form is Format.LINES or form is Format.K8S_AUDIT:
        return read_lines(chunks, origin, max_event_bytes, offset, before)
    if form is Format.PARQUET:
        raise InputError(
            origin, "byte 0", "a Parquet object is read from a seekable file (formats.parquet), not a stream"
        )
    raise ValueError(f"a {form.value} object has no events to read")


def each_event(blocks: Iterable[Block]) -> Iterator[RawEvent]:
    """One `RawEvent` per event, the events of each run included."""
    for block in blocks:
        yield from block.events()


def _decide(text: bytes, whole: bool) -> Format | None:
    """The format of a stream starting with `text`; None while more of it could change that."""
    if _ndjson(text):
        return Format.LINES
    shape = outline(text)
    if shape is None:
        return Format.LINES
    if shape.records:
        return Format.CLOUDTRAIL
    if shape.end == PAST:
        return None
    if _NON_WS.search(text, shape.end) or not _may_be_digest(text):
        return Format.LINES
    if whole:
        return Format.DIGEST if _is_digest(text) else Format.LINES
    return None


def _ndjson(text: bytes) -> bool:
    """Whether the first line is one JSON value and more follows it (C-speed checks only)."""
    end = text.find(b"\n")
    if end < 0 or not _NON_WS.search(text, end):
        return False
    try:
        orjson.loads(memoryview(text)[:end])
    except orjson.JSONDecodeError:
        return False
    return True


def _audit_event(text: bytes) -> bool:
    """Whether the first line is one JSON object of `kind` Event and an `audit.k8s.io` apiVersion."""
    end = text.find(b"\n")
    try:
        first = orjson.loads(memoryview(text)[: end if end >= 0 else len(text)])
    except orjson.JSONDecodeError:
        return False
    if not isinstance(first, dict):
        return False
    version = first.get("apiVersion")
    return first.get("kind") == "Event" and isinstance(version, str) and version.startswith("audit.k8s.io/")


def _may_be_digest(text: bytes) -> bool:
    return text.startswith(b"{") and all(key in text for key in _DIGEST_KEYS)


def _is_digest(text: bytes) -> bool:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and all(key in document for key in _DIGEST_FIELDS)


def _gather_head(stream: Iterator[bytes]) -> tuple[bytes, bool]:
    """At least `SNIFF_BYTES` leading non-whitespace bytes, more while they do not decide,
    never past `SNIFF_LIMIT` but for the chunk that crosses it; and whether the stream ended.

    The head is looked at each time its size doubles, so tiny chunks cost linear time.
    """
    parts: list[bytes] = []
    size = 0
    looked_at = 0
    while size < SNIFF_LIMIT:
        chunk = next(stream, None)
        if chunk is None:
            return b"".join(parts), True
        parts.append(chunk)
        size += len(chunk)
        if size >= max(SNIFF_BYTES, 2 * looked_at):
            looked_at = size
            joined = b"".join(parts)
            text = joined.removeprefix(BOM).lstrip(_WS)
            if joined.startswith(_PARQUET_MAGIC) or (
                len(text) >= SNIFF_BYTES and _decide(text, whole=False) is not None
            ):
                break
    return b"".join(parts), False
