"""An event's own time, in epoch milliseconds, from the ISO 8601 text its source writes."""

from __future__ import annotations

import enum
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
    """The first value that is a time (`value_ms`), in epoch milliseconds."""
    for value in values:
        parsed = value_ms(value)
        if parsed is not None:
            return parsed
    return None


def value_ms(value: Any) -> int | None:
    """A time value's epoch milliseconds: ISO 8601 text, or an epoch number (WAF's `timestamp`) or
    string of digits (Network Firewall's `event_timestamp`); None for anything else."""
    if isinstance(value, str):
        parsed = iso_ms(value)  # first: an ISO time (CloudTrail's, an audit event's) pays nothing more
        return epoch_ms(value) if parsed is None and len(value) > 8 else parsed
    return epoch_ms(value)


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
        return value_ms(value)

    return read


# Text lines: an AWS log line's own time, by the layout its service writes (`TimeFormat`). A source
# whose rule names no layout builds no reader, so its events cost nothing more.

LineTime = Callable[[str], int | None]
"""A text line's own time in epoch milliseconds, or None when the line does not show one."""

_EPOCH_SECONDS_BELOW = 100_000_000_000
"""An epoch number under this is in seconds (it would be 1973 in milliseconds, 5138 in seconds)."""
_EPOCH_MS_BEFORE = 4_102_444_800_000
"""2100-01-01: a larger number is no log's time (microseconds, a counter), and is not read as one."""


class TimeFormat(enum.Enum):
    """How a service writes a text line's time: the closed set of layouts `line_time` reads."""

    ELB = "elb"
    """ALB (`type time ...`), NLB (`tls version time ...`) or Classic ELB (`time ...`): ISO 8601, UTC."""
    VPC_FLOW = "vpc_flow"
    """Space-separated, `start` in epoch seconds; where it is, the header line tells (`formats.delimited`)."""
    S3_ACCESS = "s3_access"
    """S3 server access logs: `[06/Feb/2019:00:00:38 +0000]`, the third field."""
    CLOUDFRONT = "cloudfront"
    """CloudFront standard logs: `date` and `time` as the first two tab-separated fields, UTC."""


def epoch_ms(value: Any) -> int | None:
    """An epoch number (or a string of digits) in milliseconds, seconds told from milliseconds by size."""
    if isinstance(value, str):
        if not value.isdigit() or len(value) > 16:
            return None
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None
    ms = int(value * 1000) if value < _EPOCH_SECONDS_BELOW else int(value)
    return ms if ms < _EPOCH_MS_BEFORE else None


def _elb(line: str) -> int | None:
    fields = line.split(" ", 3)
    if len(fields) < 3:
        return None
    first = fields[0]
    when = first if first[:1].isdigit() else fields[2] if first == "tls" else fields[1]
    return _parse_iso_ms(when) if len(when) <= 20 else iso_ms(when)


def vpc_flow_at(index: int) -> LineTime:
    """The `start` of a flow log line whose header put it at `index` (`formats.delimited`)."""

    def read(line: str) -> int | None:
        fields = line.split(" ")
        return epoch_ms(fields[index]) if index < len(fields) else None

    return read


def _vpc_flow_default(line: str) -> int | None:
    """`start` of a line in the default format (CloudWatch Logs has no header to say otherwise): 14
    fields, version 2, `start` and `end` both epoch seconds less than a day apart. A custom format
    fails the test, and its line keeps the time it arrived with, never another field's number."""
    fields = line.split(" ")
    if len(fields) != 14 or fields[0] != "2" or not (fields[10].isdigit() and fields[11].isdigit()):
        return None
    start, end = int(fields[10]), int(fields[11])
    return start * 1000 if 1_000_000_000 <= start <= end < start + 86400 else None


def _s3_access(line: str) -> int | None:
    opened = line.find(" [")
    closed = line.find("]", opened)
    return _bracketed_ms(line[opened + 2 : closed]) if 0 < opened < closed else None


@functools.lru_cache(maxsize=4096)
def _bracketed_ms(text: str) -> int | None:
    """`06/Feb/2019:00:00:38 +0000` (strftime `%d/%b/%Y:%H:%M:%S %z`), cached: a file's lines share seconds."""
    try:
        return int(datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp() * 1000)
    except ValueError:
        return None


def _cloudfront(line: str) -> int | None:
    date, _, rest = line.partition("\t")
    clock, _, _ = rest.partition("\t")
    return _parse_iso_ms(f"{date}T{clock}") if len(date) == 10 and len(clock) == 8 else None


_LINE_TIMES: dict[TimeFormat, LineTime] = {
    TimeFormat.ELB: _elb,
    TimeFormat.VPC_FLOW: _vpc_flow_default,
    TimeFormat.S3_ACCESS: _s3_access,
    TimeFormat.CLOUDFRONT: _cloudfront,
}


def line_time(layout: TimeFormat) -> LineTime:
    """The reader of a text line's own time for `layout` (a VPC flow line only in the default format:
    a custom format's `start` is where its header says, which `formats.delimited` reads)."""
    return _LINE_TIMES[layout]
