"""`forwarder run`: one local file or S3 object through the Lambda's readers, source rules and encoder,
sent as the Lambda sends (batches, retries, deadline) or printed as NDJSON, without a Lambda event.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import orjson

from forwarder.cli import CommandError, LocalContext

if TYPE_CHECKING:
    from forwarder.model import Deadline, Entry, S3Object
    from forwarder.outputs.batch import Batch
    from forwarder.settings import Settings


def forward_one(target: str, as_object: str | None, dry_run: bool) -> int:
    """Read one object through the Lambda's readers, source rules and encoder, then send or print it.

    It runs the stages a work item goes through, not the handler: there is no event to parse, and no
    idempotency, continuation or failure store, which only matter to retried notifications.
    """
    from forwarder import formats, runtime, sources
    from forwarder.errors import InputError
    from forwarder.model import Deadline, Invoker, Source
    from forwarder.outputs.datadog import DatadogEncoder
    from forwarder.read import codecs
    from forwarder.settings import load_settings

    settings = load_settings()
    obj, chunks = _open(target, as_object, settings)
    context = LocalContext()
    invoker = Invoker.from_arn(context.invoked_function_arn, settings.region)
    output = None if dry_run else runtime.OUTPUT.get(settings)
    stream = codecs.decompress(chunks, obj.origin)
    form, stream = formats.sniffed(stream)
    decided = sources.for_object(obj, settings, form)
    if not isinstance(decided, Source):
        reason = decided.reason.value if decided is not None else "no source rule"
        print(f"forwarder run: {obj.origin} skipped ({reason}): nothing to forward", file=sys.stderr)
        return 0
    encoder = output.encoder(decided, obj, invoker) if output else DatadogEncoder(decided, obj, invoker, settings)
    blocks = formats.read_object(stream, obj.origin, form, DatadogEncoder.watched)
    entries = (entry for block in blocks for entry in encoder.entries(block))
    counts = Counts()
    try:
        if output is None:
            _print_entries(entries, sys.stdout.buffer, counts)
        else:
            deadline = Deadline(context.get_remaining_time_in_millis, settings.deadline_margin_seconds)
            _send(entries, output.send, deadline, settings, counts)
    except InputError as exc:  # the events before the bad spot were printed or sent, and counted
        print(f"forwarder run: {exc}", file=sys.stderr)
        counts.unreadable = True
    verdict = "printed" if dry_run else f"{counts.delivered} delivered, {counts.failed} failed"
    print(f"forwarder run: {obj.origin} as {decided.name}: {counts.read} events, {verdict}", file=sys.stderr)
    return 1 if counts.failed or counts.unreadable else 0


@dataclass
class Counts:
    """What `run` did with the object's events; kept up to date, so an unreadable tail loses no count."""

    read: int = 0
    delivered: int = 0
    failed: int = 0
    unreadable: bool = False


def _open(target: str, as_object: str | None, settings: Settings) -> tuple[S3Object, Iterator[bytes]]:
    """The object to label the events with, and its bytes as the Lambda would read them."""
    from forwarder import runtime
    from forwarder.model import S3Object
    from forwarder.read import s3

    if target.startswith("s3://"):
        obj = _s3_object(target)
        return obj, s3.open_object(runtime.client("s3"), obj, settings.read_chunk_bytes)
    path = Path(target)
    if not path.is_file():
        raise CommandError(f"no such file: {target}")
    obj = _s3_object(as_object) if as_object else S3Object(bucket="local", key=path.as_posix())
    return obj, _file_chunks(path, settings.read_chunk_bytes)


def _s3_object(uri: str) -> S3Object:
    from forwarder.model import S3Object

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise CommandError(f"not an s3://bucket/key address: {uri}")
    return S3Object(bucket=bucket, key=key)


def _file_chunks(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            yield chunk


def _print_entries(entries: Iterator[Entry], out: BinaryIO, counts: Counts) -> None:
    """One entry per line: a record's own bytes may span lines (a pretty-printed trail file), so each
    entry is re-serialised compactly; the intake gets them byte for byte as read."""
    try:
        for entry in entries:
            out.write(orjson.dumps(orjson.loads(entry.body)) + b"\n")
            counts.read += 1
    finally:
        out.flush()


def _send(
    entries: Iterator[Entry],
    send: Callable[[Batch, Deadline], None],
    deadline: Deadline,
    settings: Settings,
    counts: Counts,
) -> None:
    """Batch and send as the Lambda does, retries and deadline included."""
    from forwarder.outputs.batch import batches
    from forwarder.outputs.deliver import deliver

    packed = batches(entries, settings.batch_max_entries, settings.batch_max_bytes)
    for batch, error in deliver(send, packed, deadline, settings.max_workers):
        counts.read += len(batch.entries)
        if error is None:
            counts.delivered += len(batch.entries)
        else:
            counts.failed += len(batch.entries)
            print(f"forwarder run: {len(batch.entries)} events not delivered: {error}", file=sys.stderr)
