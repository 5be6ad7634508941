"""Raw event + its source → one serialized intake entry (Datadog Logs API v2 object).

Every entry carries the reserved attributes detection rules key on (`ddsource`, `service`, `host`,
`ddtags`, `ddsourcecategory`), AWS metadata under `aws`, and a `timestamp` (epoch milliseconds) taken
from the event itself where it has one.

Structured events (CloudTrail records) keep their fields at the top level, beside the metadata,
which is what Datadog's CloudTrail pipeline expects. The record's bytes are not re-serialised: the
metadata is spliced in front of them. Text events (lines, CloudWatch messages) go as `message`,
unchanged.

Every entry carries a deterministic id, `forwarder.id`, so the SIEM can drop duplicates when an
object is forwarded twice: CloudTrail's `eventID` where present, CloudWatch's event `id`, otherwise a
hash of bucket, key, version or ETag, and the event's position.

Clash rule: the top-level names the forwarder writes (`RESERVED`) are the forwarder's. An event field
with one of those names is moved, unchanged, into `original_fields.<name>`; nothing is lost, and the
labels stay right.

An entry over the intake's per-entry limit is replaced by a truncated one: the metadata, the record's
small top-level fields (so rules on `eventName`, `userIdentity`... still match), the start of the
original text as `message`, and `forwarder.truncated: true` with `forwarder.original_bytes`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from forwarder.model import Entry, LogBatch, RawEvent, S3Object, Source
from forwarder.settings import Settings

RESERVED = frozenset(
    {"ddsource", "ddsourcecategory", "service", "host", "ddtags", "timestamp", "aws", "message"}
    | {"original_fields", "forwarder"}
)
TIME_FIELDS = ("eventTime", "stageTimestamp", "requestReceivedTimestamp", "timestamp")
SMALL_FIELD_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Invoker:
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


def id_base(container: S3Object | LogBatch) -> str:
    """What, with an event's position, identifies the event when it has no id of its own."""
    if isinstance(container, S3Object):
        return f"s3://{container.bucket}/{container.key}#{container.version_id or container.etag or ''}"
    return f"{container.log_group}/{container.log_stream}"


def container_metadata(container: S3Object | LogBatch) -> dict[str, Any]:
    """AWS metadata naming where the events came from."""
    if isinstance(container, S3Object):
        return {"s3": {"bucket": container.bucket, "key": container.key}}
    return {"awslogs": {"logGroup": container.log_group, "logStream": container.log_stream, "owner": container.owner}}


