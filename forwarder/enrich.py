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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from forwarder.model import (
    RESERVED,
    RUN_FIRST_KEY,
    Entry,
    EventRun,
    LogBatch,
    MessageRun,
    RawEvent,
    RecordHead,
    S3Object,
    Source,
)
from forwarder.settings import Settings

__all__ = ["RESERVED", "Enricher", "Invoker"]
# Kubernetes audit events have no eventTime; their own time is when the stage was reached.
AUDIT_TIME_FIELDS = ("stageTimestamp", "requestReceivedTimestamp", "timestamp")
TIME_FIELDS = ("eventTime", *AUDIT_TIME_FIELDS)
SMALL_FIELD_BYTES = 1024
CLOSES_KEPT = 4096
_STAGE_KEY = '"stageTimestamp"'
_SPACE_OR_CLOSE = frozenset(b"} \t\r\n")
_RUN_JOIN = b"}," + RUN_FIRST_KEY[1:]
"""Between an entry's id and a run member: the close of `"forwarder":{...}` and the record's first key."""
_MESSAGE_JOIN = b'},"message":'
"""Between a text entry's id and its message, in `_text` and `_message_entries` alike."""


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
        return f"{container.origin}#{container.version_tag}"
    return container.origin


def container_metadata(container: S3Object | LogBatch) -> dict[str, Any]:
    """AWS metadata naming where the events came from."""
    if isinstance(container, S3Object):
        return {"s3": {"bucket": container.bucket, "key": container.key}}
    return {"awslogs": {"logGroup": container.log_group, "logStream": container.log_stream, "owner": container.owner}}


