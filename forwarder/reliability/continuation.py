"""Hand the rest of an object to a later invocation before this one runs out of time.

The message goes to FORWARDER_CONTINUATION_QUEUE_URL, which the same function consumes through its
SQS trigger; `triggers` turns it back into an S3Object. It carries `resume_at`, the number of
leading events already handled (delivered or stored), which stays the source of truth for the
counts, and a `checkpoint` saying where the next event starts (`model.Checkpoint`): the continuation
reads from there with a ranged GET instead of from the start. Only an invocation that stopped before
reading anything hands over without a checkpoint (`resume_at` 0): the object is read from its
start. docs/reliability.md explains the choice per format.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from forwarder.errors import HandOffError
from forwarder.formats import Format
from forwarder.formats.parquet import CODEC as PARQUET_CODEC
from forwarder.model import Checkpoint, RawEvent, S3Object
from forwarder.read.s3 import PLAIN, Tracker

MESSAGE_KEY = "forwarder_continuation"
FORMATS = frozenset({Format.CLOUDTRAIL.value, Format.LINES.value, Format.K8S_AUDIT.value, Format.PARQUET.value})
CODECS = frozenset({"gzip", "zstd", "zlib", PLAIN, PARQUET_CODEC})
_COUNTED = frozenset({Format.CLOUDTRAIL, Format.PARQUET})
"""Formats whose events are numbered from 0, where `position` is exactly the events handled."""
_COUNTS = ("offset", "skip_bytes", "decompressed", "position")


class Progress:
    """Turns the last event handled into the checkpoint of the first one not handled."""

    def __init__(self, tracker: Tracker, form: Format) -> None:
        self.tracker = tracker
        self.form = form

    def checkpoint(self, last: RawEvent) -> Checkpoint:
        """Where the event after `last` starts: just past its closing brace, or its line's LF."""
        offset, skip_bytes = self.tracker.locate(last.end_offset)
        return Checkpoint(
            offset=offset,
            skip_bytes=skip_bytes,
            decompressed=last.end_offset,
            # records are numbered from 0, lines from 1: either way, how many come before the next event
            position=last.position + 1 if self.form in _COUNTED else last.position,
            format=self.form.value,
            codec=self.tracker.codec or PLAIN,
            etag=self.tracker.etag,
        )

    def forget_before(self, last: RawEvent) -> None:
        """Let the tracker drop the member boundaries before `last` (called now and then, not per event)."""
        self.tracker.forget_before(last.end_offset)


def message_body(obj: S3Object, resume_at: int, checkpoint: Checkpoint | None = None) -> str:
    """The SQS body naming the object, its exact version, and where to resume."""
    fields: dict[str, Any] = {"bucket": obj.bucket, "key": obj.key, "resume_at": resume_at}
    fields.update((name, value) for name, value in (("version_id", obj.version_id), ("etag", obj.etag)) if value)
    if checkpoint is not None:
        given = msgspec.structs.asdict(checkpoint).items()
        fields["checkpoint"] = {name: value for name, value in given if value not in (None, "")}
    return orjson.dumps({MESSAGE_KEY: fields}).decode()


def from_message(fields: dict[str, Any]) -> S3Object:
    """The S3Object a continuation message describes; KeyError, TypeError or ValueError if it is malformed."""
    resume_at = _count(fields["resume_at"], "resume_at")
    checkpoint = fields.get("checkpoint")
    if checkpoint is None and resume_at:
        raise ValueError(f"resume_at {resume_at} without a checkpoint")
    return S3Object(
        bucket=str(fields["bucket"]),
        key=str(fields["key"]),
        version_id=fields.get("version_id"),
        etag=fields.get("etag"),
        resume_at=resume_at,
        checkpoint=None if checkpoint is None else _checkpoint(checkpoint, resume_at),
        continued=True,
    )


def hand_off(
    sqs_client: Any, queue_url: str, obj: S3Object, resume_at: int, checkpoint: Checkpoint | None = None
) -> None:
    try:
        sqs_client.send_message(QueueUrl=queue_url, MessageBody=message_body(obj, resume_at, checkpoint))
    except Exception as exc:  # any botocore failure means the rest was not handed over
        raise HandOffError(f"could not hand {obj.origin} (from event {resume_at}) to {queue_url}: {exc}") from exc


def _checkpoint(fields: Any, resume_at: int) -> Checkpoint:
    if not isinstance(fields, dict):
        raise TypeError("checkpoint is not an object")
    offset, skip_bytes, decompressed, position = (_count(fields[name], f"checkpoint.{name}") for name in _COUNTS)
    form, codec, etag = fields["format"], fields["codec"], fields.get("etag")
    if form not in FORMATS:
        raise ValueError(f"checkpoint.format {form!r} is not one of {sorted(FORMATS)}")
    if codec not in CODECS:
        raise ValueError(f"checkpoint.codec {codec!r} is not one of {sorted(CODECS)}")
    if etag is not None and not isinstance(etag, str):
        raise TypeError("checkpoint.etag is not a string")
    if position == 0 or skip_bytes > decompressed:
        raise ValueError("checkpoint.position is 0 or checkpoint.skip_bytes exceeds checkpoint.decompressed")
    if codec == PLAIN and (offset, skip_bytes) != (decompressed, 0):
        raise ValueError("an uncompressed object's checkpoint starts at its decompressed offset")
    if (codec == PARQUET_CODEC) != (form == Format.PARQUET.value):
        raise ValueError("the parquet codec goes with the parquet format, and only it")
    if (Format(form) in _COUNTED and position != resume_at) or position < resume_at:
        raise ValueError(f"checkpoint.position {position} does not match resume_at {resume_at}")
    return Checkpoint(offset, skip_bytes, decompressed, position, form, codec, etag)


def _count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{name} is not a non-negative integer")
    return value
