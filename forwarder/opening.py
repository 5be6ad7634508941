"""Opening a work item for reading: its source (the rules), its bytes (S3, ranged, a payload) and
the reader that turns them into blocks, or a skip. Rules that need only the key decide before
anything is read; the others see the format sniffed from the first bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from forwarder import formats, runtime, sources
from forwarder.formats import Block, Format, delimited, multiline, parquet
from forwarder.formats.inline import read_event
from forwarder.formats.jsonhead import HeadReader
from forwarder.formats.logbatch import read_log_batch
from forwarder.metrics import Tally
from forwarder.model import AwsLogs, Checkpoint, Container, EventBridgeEvent, S3Object, Skip, Source, WorkItem
from forwarder.read import awslogs, codecs, s3
from forwarder.read.ranged import RangedFile
from forwarder.reliability import continuation

if TYPE_CHECKING:
    from forwarder.pipeline import Pipeline


@dataclass
class Opened:
    """A work item opened for reading: what it is, its blocks, and how to checkpoint after a block."""

    source: Source
    container: Container
    blocks: Iterator[Block]
    progress: continuation.Progress | None = None
    """None for a container that cannot be resumed part-way (a CloudWatch Logs payload)."""
    resume_at: int = 0
    """Events an earlier invocation handled: the blocks start after them."""
    start: Checkpoint | None = None
    """Where the blocks start, for a continuation."""


def open_item(run: Pipeline, item: WorkItem) -> Opened | None:
    """The source and blocks of a work item, or None when it is skipped (and counted)."""
    if isinstance(item, AwsLogs):
        return _open_log_batch(run, item)
    if isinstance(item, EventBridgeEvent):
        decided = sources.for_event(item, run.settings)
        blocks = read_event(item, decided.shape, decided.times, run.output().watched)
        return Opened(decided.source, item, blocks)
    assert isinstance(item, S3Object), "a replay is not read"
    return _open_object(run, item)


def _open_log_batch(run: Pipeline, item: AwsLogs) -> Opened | None:
    run.tally.bytes_in += len(item.data)
    decoded = awslogs.decode_awslogs(item.data)
    if isinstance(decoded, Skip):
        run.skip(decoded)
        return None
    source = sources.for_log_batch(decoded, run.settings)
    if isinstance(source, Skip):
        run.skip(source)
        return None
    records = HeadReader(run.output().watched) if source.name == sources.CLOUDTRAIL else None
    return Opened(source, decoded, read_log_batch(decoded, records))


def _open_object(run: Pipeline, item: S3Object) -> Opened | None:
    """An object's blocks, from its checkpoint when it is a continuation (see `continuation`).

    Rules that need only the key decide before anything is read; the others see the format
    sniffed from the first bytes. A continuation's format is its checkpoint's.
    """
    start = item.checkpoint
    form = Format(start.format) if start is not None else formats.by_key(item.key)
    decided = sources.for_object(item, run.settings, form)
    if isinstance(decided, Skip):
        run.skip(decided)
        return None
    tracker = s3.Tracker(start)
    if form is Format.PARQUET and isinstance(decided, Source):
        return _open_parquet(run, item, decided, tracker)
    body = _counted(s3.open_object(runtime.client("s3"), item, run.settings.read_chunk_bytes, tracker), run.tally)
    chunks = codecs.decompress(body, item.origin, tracker)
    if tracker.skip_bytes:
        chunks = codecs.discard(chunks, tracker, item.origin, run.time_to_stop)
    if form is None:
        form, chunks = formats.sniffed(chunks)
        decided = sources.for_object(item, run.settings, form)
    if form is Format.PARQUET and isinstance(decided, Source):
        close_stream(chunks)
        return _open_parquet(run, item, decided, tracker)
    if not isinstance(decided, Source):
        close_stream(chunks)  # releases the S3 body now, not at garbage collection
        assert decided is not None, "every rule can decide once the content is known"
        run.skip(decided)
        return None
    watched = run.output().watched
    blocks = formats.read_object(chunks, item.origin, form, watched, start=start)
    if decided.line_format is not None:  # a delimited AWS log: its header lines are not events
        blocks = delimited.headed(blocks, decided.line_format, start)
    if form is Format.LINES and run.settings.multiline_pattern is not None:
        blocks = multiline.join_lines(blocks, run.settings.multiline_pattern, start)
    return Opened(decided, item, blocks, continuation.Progress(tracker, form), item.resume_at, start)


def _open_parquet(run: Pipeline, item: S3Object, source: Source, tracker: s3.Tracker) -> Opened:
    """A Parquet object's rows, read by ranged GETs (`formats.parquet`); no stream is open."""
    tracker.codec = parquet.CODEC
    file = RangedFile(runtime.client("s3"), item, tracker)
    blocks = parquet.read_parquet(
        file,
        item.origin,
        run.output().watched,
        tracker,
        item.checkpoint,
        max_row_group_bytes=run.settings.parquet_max_row_group_bytes,
    )
    progress = continuation.Progress(tracker, Format.PARQUET)
    return Opened(source, item, blocks, progress, item.resume_at, item.checkpoint)


def _counted(chunks: Iterator[bytes], tally: Tally) -> Iterator[bytes]:
    """The chunks as read from S3, their bytes counted as they pass (`Tally.bytes_in`)."""
    try:
        for chunk in chunks:
            tally.bytes_in += len(chunk)
            yield chunk
    finally:
        close_stream(chunks)


def close_stream(stream: Iterator[Any]) -> None:
    """Close a chain of generators (and the S3 body at its root) without waiting for garbage collection."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()