class Enricher:
    """Turns one container's raw events into entries; the metadata is serialised once per container."""

    def __init__(self, source: Source, container: S3Object | LogBatch, invoker: Invoker, settings: Settings) -> None:
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
        self._lead = orjson.dumps(self._meta)[:-1] + b',"forwarder":{"id":'
        self._event_time_closes: dict[str, bytes] = {}
        self._entry_max = settings.entry_max_bytes
        self._audit = source.ddsource == "kubernetes.audit"

    def entry(self, raw: RawEvent) -> Entry:
        event_id = self._event_id(raw)
        if raw.record is not None and raw.head is not None:
            body = self._structured(raw, raw.record, raw.head, event_id)
        else:
            body = self._text(raw.message or "", raw.timestamp_ms, event_id)
        if len(body) > self._entry_max:
            return Entry(self._truncated(raw, len(body), event_id), truncated=True)
        return Entry(body)

    def _event_id(self, raw: RawEvent) -> str:
        own = raw.event_id if raw.head is None else raw.head.eventID
        if isinstance(own, str) and own:
            return own
        return hashlib.blake2b(f"{self._id_base}@{raw.position}".encode(), digest_size=16).hexdigest()

    def run_entries(self, run: EventRun) -> list[Entry]:
        """The entries of a run's events, joined as `entry` joins them, in one loop.

        An event that needs more than the join goes through `entry` on its own: a record with no
        usable `eventID`, an `eventTime` not seen yet or not usable; a message with no id, or whose
        time needs its full parse; any entry to truncate. A record with a reserved name to move is
        never in a run.
        """
        if isinstance(run, MessageRun):
            return self._message_entries(run)
        lead, closes, dumps, join, limit = self._lead, self._event_time_closes, orjson.dumps, b"".join, self._entry_max
        entries: list[Entry] = []
        add = entries.append
        for index, (member, head) in enumerate(zip(run.members, run.heads, strict=True)):
            own, when = head.eventID, head.eventTime
            close = closes.get(when) if type(when) is str else None
            if close is not None and type(own) is str and own:  # no reserved name: `RunHead` refuses them
                body = join((lead, dumps(own), _RUN_JOIN, member, close))
                if len(body) <= limit:
                    add(Entry(body))
                    continue
            add(self.entry(run.event(index)))
        return entries

    def _message_entries(self, run: MessageRun) -> list[Entry]:
        """`run_entries` for CloudWatch Logs events, joined as `_text` joins them.

        An EKS audit event's time is its `stageTimestamp` (`_stage_time`); a message that does not
        start with `{` has no time of its own outside audit logs, and takes CloudWatch's.
        """
        lead, dumps, join, limit, audit = self._lead, orjson.dumps, b"".join, self._entry_max, self._audit
        entries: list[Entry] = []
        add = entries.append
        for index, event in enumerate(run.log_events):
            own, message = event.id, event.message
            if audit:
                timestamp = _stage_time(message)
            elif message.startswith("{"):
                timestamp = None
            else:
                timestamp = event.timestamp
            if timestamp and own:  # as in `_message_time(...) or ...`: an epoch-zero time counts as none
                body = join((lead, dumps(own), _MESSAGE_JOIN, dumps(message), _close(timestamp)))
                if len(body) <= limit:
                    add(Entry(body))
                    continue
            add(self.entry(run.event(index)))
        return entries

    def _structured(self, raw: RawEvent, record: bytes, head: RecordHead, event_id: str) -> bytes:
        """The metadata spliced in front of the record's own bytes; the record is parsed in full only
        when a field must move (a reserved name) or there is nothing to splice onto (`{}`)."""
        record = record.strip()  # the same object when there is nothing to strip
        if head.clashes() or (record[1] in _SPACE_OR_CLOSE and record[1:].lstrip().startswith(b"}")):
            return self._parsed(raw, event_id)
        when = head.eventTime
        close = self._event_time_closes.get(when) if type(when) is str else None
        if close is None:
            close = self._record_close(raw, head)
        return b"".join((self._lead, orjson.dumps(event_id), b"},", memoryview(record)[1:-1], close))

    def _record_close(self, raw: RawEvent, head: RecordHead) -> bytes:
        """A record's close (`_close`), from its `eventTime` (kept per value: a file's records share a
        few, whole seconds) or else the first usable of its other times or the container's.

        The kept closes start over when `CLOSES_KEPT` are held: a file's times mostly rise, so the
        recent ones stay useful, where keeping the first ones sent every record of a long file's
        later hours the slow way (15% more CPU per byte on a 1 GB file).
        """
        when = head.eventTime
        timestamp = _iso_ms(when) if isinstance(when, str) else None
        if timestamp:  # as in `_first_time(...) or ...`: an epoch-zero time counts as none
            close = _close(timestamp)
            if len(self._event_time_closes) >= CLOSES_KEPT:
                self._event_time_closes.clear()
            self._event_time_closes[when] = close
            return close
        return _close(_first_time((head.stageTimestamp, head.requestReceivedTimestamp)) or raw.timestamp_ms)

    def _parsed(self, raw: RawEvent, event_id: str) -> bytes:
        """The record re-serialised with the metadata, its reserved names moved; as text, not lost,
        when that cannot be done: a record that skipped `read_head`'s check, or one nested deeper than
        orjson writes (255 levels, where it reads 1024)."""
        fields = raw.fields
        if fields is not None:
            timestamp = _event_time(fields) or raw.timestamp_ms
            if fields.keys().isdisjoint(RESERVED):
                merged = {**self._meta, **self._identity(timestamp, event_id), **fields}
            else:
                merged = self._with_moved_fields(fields, timestamp, event_id)
            try:
                return orjson.dumps(merged)
            except orjson.JSONEncodeError:
                pass
        return self._text((raw.record or b"").decode("utf-8", "replace"), raw.timestamp_ms, event_id)

    @staticmethod
    def _identity(timestamp: int | None, event_id: str) -> dict[str, Any]:
        identity: dict[str, Any] = {} if timestamp is None else {"timestamp": timestamp}
        identity["forwarder"] = {"id": event_id}
        return identity

    def _with_moved_fields(self, fields: dict[str, Any], timestamp: int | None, event_id: str) -> dict[str, Any]:
        merged = {**self._meta, **self._identity(timestamp, event_id)}
        merged.update((key, value) for key, value in fields.items() if key not in RESERVED)
        merged["original_fields"] = {key: value for key, value in fields.items() if key in RESERVED}
        return merged

    def _text(self, message: str, container_ms: int | None, event_id: str) -> bytes:
        timestamp = self._message_time(message) or container_ms
        return b"".join((self._lead, orjson.dumps(event_id), _MESSAGE_JOIN, orjson.dumps(message), _close(timestamp)))

    def _message_time(self, message: str) -> int | None:
        """JSON lines (EKS audit, NDJSON in S3) carry their own time; parse only what looks like JSON."""
        if self._audit:
            stamped = _stage_time(message)
            if stamped is not None:
                return stamped
        elif not message.startswith("{"):
            return None
        try:
            fields = orjson.loads(message)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(fields, dict):
            return None
        return _event_time(fields, AUDIT_TIME_FIELDS if self._audit else TIME_FIELDS)

    def _truncated(self, raw: RawEvent, original_bytes: int, event_id: str) -> bytes:
        head = dict(self._meta)
        fields = raw.fields or {}
        timestamp = _event_time(fields) or raw.timestamp_ms
        if timestamp is not None:
            head["timestamp"] = timestamp
        for key, value in fields.items():
            if key not in RESERVED and _serialised_size(value) <= SMALL_FIELD_BYTES:
                head[key] = value
        marker = {"id": event_id, "truncated": True, "original_bytes": original_bytes}
        text = raw.message if raw.message is not None else (raw.record or b"").decode("utf-8", "replace")
        return _fit_message({**head, "forwarder": marker}, text, self._entry_max) or _fit_message(
            {**self._meta, "forwarder": marker}, text, self._entry_max
        )


