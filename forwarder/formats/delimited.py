"""Header lines of delimited AWS logs in S3: not events, and what they say of the lines after them.

A VPC flow log file starts with a line naming its fields (`version account-id ... start end ...`):
the default format and every custom one alike, so the header says where `start`, the event's own
time, is. A CloudFront standard log starts with `#Version:` and `#Fields:` lines. Neither is an
event: a header line is passed over as a `Gap` (so checkpoints move past it), as a blank line is,
and is neither read nor counted as a skip.

A continuation enters a file after its header, so it cannot learn a custom layout; its lines get
the time the default format shows (`times.line_time`), which a custom layout's lines fail to show,
rather than a time read from the wrong field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from forwarder.formats import Block
from forwarder.model import Checkpoint, Gap, RawEvent
from forwarder.times import TimeFormat, vpc_flow_at

_FIELD_NAMES = re.compile(r"[a-z][a-z0-9-]*(?: [a-z][a-z0-9-]*)+")
"""A flow log header: field names only (`version`, `account-id`, `pkt-srcaddr`, ...), no values."""


def headed(blocks: Iterable[Block], layout: TimeFormat, start: Checkpoint | None) -> Iterator[Block]:
    """The blocks of a line-read object of `layout`, its header lines passed over; a VPC flow log's
    lines stamped with the `start` its header places. Other layouts' blocks pass unchanged."""
    if layout is TimeFormat.CLOUDFRONT:
        return _without_comments(blocks)
    if layout is TimeFormat.VPC_FLOW and start is None:
        return _flow_log(blocks)
    return iter(blocks)


def _without_comments(blocks: Iterable[Block]) -> Iterator[Block]:
    """W3C extended log lines: those starting with `#` are directives (`#Version`, `#Fields`)."""
    for block in blocks:
        if type(block) is RawEvent and block.message is not None and block.message.startswith("#"):
            yield Gap(RawEvent.marker(block.position, block.end_offset))
        else:
            yield block


def _flow_log(blocks: Iterable[Block]) -> Iterator[Block]:
    """The first line, when it names fields, is the header: it is passed over, and when it names
    `start` the lines after it are stamped with the time at that place."""
    stream = iter(blocks)
    for block in stream:
        if type(block) is not RawEvent:
            yield block
            continue
        message = block.message or ""
        if block.position != 1 or not _FIELD_NAMES.fullmatch(message):
            yield block
            yield from stream
            return
        yield Gap(RawEvent.marker(block.position, block.end_offset))
        names = message.split(" ")
        if "start" not in names:
            yield from stream
            return
        read = vpc_flow_at(names.index("start"))
        for later in stream:
            for event in later.events():
                if event.message is not None:
                    event.timestamp_ms = read(event.message)
            yield later
        return
