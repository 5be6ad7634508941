"""CloudWatch Logs: a decoded payload's `logEvents`, messages unchanged, a run at a time.

A trail's log group carries CloudTrail records as messages: given a head reader, each message that is
one JSON object becomes a structured event, as a record from S3 is, so that one detection rule
serves both paths; a message that is not goes as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec
import orjson

from forwarder.formats.jsonhead import HeadReader, InvalidRecord
from forwarder.model import LogBatch, LogEvent, RawEvent

MESSAGE_RUN_EVENTS = 500
"""CloudWatch Logs events per `MessageRun`: enough to save the per-event hops, few enough that a run's
entries (about 1 MB for EKS audit) do not add up for a 10,000-event payload."""


class MessageRun(msgspec.Struct, gc=False):
    """Consecutive events of one CloudWatch Logs batch: an encoder joins their entries in one loop
    instead of a few calls and generator hops per event."""

    position: int
    log_events: tuple[LogEvent, ...]

    def __len__(self) -> int:
        return len(self.log_events)

    def event(self, index: int) -> RawEvent:
        """Event `index` as the `RawEvent` reading event by event gives."""
        return RawEvent.log_event(self.position + index, self.log_events[index])

    def events(self) -> Iterator[RawEvent]:
        return (self.event(index) for index in range(len(self.log_events)))

    def last(self) -> RawEvent:
        """A marker for the run's last event (CloudWatch events have no offset to resume from)."""
        return RawEvent.marker(self.position + len(self.log_events) - 1)


def read_log_batch(batch: LogBatch, records: HeadReader | None = None) -> Iterator[MessageRun | RawEvent]:
    """The batch's events in runs of at most `MESSAGE_RUN_EVENTS`; with `records`, one by one, each
    message that is one JSON object as a structured record (`structured_event`)."""
    events = batch.log_events
    if records is not None:
        yield from (structured_event(position, event, records) for position, event in enumerate(events))
        return
    for start in range(0, len(events), MESSAGE_RUN_EVENTS):
        yield MessageRun(start, events[start : start + MESSAGE_RUN_EVENTS])


def structured_event(position: int, event: LogEvent, records: HeadReader) -> RawEvent:
    """The event as a record with its head (its id its `eventID`, else CloudWatch's; its time its own,
    else CloudWatch's), or as text when its message is not one JSON object."""
    try:
        record = event.message.encode()
        head = records.read(record)
    except (InvalidRecord, UnicodeEncodeError):  # the last: a lone surrogate, not UTF-8
        return RawEvent.log_event(position, event)
    return RawEvent(position, None, record, head, event.timestamp, event.id)


_STRUCTURE = re.compile(r'["\\{}\[\],]')
"""The characters that decide where a JSON text's top-level members end."""


def readable_prefix(text: str) -> dict[str, Any]:
    """The complete top-level members of a JSON object cut short (CloudWatch Logs cuts events over its
    size limit): everything up to the last top-level comma, closed. Strings are followed with their
    escapes, so no string inside the event changes where a member ends. {} when none is complete."""
    if not text.startswith("{"):
        return {}
    depth, in_string, skip_to, last = 0, False, -1, 0
    for match in _STRUCTURE.finditer(text):
        at = match.start()
        if at < skip_to:
            continue
        char = text[at]
        if in_string:
            if char == "\\":
                skip_to = at + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif depth == 1:
            last = at
    if not last:
        return {}
    try:
        fields = orjson.loads(text[:last] + "}")
    except orjson.JSONDecodeError:
        return {}
    return fields if isinstance(fields, dict) else {}
