"""The Datadog Logs API v2 output: its entry format, its reserved names, its intake.

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

Labels name the account and region that own the event, not the forwarder's (`owner`): one forwarder
in a log-archive account serves a whole organisation. A CloudTrail record's own `recipientAccountId`,
`awsRegion` and instance-profile session (`host`) decide per record: the encoder keeps a lead per
(account, region, identity), so the per-record choice is a dict lookup.

Clash rule: the top-level names the forwarder writes (`RESERVED`) are the forwarder's. An event field
with one of those names is moved, unchanged, into `original_fields.<name>`; nothing is lost, and the
labels stay right. An entry over the intake's per-entry limit is replaced by a truncated one
(`outputs.truncate`).

A request is the batch's JSON array, gzip-compressed when DD_USE_COMPRESSION is on, with the API key
in the `DD-API-KEY` header. The intake takes a request by answering 202 and `{}`; any other answer,
even another 2xx, means the request went somewhere else (`accepts`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from forwarder.formats import Block
from forwarder.formats.logbatch import MessageRun, readable_prefix
from forwarder.formats.run import INTERIOR_PREFIX, RecordRun
from forwarder.labels import ACCOUNT, REGION, instance_host, owner, valid
from forwarder.model import Container, Entry, Invoker, RawEvent, Source
from forwarder.outputs import Output
from forwarder.outputs.batch import json_array
from forwarder.outputs.http import HttpTransport
from forwarder.outputs.truncate import top_level_fields, truncated_entry
from forwarder.settings import Settings
from forwarder.times import AUDIT_TIME_FIELDS, field_time, first_time, iso_ms, line_time, tail_time

RESERVED = frozenset(
    {"ddsource", "ddsourcecategory", "service", "host", "ddtags", "timestamp", "aws", "message"}
    | {"original_fields", "forwarder"}
)
"""The top-level names the forwarder writes in an entry; an event's own fields by these names are moved."""
CLOSES_KEPT = 4096
_SPACE_OR_CLOSE = frozenset(b"} \t\r\n")
_RUN_JOIN = b"}," + INTERIOR_PREFIX
"""Between an entry's id and a run member: the close of `"forwarder":{...}` and the record's first key."""
_MESSAGE_JOIN = b'},"message":'
"""Between a text entry's id and its message, in `_text` and `_message_entries` alike."""
LEADS_KEPT = 4096
"""Leads kept per encoder, one per (account, region, identity) seen; they start over past this."""


def transport(settings: Settings, api_key: str, **options: Any) -> HttpTransport:
    """The HTTP transport to the Datadog intake (`DD_SITE`, or `DD_URL`), the key in its header;
    `options` (retry policy, clock) go to the transport, for tests."""
    return HttpTransport(
        settings, settings.intake_url, {"DD-API-KEY": api_key}, secret=api_key, accepts=accepts, **options
    )


def accepts(status: int, headers: Mapping[str, str], text: str) -> bool:
    """The Logs API v2's own success answer: 202 and a JSON object (`{}`). A 200 web page from a
    wrong URL or a captive proxy is not it, though requests sent there would otherwise count as delivered."""
    if status != 202:
        return False
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