def _serialised_size(value: Any) -> float:
    """Bytes of `value` as JSON; infinite when orjson cannot write it (nested past 255 levels)."""
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return float("inf")


def _close(timestamp: int | None) -> bytes:
    """The end of an entry: its `timestamp` member, if any, and the closing brace.

    An entry is joined in one copy from a lead that is the same for every entry of the container
    (the metadata and `"forwarder":{"id":`), the id, the event's own members and this close, so
    nothing per event is copied twice.
    """
    return b"}" if timestamp is None else b',"timestamp":%d}' % timestamp


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


def _stage_time(message: str) -> int | None:
    """The time of an audit event's top-level `stageTimestamp`, parsing only the message's tail.

    The tail from the key's quote to the end, with a `{` in front, is a JSON object exactly when the
    key sits at the top level (a deeper one leaves brackets to close), and a quote after a backslash
    is inside a string. The last literal key starts the tail, and the last of duplicate keys wins, as
    in a full parse. None means "do the full parse". A message that is not JSON before the key still
    gets the time its tail names, where a full parse would fail and leave CloudWatch's time.
    """
    at = message.rfind(_STAGE_KEY)  # the last one: API servers write it near the end
    if at < 1 or message[0] != "{" or message[at - 1] == "\\":
        return None
    try:
        value = _decode_stage_tail("{" + message[at:]).stageTimestamp
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):  # the last: a lone surrogate
        return None
    return _iso_ms(value) if isinstance(value, str) else None


class _StageTail(msgspec.Struct, gc=False):
    """The tail `_stage_time` checks: msgspec skips the rest (the annotations) unbuilt, 3.5x faster
    than parsing it with orjson."""

    stageTimestamp: Any = None


_decode_stage_tail = msgspec.json.Decoder(_StageTail).decode


def _event_time(fields: dict[str, Any], names: tuple[str, ...] = TIME_FIELDS) -> int | None:
    return _first_time(fields.get(name) for name in names)


def _first_time(values: Iterable[Any]) -> int | None:
    """The first value that is an ISO 8601 time, in epoch milliseconds."""
    for value in values:
        if isinstance(value, str):
            parsed = _iso_ms(value)
            if parsed is not None:
                return parsed
    return None


def _iso_ms(text: str) -> int | None:
    """Epoch milliseconds of an ISO 8601 time; a time taken as UTC when it names no zone.

    Whole-second times (CloudTrail's `eventTime`) repeat within a file, so their parse is cached; a
    time with a fraction (EKS audit's microseconds) rarely repeats, and parsing it outright costs
    half as much as a cache that misses.
    """
    if len(text) > 20 and text[-1] == "Z":
        try:
            return int(datetime.fromisoformat(text).timestamp() * 1000)
        except ValueError:
            return None
    return _parse_iso_ms(text)


@functools.lru_cache(maxsize=4096)
def _parse_iso_ms(text: str) -> int | None:
    """Cached: CloudTrail's eventTime has second precision, so the records of one file share a few values."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
