"""The values that flow between stages: work items, raw events, intake entries and batches.

trigger event ──triggers──► Message(items: S3Object | AwsLogs | Skip)
S3Object ──read──► decompressed byte chunks ──split──► RawEvent
AwsLogs  ──read──► LogBatch                 ──split──► RawEvent
RawEvent ──enrich──► Entry ──batch──► Batch ──intake──► accepted or failed
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
import simdjson
from msgspec import UNSET, Raw, UnsetType

RESERVED = frozenset(
    {"ddsource", "ddsourcecategory", "service", "host", "ddtags", "timestamp", "aws", "message"}
    | {"original_fields", "forwarder"}
)
"""The top-level names the forwarder writes in an entry; an event's own fields by these names are moved."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a continuation starts reading an object again, so it need not re-read what it can avoid.

    The read restarts at compressed byte `offset` (a ranged GET): a gzip member or zstd frame
    boundary, 0 for single-member gzip and zlib, or for an uncompressed object the exact byte where
    the next event starts. `skip_bytes` decompressed bytes after it are discarded to reach that
    event, which begins `decompressed` bytes into the decompressed object. `position` counts the
    records (CLOUDTRAIL) or lines (LINES) before it, so positions and position-based ids carry on;
    `format` and `codec` are recorded because a stream entered mid-way cannot be sniffed. `etag` is
    the ETag of the object the first invocation read: the continuation reads with IfMatch, so a
    replaced object is reported rather than read from the middle.
    """

    offset: int
    skip_bytes: int
    decompressed: int
    position: int
    format: str
    codec: str
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class S3Object:
    """An object to forward. `key` is already URL-decoded (notifications send it quoted).

    `resume_at` is a continuation's event count: the number of leading events already handled by an
    earlier invocation. With a `checkpoint` the read starts where they end; without one (messages
    from before checkpoints existed) they are read again and skipped without being sent.
    """

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    sequencer: str | None = None
    resume_at: int = 0
    checkpoint: Checkpoint | None = None

    @property
    def origin(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def version_tag(self) -> str:
        """Which write of the key this is: the version id, else the ETag, else "" (neither was given)."""
        return self.version_id or self.etag or ""


@dataclass(frozen=True, slots=True)
class AwsLogs:
    """A CloudWatch Logs subscription payload, still base64(gzip(json)) as AWS sent it."""

    data: str


class LogEvent(msgspec.Struct, frozen=True, gc=False):
    """One `logEvents[]` entry of a CloudWatch Logs payload (a Struct: one is built per event, in C)."""

    id: str
    timestamp: int
    message: str


@dataclass(frozen=True, slots=True)
class LogBatch:
    """A decoded CloudWatch Logs DATA_MESSAGE."""

    owner: str
    log_group: str
    log_stream: str
    subscription_filters: tuple[str, ...]
    log_events: tuple[LogEvent, ...]

    @property
    def origin(self) -> str:
        return f"{self.log_group}/{self.log_stream}"


@dataclass(frozen=True, slots=True)
class Skip:
    """Something a trigger carried that is deliberately not forwarded, with a short snake_case reason."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Replay:
    """Re-send the events kept in the failure store (the `{"retry": true}` event)."""


WorkItem = S3Object | AwsLogs | Replay


