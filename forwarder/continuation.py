"""Hand the rest of an object to a later invocation before this one runs out of time.

The checkpoint is the number of leading events already handled (delivered or stored). The message
goes to FORWARDER_CONTINUATION_QUEUE_URL, which the same function consumes through its SQS trigger;
`triggers` turns it back into an S3Object with `resume_at` set. Why an event count rather than a byte
offset is explained in docs/reliability.md.
"""

from __future__ import annotations

from typing import Any

import orjson

from forwarder.errors import StoreError
from forwarder.model import S3Object

MESSAGE_KEY = "forwarder_continuation"


def message_body(obj: S3Object, resume_at: int) -> str:
    """The SQS body naming the object, its exact version, and where to resume."""
    fields = {"bucket": obj.bucket, "key": obj.key, "resume_at": resume_at}
    fields.update((name, value) for name, value in (("version_id", obj.version_id), ("etag", obj.etag)) if value)
    return orjson.dumps({MESSAGE_KEY: fields}).decode()


def from_message(fields: dict[str, Any]) -> S3Object:
    """The S3Object a continuation message describes; KeyError or TypeError if it is malformed."""
    resume_at = fields["resume_at"]
    if not isinstance(resume_at, int) or isinstance(resume_at, bool) or resume_at < 0:
        raise TypeError("resume_at is not a non-negative integer")
    return S3Object(
        bucket=str(fields["bucket"]),
        key=str(fields["key"]),
        version_id=fields.get("version_id"),
        etag=fields.get("etag"),
        resume_at=resume_at,
    )


def hand_off(sqs_client: Any, queue_url: str, obj: S3Object, resume_at: int) -> None:
    try:
        sqs_client.send_message(QueueUrl=queue_url, MessageBody=message_body(obj, resume_at))
    except Exception as exc:  # any botocore failure means the rest was not handed over
        raise StoreError(f"could not hand {obj.origin} (from event {resume_at}) to {queue_url}: {exc}") from exc
