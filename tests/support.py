"""Shared test helpers: reading a whole object the way the pipeline does, without S3 or a network."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from forwarder import formats
from forwarder.formats import Block, Format
from forwarder.formats.jsonhead import HeadReader
from forwarder.formats.logbatch import MessageRun, read_log_batch
from forwarder.formats.records import RecordCutter
from forwarder.model import MAX_EVENT_BYTES, Checkpoint, LogBatch, LogEvent, RawEvent
from forwarder.outputs.datadog import RESERVED

read_head = HeadReader(RESERVED).read
"""A record's head as the Datadog output's readers decode it."""


def split_object(
    chunks: Iterable[bytes],
    origin: str,
    max_event_bytes: int = MAX_EVENT_BYTES,
    start: Checkpoint | None = None,
) -> tuple[Format, Iterator[Block]]:
    """Sniff the format (or take the checkpoint's) and read the blocks; a digest has none."""
    if start is not None:
        form = Format(start.format)
        return form, formats.read_object(chunks, origin, form, RESERVED, max_event_bytes, start)
    form, stream = formats.sniffed(chunks)
    if form is Format.DIGEST:
        return form, iter(())
    return form, formats.read_object(stream, origin, form, RESERVED, max_event_bytes)


def split_records(chunks: Iterable[bytes], origin: str, max_event_bytes: int = MAX_EVENT_BYTES) -> Iterator[RawEvent]:
    """Every record of a CloudTrail document, one by one."""
    return formats.each_event(RecordCutter(chunks, origin, HeadReader(RESERVED), max_event_bytes).blocks())


def trail_blocks(records: list[dict[str, Any]]) -> list[Block]:
    """The blocks of a CloudTrail file written as CloudTrail writes it: minified, `eventVersion` first."""
    document = b'{"Records":[' + b",".join(orjson.dumps(record) for record in records) + b"]}"
    return list(split_object([document], "s3://bucket/AWSLogs/1/CloudTrail/x.json.gz")[1])


def audit_run(messages: list[str]) -> MessageRun:
    """The first run of a CloudWatch Logs batch of EKS audit `messages`."""
    events = tuple(LogEvent(str(index), 1733313600000 + index, message) for index, message in enumerate(messages))
    return next(read_log_batch(LogBatch("1", "/aws/eks/c/cluster", "kube-apiserver-audit-1", (), events)))
