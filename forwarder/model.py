"""The values that flow between stages: work items, raw events, intake entries and batches.

trigger event ──triggers──► Message(items: S3Object | AwsLogs | Skip)
S3Object ──read──► decompressed byte chunks ──split──► RawEvent
AwsLogs  ──read──► LogBatch                 ──split──► RawEvent
RawEvent ──enrich──► Entry ──batch──► Batch ──intake──► accepted or failed
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One `logEvents[]` entry of a CloudWatch Logs payload."""

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


@dataclass(slots=True)
class RawEvent:
    """One event as split from its container, before enrichment.

    Structured events (CloudTrail records) carry `record`, the object's JSON bytes exactly as read,
    and `fields`, its parsed form. Text events (lines, CloudWatch messages) carry `message`.
    `position` is the 0-based record index, the 1-based line number, or the logEvents index.
    `end_offset` is the decompressed byte just past the event in its object (past a line's LF,
    a record's closing brace); -1 where there is none (CloudWatch Logs).
    """

    position: int
    message: str | None = None
    record: bytes | None = None
    fields: dict[str, Any] | None = None
    timestamp_ms: int | None = None
    event_id: str | None = None
    end_offset: int = -1


@dataclass(frozen=True, slots=True)
class Source:
    """How a container's events are labelled: Datadog's reserved attributes and extra tags."""

    ddsource: str
    service: str
    host: str
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class Entry:
    """One serialized intake log object; `truncated` when it was cut to the per-entry limit."""

    body: bytes
    truncated: bool = False


@dataclass(slots=True)
class Batch:
    """Entries for one request; `size` is the uncompressed JSON array's length in bytes."""

    entries: list[Entry] = field(default_factory=list)
    size: int = 2

    def body(self) -> bytes:
        return b"[" + b",".join(entry.body for entry in self.entries) + b"]"


@dataclass(frozen=True, slots=True)
class Deadline:
    """Time left in the invocation, less a margin kept for flushing, storing failures and returning.

    `remaining_ms` is the Lambda context's `get_remaining_time_in_millis`.
    """

    remaining_ms: Callable[[], int]
    margin_seconds: float = 5.0

    def seconds_left(self) -> float:
        return self.remaining_ms() / 1000.0 - self.margin_seconds