def labels(
    source: Source,
    container: Container,
    invoker: Invoker,
    settings: Settings,
    where: tuple[str, str] | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """The reserved attributes every entry of a container carries (all but its id and time); the
    OCSF output puts them beside each OCSF event sent to a Datadog intake.

    `where` (account, region) and `host` are a record's own, when it names them; otherwise the
    container's (`owner`) and the source's. A source's own `aws_account`/`region` tags (a GuardDuty
    finding's) replace these.
    """
    account, region = where if where is not None else owner(container, invoker)
    tags = [
        *settings.tags,
        f"forwardername:{settings.function_name.lower()}",
        f"forwarder_version:{settings.version}",
    ]
    named = {tag.partition(":")[0] for tag in source.tags}
    if account and "aws_account" not in named:
        tags.append(f"aws_account:{account}")
    if region and "region" not in named:
        tags.append(f"region:{region}")
    tags.extend(source.tags)
    return {
        "ddsource": source.name,
        "ddsourcecategory": "aws",
        "service": source.service,
        "host": host or source.host,
        "ddtags": ",".join(tags),
        "aws": {**container.metadata(), "invoked_function_arn": invoker.function_arn},
    }


def event_id(raw: RawEvent, id_base: str) -> str:
    """The event's own id (CloudTrail `eventID`, else CloudWatch's event id), else a hash of its container
    (`id_base`) and its position: the same event forwarded twice gets the same id."""
    for own in (raw.head.eventID if raw.head is not None else None, raw.event_id):
        if isinstance(own, str) and own:
            return own
    return hashlib.blake2b(f"{id_base}@{raw.position}".encode(), digest_size=16).hexdigest()


class DatadogEncoder:
    """Turns one container's blocks into entries; the metadata is serialised once per container."""

    watched = RESERVED
    """The record names a reader must flag: a record using one is re-serialised with it moved."""
    unmappable = 0
    """A Datadog entry carries any event as it is: none is unmappable."""

    def __init__(self, source: Source, container: Container, invoker: Invoker, settings: Settings) -> None:
        self._labelled = functools.partial(labels, source, container, invoker, settings)
        self._owner = owner(container, invoker)
        self._meta = self._labelled(self._owner)
        self._id_base = container.id_base
        self._lead = _lead(self._meta)
        self._record_labels: dict[tuple[Any, Any, Any], tuple[dict[str, Any], bytes]] = {}
        self._event_time_closes: dict[str, bytes] = {}
        self._entry_max = settings.entry_max_bytes
        self._time_fields = source.time_fields
        self._audit = source.time_fields == AUDIT_TIME_FIELDS
        self._tail_time = tail_time(source.time_fields[0]) if source.time_fields else None
        self._line_time = line_time(source.line_format) if source.line_format is not None else None
        self._by_block: dict[type, Callable[[Any], list[Entry]]] = {RecordRun: self._record_run_entries}
        if self._line_time is None:  # a text line's own time is read in `_message_time`, one by one
            self._by_block[MessageRun] = self._message_run_entries

    def entries(self, block: Block) -> list[Entry]:
        """The block's entries, byte for byte those of its events encoded one by one (`entry`)."""
        fast = self._by_block.get(type(block))
        if fast is not None:
            return fast(block)
        return [self.entry(event) for event in block.events()]

    def entry(self, raw: RawEvent) -> Entry:
        event_id = self._event_id(raw)
        own_size = len(raw.record) if raw.record is not None else len(raw.message or "")
        if own_size > self._entry_max:  # cannot fit whatever the metadata: never built or parsed whole
            return self._truncated(raw, event_id, len(self._lead) + own_size)
        if raw.record is not None and raw.head is not None:
            body = self._structured(raw, raw.record, raw.head, event_id)
        elif self._audit and _cut(raw.message):
            body = self._cut_entry(raw.message or "", raw.timestamp_ms, event_id)
        else:
            body = self._text(raw.message or "", raw.timestamp_ms, event_id)
        if len(body) > self._entry_max:
            return self._truncated(raw, event_id, len(body))
        return Entry(body)

    def _cut_entry(self, message: str, container_ms: int | None, event_id: str) -> bytes:
        """An audit event its source cut (CloudWatch Logs' event size limit): sent as it came, in
        `message`, marked `forwarder.source_truncated`, beside the top-level fields read before the cut
        (auditID, verb, user, objectRef...), a reserved name among them moved as in `_parsed`."""
        fields = readable_prefix(message)
        timestamp = field_time(fields, self._time_fields) or container_ms
        entry = {**self._meta, **{key: value for key, value in fields.items() if key not in RESERVED}}
        moved = {key: value for key, value in fields.items() if key in RESERVED}
        if moved:
            entry["original_fields"] = moved
        entry["message"] = message
        if timestamp is not None:
            entry["timestamp"] = timestamp
        entry["forwarder"] = {"id": event_id, "source_truncated": True}
        try:
            return orjson.dumps(entry)
        except orjson.JSONEncodeError:  # fields nested deeper than orjson writes: the message alone
            return orjson.dumps({**self._meta, "message": message, **_identity(timestamp, event_id)})

    def _truncated(self, raw: RawEvent, event_id: str, original_bytes: int) -> Entry:
        """The truncated entry (`outputs.truncate`); `original_bytes` is the whole entry's size, or for
        an event that is itself over the limit, at least that (its own size and the metadata's)."""
        marker = {"id": event_id, "truncated": True, "original_bytes": original_bytes}
        if raw.record is None and self._audit and _cut(raw.message):
            marker["source_truncated"] = True
        fields = top_level_fields(raw.record)
        timestamp = field_time(fields, self._time_fields)
        if timestamp is None and raw.message is not None and raw.message.startswith("{") and self._tail_time:
            timestamp = self._tail_time(raw.message)
        body = truncated_entry(
            self._labels_of(raw.head)[0], fields, raw, timestamp or raw.timestamp_ms, marker, RESERVED, self._entry_max
        )
        return Entry(body, True)

    def _event_id(self, raw: RawEvent) -> str:
        return event_id(raw, self._id_base)

    def _record_run_entries(self, run: RecordRun) -> list[Entry]:
        """A run's entries joined in one loop. A record with no usable `eventID` or an `eventTime` not
        seen yet or not usable, or an entry to truncate, goes through `entry` on its own. A record
        with a reserved name to move is never in a run (its reader's `RunHead` refuses them)."""
        closes, dumps, join, limit = self._event_time_closes, orjson.dumps, b"".join, self._entry_max
        kept, record_labels = self._record_labels.get, self._new_record_labels
        entries: list[Entry] = []
        add = entries.append
        for index, (member, head) in enumerate(zip(run.members, run.heads, strict=True)):
            own, when = head.eventID, head.eventTime
            close = closes.get(when) if type(when) is str else None
            if close is not None and type(own) is str and own:
                key = (head.recipientAccountId, head.awsRegion, head.userIdentity)
                lead = (kept(key) or record_labels(key))[1]
                body = join((lead, dumps(own), _RUN_JOIN, member, close))
                if len(body) <= limit:
                    add(Entry(body))
                    continue
            add(self.entry(run.event(index)))
        return entries

    def _message_run_entries(self, run: MessageRun) -> list[Entry]:
        """A run of CloudWatch Logs events joined as `_text` joins them; an event with no id, or whose
        time needs its full parse, or an entry to truncate goes through `entry` on its own. A message
        that does not start with `{` has no time of its own, and takes CloudWatch's."""
        lead, dumps, join, limit, tail = self._lead, orjson.dumps, b"".join, self._entry_max, self._tail_time
        entries: list[Entry] = []
        add = entries.append
        for index, event in enumerate(run.log_events):
            own, message = event.id, event.message
            if not message.startswith("{"):
                timestamp: int | None = event.timestamp
            else:
                timestamp = tail(message) if tail is not None else None
            if timestamp and own:  # as in `_message_time(...) or ...`: an epoch-zero time counts as none
                body = join((lead, dumps(own), _MESSAGE_JOIN, dumps(message), _close(timestamp)))
                if len(body) <= limit:
                    add(Entry(body))
                    continue
            add(self.entry(run.event(index)))
        return entries

    def _structured(self, raw: RawEvent, record: bytes, head: Any, event_id: str) -> bytes:
        """The metadata spliced in front of the record's own bytes; the record is parsed in full only
        when a field must move (a reserved name) or there is nothing to splice onto (`{}`)."""
        record = record.strip()  # the same object when there is nothing to strip
        if head.flagged() or (record[1] in _SPACE_OR_CLOSE and record[1:].lstrip().startswith(b"}")):
            return self._parsed(raw, event_id)
        when = head.eventTime
        close = self._event_time_closes.get(when) if type(when) is str else None
        if close is None:
            close = self._record_close(raw, head)
        lead = self._labels_of(head)[1]
        return b"".join((lead, orjson.dumps(event_id), b"},", memoryview(record)[1:-1], close))

    def _labels_of(self, head: Any) -> tuple[dict[str, Any], bytes]:
        """A record's labels and lead: its own account, region and host where it names them."""
        if head is None:
            return self._meta, self._lead
        key = (head.recipientAccountId, head.awsRegion, head.userIdentity)
        return self._record_labels.get(key) or self._new_record_labels(key)

    def _new_record_labels(self, key: tuple[Any, Any, Any]) -> tuple[dict[str, Any], bytes]:
        account, region, identity = key
        where = (valid(account, ACCOUNT) or self._owner[0], valid(region, REGION) or self._owner[1])
        host = instance_host(identity.arn) if identity is not None else None
        meta = self._meta if where == self._owner and host is None else self._labelled(where, host)
        if len(self._record_labels) >= LEADS_KEPT:
            self._record_labels.clear()
        made = self._record_labels[key] = (meta, self._lead if meta is self._meta else _lead(meta))
        return made

    def _record_close(self, raw: RawEvent, head: Any) -> bytes:
        """A record's close (`_close`), from its `eventTime` (kept per value: a file's records share a
        few, whole seconds) or else the first usable of its other times or the container's.

        The kept closes start over when `CLOSES_KEPT` are held: a file's times mostly rise, so the
        recent ones stay useful, where keeping the first ones sent every record of a long file's
        later hours the slow way (15% more CPU per byte on a 1 GB file).
        """
        when = head.eventTime
        timestamp = iso_ms(when) if isinstance(when, str) else None
        if timestamp:  # as in `first_time(...) or ...`: an epoch-zero time counts as none
            close = _close(timestamp)
            if len(self._event_time_closes) >= CLOSES_KEPT:
                self._event_time_closes.clear()
            self._event_time_closes[when] = close
            return close
        return _close(first_time((head.stageTimestamp, head.requestReceivedTimestamp)) or raw.timestamp_ms)

    def _parsed(self, raw: RawEvent, event_id: str) -> bytes:
        """The record re-serialised with the metadata, its reserved names moved; as text, not lost,
        when that cannot be done: a record that skipped its head check, or one nested deeper than
        orjson writes (255 levels, where it reads 1024)."""
        fields = raw.parse_record()
        if fields is not None:
            timestamp = field_time(fields, self._time_fields) or raw.timestamp_ms
            merged = {**self._labels_of(raw.head)[0], **_identity(timestamp, event_id)}
            if fields.keys().isdisjoint(RESERVED):
                merged.update(fields)
            else:
                merged.update((key, value) for key, value in fields.items() if key not in RESERVED)
                merged["original_fields"] = {key: value for key, value in fields.items() if key in RESERVED}
            try:
                return orjson.dumps(merged)
            except orjson.JSONEncodeError:
                pass
        return self._text((raw.record or b"").decode("utf-8", "replace"), raw.timestamp_ms, event_id)

    def _text(self, message: str, container_ms: int | None, event_id: str) -> bytes:
        timestamp = self._message_time(message) or container_ms
        return b"".join((self._lead, orjson.dumps(event_id), _MESSAGE_JOIN, orjson.dumps(message), _close(timestamp)))

    def _message_time(self, message: str) -> int | None:
        """JSON messages (EKS audit, NDJSON in S3) carry their own time; parse only what looks like JSON,
        and only the tail where that is enough (`times.tail_time`). A text line has the time its
        source's layout shows (`Source.line_format`: a load balancer's, an S3 access log's), if any."""
        if not message.startswith("{"):
            return self._line_time(message) if self._line_time is not None else None
        if self._tail_time is not None:
            stamped = self._tail_time(message)
            if stamped is not None:
                return stamped
        try:
            fields = orjson.loads(message)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(fields, dict):
            return None
        return field_time(fields, self._time_fields)


def _cut(message: str | None) -> bool:
    """Whether an audit event's message was cut by its source: it opens a JSON object it never closes
    validly (a whole audit event is always one JSON object)."""
    if message is None or not message.startswith("{"):
        return False
    try:
        orjson.loads(message)
    except orjson.JSONDecodeError:
        return True
    return False


def _lead(meta: dict[str, Any]) -> bytes:
    """What every entry with these labels starts with, up to its id."""
    return orjson.dumps(meta)[:-1] + b',"forwarder":{"id":'


def _identity(timestamp: int | None, event_id: str) -> dict[str, Any]:
    identity: dict[str, Any] = {} if timestamp is None else {"timestamp": timestamp}
    identity["forwarder"] = {"id": event_id}
    return identity


def _close(timestamp: int | None) -> bytes:
    """The end of an entry: its `timestamp` member, if any, and the closing brace.

    An entry is joined in one copy from a lead that is the same for every entry of the container
    (the metadata and `"forwarder":{"id":`), the id, the event's own members and this close, so
    nothing per event is copied twice.
    """
    return b"}" if timestamp is None else b',"timestamp":%d}' % timestamp


def output(settings: Settings, api_key: str, **options: Any) -> Output:
    """The Datadog Logs API v2 output: entries as a JSON array, to the site's intake."""
    return Output(
        lambda source, container, invoker: DatadogEncoder(source, container, invoker, settings),
        DatadogEncoder.watched,
        json_array,
        transport(settings, api_key, **options),
    )