class Enricher:
    """Turns one container's raw events into entries; the metadata is serialised once per container."""

    def __init__(
        self, source: Source, container: S3Object | LogBatch, invoker: Invoker, settings: Settings, owner: int = 0
    ) -> None:
        tags = [
            *settings.tags,
            f"forwardername:{settings.function_name.lower()}",
            f"forwarder_version:{settings.version}",
        ]
        if invoker.account:
            tags.append(f"aws_account:{invoker.account}")
        if invoker.region:
            tags.append(f"region:{invoker.region}")
        tags.extend(source.tags)
        self._meta: dict[str, Any] = {
            "ddsource": source.ddsource,
            "ddsourcecategory": "aws",
            "service": source.service,
            "host": source.host,
            "ddtags": ",".join(tags),
            "aws": {**container_metadata(container), "invoked_function_arn": invoker.function_arn},
        }
        self._id_base = id_base(container)
        self._prefix = orjson.dumps(self._meta)[:-1]
        self._entry_max = settings.entry_max_bytes
        self._owner = owner
        self._parse_messages = source.ddsource == "kubernetes.audit"

    def entry(self, raw: RawEvent) -> Entry:
        event_id = self._event_id(raw)
        if raw.record is not None:
            body = self._structured(raw.record, raw.fields or {}, raw.timestamp_ms, event_id)
        else:
            body = self._text(raw.message or "", raw.timestamp_ms, event_id)
        if len(body) > self._entry_max:
            return Entry(self._truncated(raw, len(body), event_id), self._owner, truncated=True)
        return Entry(body, self._owner)

    def _event_id(self, raw: RawEvent) -> str:
        own = (raw.fields or {}).get("eventID") or raw.event_id
        if isinstance(own, str) and own:
            return own
        return hashlib.blake2b(f"{self._id_base}@{raw.position}".encode(), digest_size=16).hexdigest()

    def _head(self, timestamp: int | None, event_id: str) -> bytes:
        """The metadata object, still open: `{"ddsource":...,"forwarder":{"id":...}`."""
        if timestamp is None:
            return b'%b,"forwarder":{"id":%b}' % (self._prefix, orjson.dumps(event_id))
        return b'%b,"timestamp":%d,"forwarder":{"id":%b}' % (self._prefix, timestamp, orjson.dumps(event_id))

    def _structured(self, record: bytes, fields: dict[str, Any], container_ms: int | None, event_id: str) -> bytes:
        timestamp = _event_time(fields) or container_ms
        if not fields.keys().isdisjoint(RESERVED):
            return orjson.dumps(self._with_moved_fields(fields, timestamp, event_id))
        if not fields:
            return self._head(timestamp, event_id) + b"}"
        return b",".join((self._head(timestamp, event_id), memoryview(record.lstrip())[1:]))

    def _with_moved_fields(self, fields: dict[str, Any], timestamp: int | None, event_id: str) -> dict[str, Any]:
        merged = dict(self._meta)
        if timestamp is not None:
            merged["timestamp"] = timestamp
        merged["forwarder"] = {"id": event_id}
        merged.update((key, value) for key, value in fields.items() if key not in RESERVED)
        merged["original_fields"] = {key: value for key, value in fields.items() if key in RESERVED}
        return merged

    def _text(self, message: str, container_ms: int | None, event_id: str) -> bytes:
        timestamp = self._message_time(message) or container_ms
        return self._head(timestamp, event_id) + b',"message":' + orjson.dumps(message) + b"}"

    def _message_time(self, message: str) -> int | None:
        """JSON lines (EKS audit, NDJSON in S3) carry their own time; parse only what looks like JSON."""
        if not (self._parse_messages or message.startswith("{")):
            return None
        try:
            fields = orjson.loads(message)
        except orjson.JSONDecodeError:
            return None
        return _event_time(fields) if isinstance(fields, dict) else None

    def _truncated(self, raw: RawEvent, original_bytes: int, event_id: str) -> bytes:
        head = dict(self._meta)
        timestamp = _event_time(raw.fields or {}) or raw.timestamp_ms
        if timestamp is not None:
            head["timestamp"] = timestamp
        for key, value in (raw.fields or {}).items():
            if key not in RESERVED and len(orjson.dumps(value)) <= SMALL_FIELD_BYTES:
                head[key] = value
        marker = {"id": event_id, "truncated": True, "original_bytes": original_bytes}
        text = raw.message if raw.message is not None else (raw.record or b"").decode("utf-8", "replace")
        return _fit_message({**head, "forwarder": marker}, text, self._entry_max) or _fit_message(
            {**self._meta, "forwarder": marker}, text, self._entry_max
        )


def _fit_message(head: dict[str, Any], text: str, limit: int) -> bytes:
    """The longest prefix of `text` whose entry fits `limit` (b"" if `head` alone does not fit).

    JSON escaping and UTF-8 can make the text grow when serialised, so cut, measure and cut again.
    """
    cut = text[: max(0, limit - len(orjson.dumps(head)) - 32)]
    while True:
        body = orjson.dumps({**head, "message": cut})
        if len(body) <= limit:
            return body
        if not cut:
            return b""
        cut = cut[: max(0, int(len(cut) * limit / len(body)) - 64)]


def _event_time(fields: dict[str, Any]) -> int | None:
    for name in TIME_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            parsed = _iso_ms(value)
            if parsed is not None:
                return parsed
    return None


@functools.lru_cache(maxsize=4096)
def _iso_ms(text: str) -> int | None:
    """Cached: CloudTrail's eventTime has second precision, so the records of one file share a few values."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
