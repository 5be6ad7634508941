"""The values that flow between stages: work items, containers, raw events, entries.

trigger event ──triggers──► Message(items: S3Object | AwsLogs | EventBridgeEvent | Replay | Skip)
S3Object ──read──► decompressed chunks ──formats──► blocks of RawEvents
AwsLogs  ──read──► LogBatch             ──formats──► blocks of RawEvents
EventBridgeEvent (its own container)     ──formats.inline──► one RawEvent
block ──process──► kept block ──outputs──► Entry ──batch──► Batch ──transport──► accepted or failed

The values are frozen msgspec Structs rather than dataclasses: a frozen dataclass costs about 1 ms to
create at import (its methods are generated with `exec`), a Struct about 30 µs, and this module is on
every cold start.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgspec
import orjson

from forwarder.times import TIME_FIELDS, TimeFormat

MAX_EVENT_BYTES = 16 << 20
"""The largest event a reader accepts: a longer one is an input error naming it. Reading one holds
it, its text and a piece of its entry at once, so this bounds an event's memory (about 3x)."""


class SkipReason(enum.StrEnum):
    """Why something a trigger carried, or a piece of work, is deliberately not forwarded (counted apart)."""

    S3_TEST_EVENT = "s3_test_event"
    NOT_OBJECT_CREATED = "not_object_created"
    CONTROL_MESSAGE = "control_message"
    CLOUDTRAIL_DIGEST = "cloudtrail_digest"
    DUPLICATE_NOTIFICATION = "duplicate_notification"
    CONTINUED_LATER = "continued_later"
    REPLAY_LEFT_FOR_NEXT_RUN = "replay_left_for_next_run"


class Skip(msgspec.Struct, frozen=True):
    """Something not forwarded on purpose, with its reason and what it was."""

    reason: SkipReason
    detail: str = ""


class Checkpoint(msgspec.Struct, frozen=True):
    """Where a continuation starts reading an object again, so it need not re-read what it can avoid.

    The read restarts at compressed byte `offset` (a ranged GET): a gzip member or zstd frame
    boundary, 0 for single-member gzip and zlib, or for an uncompressed object the exact byte where
    the next event starts. `skip_bytes` decompressed bytes after it are discarded to reach that
    event, which begins `decompressed` bytes into the decompressed object. `position` counts the
    records (CLOUDTRAIL) or lines (LINES) before it, so positions and position-based ids carry on;
    `format` and `codec` are recorded because a stream entered mid-way cannot be sniffed. `etag` is
    the ETag of the object the first invocation read: the continuation reads with IfMatch, so a
    replaced object is reported rather than read from the middle. A Parquet object (`format` and
    `codec` "parquet") is read by row group instead: `offset` is the row group's index, `skip_bytes`
    its rows already handled, and `decompressed` and `position` the rows before the next event.
    """

    offset: int
    skip_bytes: int
    decompressed: int
    position: int
    format: str
    codec: str
    etag: str | None = None


