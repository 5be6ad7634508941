"""EventBridge events read as one event each: the container is the event itself.

Two shapes (`Shape`). A CloudTrail record carried in `detail` (detail-type "AWS API Call via
CloudTrail") goes exactly as a record read from a trail's file: checked by the CloudTrail head
reader, its id its `eventID`, its time its `eventTime`. Any other event goes whole, envelope
included (the SIEM's GuardDuty and Security Hub pipelines read `detail.*`): its id is the event's
`id`, its time the first of the source rule's time paths that holds an ISO 8601 time (a finding's
`detail.updatedAt`, else its `detail.createdAt`, else the event's `time`).

The Lambda runtime has already parsed the event, so its bytes are written again here: by orjson,
or by the standard library for what orjson refuses (integers past 64 bits, nesting past 255 levels).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson

from forwarder.errors import InputError
from forwarder.formats.jsonhead import Head, HeadReader, InvalidRecord
from forwarder.model import EventBridgeEvent, RawEvent
from forwarder.times import iso_ms

TimePath = tuple[str, ...]
"""Names from the event's top level down to a field that may hold its time: ("detail", "updatedAt")."""
ENVELOPE_TIME: tuple[TimePath, ...] = (("time",),)


class Shape(enum.Enum):
    """What of an EventBridge event is the event the SIEM receives."""

    RECORD = "record"
    """`detail` is a structured record (CloudTrail) and goes as one read from S3 would."""
    EVENT = "event"
    """The whole event, envelope included."""


def read_event(
    item: EventBridgeEvent, shape: Shape, times: tuple[TimePath, ...], watched: frozenset[str]
) -> Iterator[RawEvent]:
    """The one event of an EventBridge event, as a structured `RawEvent`. A `detail` that is not an
    object cannot be a record: the event then goes whole. The envelope's `time` stands in for a
    record with no time of its own."""
    event = item.event
    reader = HeadReader(watched)
    detail = event.get("detail")
    if shape is Shape.RECORD and isinstance(detail, dict):
        record = _serialised(detail, item)
        yield RawEvent(0, None, record, _head(reader, record, item), _time_ms(event, ENVELOPE_TIME))
        return
    record = _serialised(event, item)
    when = _time_text(event, times)
    head = msgspec.structs.replace(_head(reader, record, item), eventID=item.event_id, eventTime=when)
    yield RawEvent(0, None, record, head, _time_ms(event, times))


def _serialised(value: dict[str, Any], item: EventBridgeEvent) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:  # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise InputError(item.origin, "event", f"the event cannot be written as JSON: {exc}") from exc


def _head(reader: HeadReader, record: bytes, item: EventBridgeEvent) -> Head:
    try:
        return reader.read(record)
    except InvalidRecord as exc:
        raise InputError(item.origin, "event", f"the event is not JSON the intake accepts: {exc}") from exc


def _time_text(event: dict[str, Any], times: tuple[TimePath, ...]) -> str | None:
    """The first value along `times` that is an ISO 8601 time (not epoch zero), as written."""
    for path in times:
        value: Any = event
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        if isinstance(value, str) and iso_ms(value):
            return value
    return None


def _time_ms(event: dict[str, Any], times: tuple[TimePath, ...]) -> int | None:
    when = _time_text(event, times)
    return iso_ms(when) if when is not None else None
