"""DD_MULTILINE_LOG_REGEX_PATTERN: text lines joined into multi-line events (stack traces, dumps).

A line starts an event where the pattern matches at its start (`re.match`, as the Datadog Forwarder
tests `^PATTERN` after each line break); every other line joins the event before it, blank lines
inside an event kept as the line breaks they were. Lines before the first line that starts an event
are events of their own: the Datadog Forwarder reads a whole object line by line when its first
line does not match, which this gives for an object the pattern never matches, while an object
whose header comes before its first match still has the rest joined.

An event stops growing at the per-event size cap: the line that would take it past the cap starts
the next one, so no input is refused or held whole. A checkpoint is only ever after the last line
of a whole event: while an event may still grow, progress is reported as where it began.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator

import msgspec

from forwarder.formats import Block
from forwarder.model import MAX_EVENT_BYTES, Checkpoint, Gap, RawEvent


class JoinedLines(msgspec.Struct, gc=False):
    """One event of several lines: at the position of its first line, its last line its `last()`."""

    event: RawEvent
    end: RawEvent

    def __len__(self) -> int:
        return 1

    def events(self) -> Iterator[RawEvent]:
        yield self.event

    def last(self) -> RawEvent:
        return self.end


def join_lines(
    lines: Iterable[Block],
    starts: re.Pattern[str],
    start: Checkpoint | None = None,
    max_event_bytes: int = MAX_EVENT_BYTES,
) -> Iterator[Block]:
    """The blocks of `formats.lines.read_lines` (line events and `Gap`s) with continuation lines
    joined to the line that starts their event; `start` is the checkpoint the lines begin at."""
    before = RawEvent.marker(0, 0) if start is None else RawEvent.marker(start.position, start.decompressed)
    pending: list[RawEvent] = []
    try:
        for block in lines:
            if type(block) is Gap:
                if not pending:
                    before = block.end
                yield Gap(before) if pending else block
                continue
            for line in block.events():
                opens = starts.match(line.message or "") is not None
                if pending and (opens or line.end_offset - before.end_offset > max_event_bytes):
                    yield _joined(pending)
                    before = RawEvent.marker(pending[-1].position, pending[-1].end_offset)
                    pending = []
                if pending or opens:
                    pending.append(line)
                else:
                    before = line
                    yield line
        if pending:
            yield _joined(pending)
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()  # releases the S3 body when reading stops early


def _joined(lines: list[RawEvent]) -> Block:
    first, last = lines[0], lines[-1]
    if len(lines) == 1:
        return first
    parts = [first.message or ""]
    for previous, line in itertools.pairwise(lines):
        parts.append("\n" * (line.position - previous.position))
        parts.append(line.message or "")
    event = RawEvent.line(first.position, "".join(parts), last.end_offset)
    return JoinedLines(event, RawEvent.marker(last.position, last.end_offset))