class S3Object(msgspec.Struct, frozen=True):
    """An object to forward. `key` is already URL-decoded (notifications send it quoted).

    A continuation (`continued`) carries `resume_at`, the number of leading events an earlier
    invocation handled, and the `checkpoint` where the next one starts (None when the earlier
    invocation stopped before reading anything).
    """

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    sequencer: str | None = None
    resume_at: int = 0
    checkpoint: Checkpoint | None = None
    continued: bool = False

    @property
    def origin(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def version_tag(self) -> str:
        """Which write of the key this is: the version id, else the ETag, else "" (neither was given)."""
        return self.version_id or self.etag or ""

    @property
    def id_base(self) -> str:
        """What, with an event's position, identifies the event when it has no id of its own."""
        return f"{self.origin}#{self.version_tag}"

    def metadata(self) -> dict[str, Any]:
        """AWS metadata naming where the events came from."""
        return {"s3": {"bucket": self.bucket, "key": self.key}}


class AwsLogs(msgspec.Struct, frozen=True):
    """A CloudWatch Logs subscription payload, still base64(gzip(json)) as AWS sent it."""

    data: str
    origin = "CloudWatch Logs payload"
    resume_at = 0  # a payload is never continued: it has no events handled by an earlier invocation


class Replay(msgspec.Struct, frozen=True):
    """Re-send the events kept in the failure store (the `{"retry": true}` event)."""

    origin = "replay"
    resume_at = 0


class EventBridgeEvent(msgspec.Struct, frozen=True):
    """One EventBridge event that is not an S3 notification (a GuardDuty finding, a CloudTrail record,
    any other event): its own container, read as one event. `event_id` is the event's `id`, or a hash
    of its content when it has none, so that its entry's id stays the same when AWS retries it."""

    event: dict[str, Any]
    event_id: str
    resume_at = 0  # one event: never continued

    @property
    def origin(self) -> str:
        return f"EventBridge event {self.event_id[:80]}"

    @property
    def id_base(self) -> str:
        return f"eventbridge:{self.event_id}"

    def metadata(self) -> dict[str, Any]:
        """What names the event in the entry: its id, source and detail-type as EventBridge sent them."""
        return {
            "eventbridge": {
                "id": self.event_id,
                "source": self.event.get("source"),
                "detail-type": self.event.get("detail-type"),
            }
        }


WorkItem = S3Object | AwsLogs | Replay | EventBridgeEvent


class Message(msgspec.Struct, frozen=True):
    """What succeeds or fails together: one SQS message, or the whole event for other triggers.

    `trigger` names the delivery path, e.g. "s3", "sns", "sqs", "sqs/sns", "eventbridge",
    "sqs/eventbridge", "cloudtrail-sns", "cloudwatch". `error` is set when the message could not be
    understood at all; it then has no items and fails on its own.
    """

    message_id: str | None
    trigger: str
    items: tuple[WorkItem | Skip, ...] = ()
    error: str | None = None


class BatchOperations(msgspec.Struct, frozen=True):
    """What an S3 Batch Operations invocation's answer must echo: its schema version and invocation id."""

    schema_version: str
    invocation_id: str


class Invocation(msgspec.Struct, frozen=True):
    """A parsed Lambda event. `from_sqs` selects the partial batch response, `from_batch_operations`
    the per-task answer (each task is a Message identified by its `taskId`)."""

    messages: tuple[Message, ...]
    from_sqs: bool = False
    from_batch_operations: BatchOperations | None = None


class LogEvent(msgspec.Struct, frozen=True, gc=False):
    """One `logEvents[]` entry of a CloudWatch Logs payload (a Struct: one is built per event, in C)."""

    id: str
    timestamp: int
    message: str


class LogBatch(msgspec.Struct, frozen=True):
    """A decoded CloudWatch Logs DATA_MESSAGE: the container of its log events."""

    owner: str
    log_group: str
    log_stream: str
    subscription_filters: tuple[str, ...]
    log_events: tuple[LogEvent, ...]

    @property
    def origin(self) -> str:
        return f"{self.log_group}/{self.log_stream}"

    @property
    def id_base(self) -> str:
        return self.origin

    def metadata(self) -> dict[str, Any]:
        return {"awslogs": {"logGroup": self.log_group, "logStream": self.log_stream, "owner": self.owner}}


Container = S3Object | LogBatch | EventBridgeEvent
"""What a work item's events are read from: it names them (`origin`, `metadata`) and ids them (`id_base`)."""


class RecordHead(Protocol):
    """What a reader decoded of a structured record without building the rest (formats.jsonhead)."""

    eventID: Any
    eventTime: Any
    stageTimestamp: Any
    requestReceivedTimestamp: Any

    def flagged(self) -> bool: ...


class RawEvent(msgspec.Struct, gc=False):
    """One event as read from its container, before processing and encoding.

    Structured events (CloudTrail records) carry `record`, the object's JSON bytes exactly as read,
    and `head`, what encoding needs of it. Text events (lines, CloudWatch messages) carry `message`.
    `position` is the 0-based record index, the 1-based line number, or the logEvents index.
    `end_offset` is the decompressed byte just past the event in its object (past a line's LF, a
    record's closing brace); -1 where there is none (CloudWatch Logs). Build one with the named
    constructors.

    A RawEvent is also the smallest block (see `formats.Block`): one event, its own last.
    A msgspec Struct rather than a dataclass: one is built per event, and a Struct is built in C
    (about 75 ns against 190 ns) and, holding no containers, kept out of the cyclic GC.
    """

    position: int
    message: str | None = None
    record: bytes | None = None
    head: Any = None
    timestamp_ms: int | None = None
    event_id: str | None = None
    end_offset: int = -1

    @classmethod
    def line(cls, number: int, text: str, end_offset: int) -> RawEvent:
        return cls(number, text, None, None, None, None, end_offset)

    @classmethod
    def structured(cls, position: int, record: bytes, head: RecordHead, end_offset: int = -1) -> RawEvent:
        return cls(position, None, record, head, None, None, end_offset)

    @classmethod
    def log_event(cls, position: int, event: LogEvent) -> RawEvent:
        return cls(position, event.message, None, None, event.timestamp, event.id)

    @classmethod
    def marker(cls, position: int, end_offset: int = -1) -> RawEvent:
        """Where a block ends, for a checkpoint: no content."""
        return cls(position, None, None, None, None, None, end_offset)

    def parse_record(self) -> dict[str, Any] | None:
        """The record parsed in full, for the rare entry that needs it (a field to move, `{}`,
        truncation); None for text events, or a record that is not one JSON object."""
        if self.record is None:
            return None
        try:
            parsed = orjson.loads(self.record)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def __len__(self) -> int:
        return 1

    def events(self) -> Iterator[RawEvent]:
        yield self

    def last(self) -> RawEvent:
        return self


class Gap(msgspec.Struct, gc=False):
    """Input passed without an event (blank lines): a block of none, whose `last` says how far
    reading got, so the clock is looked at and a checkpoint can move past it."""

    end: RawEvent

    def __len__(self) -> int:
        return 0

    def events(self) -> Iterator[RawEvent]:
        return iter(())

    def last(self) -> RawEvent:
        return self.end


class Source(msgspec.Struct, frozen=True):
    """What a container's events are: the labels detection rules key on, and where their time is.

    `name` is the source (`cloudtrail`, `kubernetes.audit`, ...), `host` the bucket or log group,
    `tags` extra tags, `time_fields` the top-level fields holding the event's own time, first first.
    `line_format` is the layout of a text source's lines, which tells where their own time is
    (`times.line_time`) and which lines are a header (`formats.delimited`); None for JSON and other text.
    """

    name: str
    service: str
    host: str
    tags: tuple[str, ...] = ()
    time_fields: tuple[str, ...] = TIME_FIELDS
    line_format: TimeFormat | None = None


class Entry(msgspec.Struct, gc=False):
    """One encoded intake entry; `truncated` when it was cut to the per-entry limit."""

    body: bytes
    truncated: bool = False


class Deadline(msgspec.Struct, frozen=True):
    """Time left in the invocation, less a margin kept for flushing, storing failures and returning.

    `remaining_ms` is the Lambda context's `get_remaining_time_in_millis`.
    """

    remaining_ms: Callable[[], int]
    margin_seconds: float = 5.0

    def seconds_left(self) -> float:
        return self.remaining_ms() / 1000.0 - self.margin_seconds


class Invoker(msgspec.Struct, frozen=True):
    """What the forwarder knows of itself: its ARN, account and region, for tags and metadata."""

    function_arn: str = ""
    account: str = ""
    region: str = ""

    @classmethod
    def from_arn(cls, arn: str, fallback_region: str = "") -> Invoker:
        parts = arn.split(":")
        if len(parts) >= 5 and parts[0] == "arn":
            return cls(function_arn=arn, account=parts[4], region=parts[3] or fallback_region)
        return cls(function_arn=arn, region=fallback_region)