@dataclass(frozen=True, slots=True)
class Message:
    """What succeeds or fails together: one SQS message, or the whole event for other triggers.

    `trigger` names the delivery path, e.g. "s3", "sns", "sqs", "sqs/sns", "eventbridge",
    "sqs/eventbridge", "cloudtrail-sns", "cloudwatch". `error` is set when the message could not be
    understood at all; it then has no items and fails on its own.
    """

    message_id: str | None
    trigger: str
    items: tuple[WorkItem | Skip, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Invocation:
    """A parsed Lambda event. `from_sqs` selects the partial batch response."""

    messages: tuple[Message, ...]
    from_sqs: bool = False


class RecordHead(msgspec.Struct, gc=False):
    """What enrichment needs of a CloudTrail record, decoded without building the rest of it.

    `read_head` checks that the whole record is one valid JSON object while materialising only these
    fields (msgspec skips the others at C speed), at less than half the cost of a full parse: the
    record's bytes go to the intake as they are, so the rest is never needed. The names in `RESERVED`
    are only looked at for whether they are present.
    """

    eventID: Any = None
    eventTime: Any = None
    stageTimestamp: Any = None
    requestReceivedTimestamp: Any = None
    ddsource: Raw | UnsetType = UNSET
    ddsourcecategory: Raw | UnsetType = UNSET
    service: Raw | UnsetType = UNSET
    host: Raw | UnsetType = UNSET
    ddtags: Raw | UnsetType = UNSET
    timestamp: Raw | UnsetType = UNSET
    aws: Raw | UnsetType = UNSET
    message: Raw | UnsetType = UNSET
    original_fields: Raw | UnsetType = UNSET
    forwarder: Raw | UnsetType = UNSET

    def clashes(self) -> bool:
        """Whether the record has a top-level field by a name the forwarder writes (`RESERVED`)."""
        return msgspec.structs.astuple(self)[_RESERVED_FROM:_RESERVED_TO] != _NONE_RESERVED


_RESERVED_FROM = 4
_RESERVED_TO = _RESERVED_FROM + len(RESERVED)
_NONE_RESERVED = (UNSET,) * len(RESERVED)
assert frozenset(RecordHead.__struct_fields__[_RESERVED_FROM:_RESERVED_TO]) == RESERVED, (
    "a reserved name without its field"
)


class RunHead(RecordHead, gc=False):
    """The head of a record in a `RecordRun`: decoding fails on a reserved name (no JSON value is
    UNSET), so a run's records never need a field moved (`clashes`)."""

    ddsource: UnsetType = UNSET
    ddsourcecategory: UnsetType = UNSET
    service: UnsetType = UNSET
    host: UnsetType = UNSET
    ddtags: UnsetType = UNSET
    timestamp: UnsetType = UNSET
    aws: UnsetType = UNSET
    message: UnsetType = UNSET
    original_fields: UnsetType = UNSET
    forwarder: UnsetType = UNSET


def _record_head(head: RunHead) -> RecordHead:
    return RecordHead(*msgspec.structs.astuple(head)[:_RESERVED_TO])


RUN_FIRST_KEY = b'{"eventVersion"'
"""How every record of a `RecordRun` begins: CloudTrail writes `eventVersion` first."""


class RecordRun(msgspec.Struct, gc=False):
    """Consecutive CloudTrail records cut and checked together, for the hot path.

    Record i is `RUN_FIRST_KEY + members[i] + b"}"`, at `position + i`; `heads[i]` is what
    `read_head` would give for it. The records are separated by one comma, and the last ends
    `end_offset` decompressed bytes into the object. Split and enrichment handle a run in a few calls
    for all its records instead of a few per record.
    """

    position: int
    members: list[bytes]
    heads: list[RunHead]
    end_offset: int

    def __len__(self) -> int:
        return len(self.members)

    def event(self, index: int) -> RawEvent:
        """Record `index` as a `RawEvent`, for the rare record enrichment handles on its own."""
        return RawEvent(self.position + index, None, self._record(index), _record_head(self.heads[index]))

    def events(self) -> Iterator[RawEvent]:
        """The run as the `RawEvent`s splitting record by record gives, end offsets included."""
        end = self.end_offset - sum(len(member) + len(RUN_FIRST_KEY) + 2 for member in self.members) + 1
        for index, head in enumerate(self.heads):
            record = self._record(index)
            end += len(record) + 1 if index else len(record)
            yield RawEvent(self.position + index, None, record, _record_head(head), None, None, end)

    def _record(self, index: int) -> bytes:
        return RUN_FIRST_KEY + self.members[index] + b"}"

    def last(self) -> RawEvent:
        """A marker for the run's last record: where a continuation would start after it."""
        return RawEvent(self.position + len(self.members) - 1, end_offset=self.end_offset)


class MessageRun(msgspec.Struct, gc=False):
    """Consecutive events of one CloudWatch Logs batch, for the hot path: their entries are joined in
    one loop (`Enricher.run_entries`) instead of a few calls and generator hops per event."""

    position: int
    log_events: tuple[LogEvent, ...]

    def __len__(self) -> int:
        return len(self.log_events)

    def event(self, index: int) -> RawEvent:
        """Event `index` as the `RawEvent` splitting event by event gives."""
        found = self.log_events[index]
        return RawEvent(self.position + index, found.message, timestamp_ms=found.timestamp, event_id=found.id)

    def events(self) -> Iterator[RawEvent]:
        return (self.event(index) for index in range(len(self.log_events)))

    def last(self) -> RawEvent:
        """A marker for the run's last event (CloudWatch events have no offset to resume from)."""
        return RawEvent(self.position + len(self.log_events) - 1)


EventRun = RecordRun | MessageRun
"""Events split and enriched together: the hot paths' unit."""


_decode_head = msgspec.json.Decoder(RecordHead).decode
_VALIDATOR_MAX_BYTES = 1 << 20
"""simdjson keeps buffers sized for the largest document it has parsed: larger records go to orjson."""
_validator = simdjson.Parser(max_capacity=_VALIDATOR_MAX_BYTES)
InvalidRecord = orjson.JSONDecodeError
"""What `read_head` raises for bytes that are not one valid JSON object in UTF-8."""


def read_head(record: bytes) -> RecordHead:
    """Check that `record` is one JSON object a full parse accepts, and decode its head; raises `InvalidRecord`.

    Validity is orjson's: UTF-8, RFC 8259, numbers within the double range, at most 1024 levels of
    nesting (the intake refuses a whole batch over one entry that breaks these). simdjson checks
    that, at a quarter of orjson's cost (a leading BOM, which it allows, msgspec refuses); what it
    refuses (integers past 64 bits, which orjson takes; records over 1 MiB) goes to orjson to
    decide. msgspec then decodes the head, skipping the rest unbuilt: alone it would let numbers
    past the double range through, and its nesting limit follows Python's recursion limit.
    """
    try:
        _validator.parse(record)
    except (ValueError, RuntimeError):
        orjson.loads(record)
    try:
        return _decode_head(record)
    except (RecursionError, msgspec.DecodeError):  # deeper than msgspec goes, a BOM, or not an object
        fields = orjson.loads(record)
        if not isinstance(fields, dict):
            raise InvalidRecord("a record must be a JSON object", record.decode(errors="replace"), 0) from None
        present = {name: Raw(b"null") for name in RESERVED if name in fields}
        return RecordHead(
            eventID=fields.get("eventID"),
            eventTime=fields.get("eventTime"),
            stageTimestamp=fields.get("stageTimestamp"),
            requestReceivedTimestamp=fields.get("requestReceivedTimestamp"),
            **present,
        )


class RawEvent(msgspec.Struct, gc=False):
    """One event as split from its container, before enrichment.

    Structured events (CloudTrail records) carry `record`, the object's JSON bytes exactly as read,
    and `head`, what enrichment needs of it (`read_head`). Text events (lines, CloudWatch messages)
    carry `message`. `position` is the 0-based record index, the 1-based line number, or the
    logEvents index. `end_offset` is the decompressed byte just past the event in its object (past a
    line's LF, a record's closing brace); -1 where there is none (CloudWatch Logs).

    A msgspec Struct rather than a dataclass, as `Entry` is: one is built per event, and a Struct is
    built in C (about 75 ns against 190 ns) and, holding no containers, kept out of the cyclic GC.
    """

    position: int
    message: str | None = None
    record: bytes | None = None
    head: RecordHead | None = None
    timestamp_ms: int | None = None
    event_id: str | None = None
    end_offset: int = -1

    @property
    def fields(self) -> dict[str, Any] | None:
        """The record parsed in full, for the rare entry that needs it (a field to move, `{}`,
        truncation); None for text events, or a record that did not pass `read_head`."""
        if self.record is None:
            return None
        try:
            parsed = orjson.loads(self.record)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None


@dataclass(frozen=True, slots=True)
class Source:
    """How a container's events are labelled: Datadog's reserved attributes and extra tags."""

    ddsource: str
    service: str
    host: str
    tags: tuple[str, ...] = ()


class Entry(msgspec.Struct, gc=False):
    """One serialized intake log object; `truncated` when it was cut to the per-entry limit."""

    body: bytes
    truncated: bool = False


@dataclass(slots=True)
class Batch:
    """Entries for one request; `size` is the uncompressed JSON array's length in bytes."""

    entries: list[Entry] = field(default_factory=list)
    size: int = 2

    def body(self) -> bytes:
        """The JSON array, in one copy of the entries: the brackets go onto the first and last entry."""
        bodies = [entry.body for entry in self.entries]
        if not bodies:
            return b"[]"
        bodies[0] = b"[" + bodies[0]
        bodies[-1] += b"]"
        return b",".join(bodies)


@dataclass(frozen=True, slots=True)
class Deadline:
    """Time left in the invocation, less a margin kept for flushing, storing failures and returning.

    `remaining_ms` is the Lambda context's `get_remaining_time_in_millis`.
    """

    remaining_ms: Callable[[], int]
    margin_seconds: float = 5.0

    def seconds_left(self) -> float:
        return self.remaining_ms() / 1000.0 - self.margin_seconds
