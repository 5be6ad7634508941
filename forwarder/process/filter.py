"""INCLUDE_AT_MATCH and EXCLUDE_AT_MATCH, with the Datadog Forwarder's meaning.

Both are Python regular expressions searched (`re.search`, unanchored) in the event's message when
it has one, otherwise in its JSON: a CloudTrail record's text exactly as read, minified as
CloudTrail writes it, without the forwarder's metadata. An event the exclude pattern matches is
filtered even when the include pattern matches it too. Filtered events are counted as `filtered`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from forwarder.formats import Block
from forwarder.formats.logbatch import MessageRun
from forwarder.formats.run import RecordRun
from forwarder.model import RawEvent
from forwarder.process import EventList


class Filter:
    """Keeps the events the patterns let through; a block it keeps whole is returned as it came."""

    def __init__(self, include: re.Pattern[str] | None, exclude: re.Pattern[str] | None) -> None:
        self._include = include
        self._exclude = exclude

    def keeps(self, text: str) -> bool:
        if self._exclude is not None and self._exclude.search(text) is not None:
            return False
        return self._include is None or self._include.search(text) is not None

    def process(self, block: Block) -> tuple[Block | None, int]:
        verdicts = [self.keeps(text) for text in _texts(block)]
        if all(verdicts):
            return block, 0
        kept = [event for event, keep in zip(block.events(), verdicts, strict=True) if keep]
        return (EventList(kept, block.last()) if kept else None), len(verdicts) - len(kept)


def event_text(event: RawEvent) -> str:
    """What a pattern is matched against: the message when there is one, else the record's JSON."""
    if event.message:
        return event.message
    return "" if event.record is None else event.record.decode("utf-8", "replace")


def _texts(block: Block) -> Iterator[str]:
    """The texts of a block's events, in order; runs without building their events."""
    if type(block) is RecordRun:
        return (block.record(index).decode("utf-8", "replace") for index in range(len(block)))
    if type(block) is MessageRun:
        return (event.message for event in block.log_events)
    return (event_text(event) for event in block.events())
