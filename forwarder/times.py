"""An event's own time, in epoch milliseconds, from the ISO 8601 text its source writes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

AUDIT_TIME_FIELDS = ("stageTimestamp", "requestReceivedTimestamp", "timestamp")
"""Kubernetes audit events have no eventTime; their own time is when the stage was reached."""
TIME_FIELDS = ("eventTime", *AUDIT_TIME_FIELDS)
"""Where an event's own time is, first first: CloudTrail's, then a Kubernetes audit event's."""


def first_time(values: Iterable[Any]) -> int | None:
    """The first value that is an ISO 8601 time, in epoch milliseconds."""
    for value in values:
        if isinstance(value, str):
            parsed = iso_ms(value)
            if parsed is not None:
                return parsed
    return None


def field_time(fields: dict[str, Any], names: Iterable[str]) -> int | None:
    """The first of the `names` fields that holds a usable time."""
    return first_time(fields.get(name) for name in names)


def iso_ms(text: str) -> int | None:
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


@functools.cache
def tail_time(name: str) -> Callable[[str], int | None]:
    """A reader of a JSON message's top-level `name` time that parses only the message's tail.

    The tail from the key's quote to the end, with a `{` in front, is a JSON object exactly when the
    key sits at the top level (a deeper one leaves brackets to close), and a quote after a backslash
    is inside a string. The last literal key starts the tail, and the last of duplicate keys wins, as
    in a full parse. None means "do the full parse". A message that is not JSON before the key still
    gets the time its tail names, where a full parse would fail and leave the container's time.
    msgspec skips the rest of the tail (an audit event's annotations) unbuilt, 3.5x faster than
    parsing it with orjson.
    """
    key = f'"{name}"'
    decode = msgspec.json.Decoder(msgspec.defstruct("Tail", [(name, Any, None)], gc=False)).decode

    def read(message: str) -> int | None:
        at = message.rfind(key)  # the last one: API servers write it near the end
        if at < 1 or message[0] != "{" or message[at - 1] == "\\":
            return None
        try:
            value = getattr(decode("{" + message[at:]), name)
        except (msgspec.DecodeError, RecursionError, UnicodeEncodeError):  # the last: a lone surrogate
            return None
        return iso_ms(value) if isinstance(value, str) else None

    return read
