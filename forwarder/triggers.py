"""Lambda event → work items: recognise the trigger by the event's shape and unwrap SQS, SNS and EventBridge.

Shapes, outermost first (the trigger name each gets is in brackets):

    {"Records": [{"eventSource": "aws:s3", ...}]}        S3 notification               ["s3"]
    {"Records": [{"EventSource": "aws:sns", ...}]}       SNS, Message holds a payload  ["sns", "cloudtrail-sns"]
    {"Records": [{"eventSource": "aws:sqs", ...}]}       SQS, body holds a payload     ["sqs", "sqs/sns", ...]
    {"source": "aws.s3", "detail-type": "Object ..."}    EventBridge, S3's own events  ["eventbridge"]
    {"source": ..., "detail-type": ..., "detail": ...}   EventBridge, any other event  ["eventbridge"]
    {"invocationSchemaVersion", "tasks": [...], ...}     S3 Batch Operations           ["s3-batch-operations"]
    {"Service": "Amazon S3", "Event": "s3:TestEvent"}    S3's configuration check      ["s3"]
    {"awslogs": {"data": ...}}                           CloudWatch Logs subscription  ["cloudwatch"]
    {"retry": true}  (or "true", as Datadog's schedule)  replay the failure store      ["replay"]
    SQS body {"forwarder_continuation": {...}}           the rest of an object         ["sqs/continuation"]
    SQS body {"awslogs": {"data": ...}}                  a CloudWatch Logs payload     ["sqs/cloudwatch"]
                                                         moved from the dead-letter queue

A payload carried by SNS or SQS is an S3 notification, an s3:TestEvent, an EventBridge event, or the
`{"s3Bucket", "s3ObjectKey": [...]}` message CloudTrail itself publishes to SNS; SQS may also carry an SNS
envelope around one of those (SNS without raw delivery). Key casing of SNS fields differs between direct SNS
(`SigningCertUrl`) and SNS inside SQS (`SigningCertURL`), so only `Message` is read.

Each SQS record is its own Message (identified by `messageId`) so that one bad body fails only itself in the
partial batch response; so is each S3 Batch Operations task (identified by `taskId`), answered on its own.
Other triggers' messages carry no id and fail the invocation as a whole.

An EventBridge event that is not one of S3's object events (a GuardDuty finding, a CloudTrail record, a
Security Hub finding, an application's own event) is forwarded as an event of its own (`EventBridgeEvent`),
never refused: its source is decided by `sources.EVENTBRIDGE_RULES`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias
from urllib.parse import unquote_plus

from forwarder.errors import UnsupportedEvent
from forwarder.model import (
    AwsLogs,
    BatchOperations,
    EventBridgeEvent,
    Invocation,
    Message,
    Replay,
    S3Object,
    Skip,
    SkipReason,
    WorkItem,
)
from forwarder.reliability import continuation

Items: TypeAlias = tuple[WorkItem | Skip, ...]

_MAX_NAMES = 12
BATCH_OPERATIONS = "s3-batch-operations"
BATCH_SCHEMAS = ("1.0", "2.0")


class _BadShape(Exception):
    """A payload is not one we know; the message describes its shape, never its content."""


def parse_event(event: Mapping[str, Any]) -> Invocation:
    """Turn a Lambda event into the messages to process. Raises UnsupportedEvent for unknown shapes."""
    if not isinstance(event, Mapping):
        raise UnsupportedEvent(f"unsupported event: expected a JSON object, got {type(event).__name__}")
    try:
        if "Records" in event:
            return _records_event(event["Records"])
        if "awslogs" in event:
            return Invocation((Message(None, "cloudwatch", (_awslogs(event["awslogs"]),)),))
        if str(event.get("retry", "")).lower() == "true":
            return Invocation((Message(None, "replay", (Replay(),)),))
        if "invocationSchemaVersion" in event and "tasks" in event:
            return _batch_operations(event)
        payload = _payload(event, wrappers=())
    except _BadShape as exc:
        raise UnsupportedEvent(f"unsupported event: {exc}") from None
    if payload is None:
        raise UnsupportedEvent(f"unsupported event: no trigger has this shape ({_describe(event)})")
    return Invocation((Message(None, *payload),))


def _records_event(records: Any) -> Invocation:
    """Route a `Records` event on the eventSource its records share."""
    if not isinstance(records, list) or not records or not all(isinstance(r, Mapping) for r in records):
        raise _BadShape("Records is not a non-empty list of objects")
    sources = {_record_source(record) for record in records}
    if sources == {"aws:sqs"}:
        return Invocation(tuple(_sqs_message(record) for record in records), from_sqs=True)
    if sources == {"aws:sns"}:
        return Invocation(tuple(_sns_message(record) for record in records))
    if sources == {"aws:s3"}:
        return Invocation((Message(None, "s3", _s3_notification(records)),))
    raise _BadShape(f"Records with eventSource {_names(str(s) for s in sources)}")


def _record_source(record: Mapping[str, Any]) -> Any:
    """SNS records spell it `EventSource`; S3 and SQS records `eventSource`."""
    return record.get("eventSource", record.get("EventSource"))


def _sqs_message(record: Mapping[str, Any]) -> Message:
    """One SQS record → one Message; a body we cannot read becomes that message's error instead of raising."""
    message_id = record.get("messageId")
    if not isinstance(message_id, str):
        raise _BadShape("an SQS record has no messageId")
    try:
        trigger, items = _carried(record.get("body"), "body", wrappers=("sqs",))
    except _BadShape as exc:
        return Message(message_id, "sqs", error=f"SQS message {message_id}: {exc}")
    return Message(message_id, trigger, items)


def _sns_message(record: Mapping[str, Any]) -> Message:
    """A direct SNS delivery; an unreadable Message fails this (whole-event) message rather than raising."""
    sns = record.get("Sns")
    message = sns.get("Message") if isinstance(sns, Mapping) else None
    try:
        trigger, items = _carried(message, "SNS Message", wrappers=("sns",))
    except _BadShape as exc:
        return Message(None, "sns", error=str(exc))
    return Message(None, trigger, items)


def _carried(text: Any, what: str, wrappers: tuple[str, ...]) -> tuple[str, Items]:
    """Decode the JSON string an SQS body or SNS Message holds and recognise the payload in it."""
    if not isinstance(text, str):
        raise _BadShape(f"{what} is {type(text).__name__}, not a string")
    try:
        decoded = json.loads(text)
    except ValueError:
        raise _BadShape(f"{what} is not JSON") from None
    if not isinstance(decoded, Mapping):
        raise _BadShape(f"{what} is a JSON {type(decoded).__name__}, not an object")
    if wrappers == ("sqs",) and decoded.get("Type") == "Notification" and "Message" in decoded:
        return _carried(decoded["Message"], "SNS Message inside the SQS body", wrappers=("sqs", "sns"))
    if wrappers == ("sqs",) and continuation.MESSAGE_KEY in decoded:
        return "sqs/continuation", (_continuation(decoded[continuation.MESSAGE_KEY]),)
    if wrappers == ("sqs",) and "awslogs" in decoded:
        return "sqs/cloudwatch", (_awslogs(decoded["awslogs"]),)
    payload = _payload(decoded, wrappers)
    if payload is None:
        raise _BadShape(f"{what} has an unknown shape ({_describe(decoded)})")
    return payload


def _payload(payload: Mapping[str, Any], wrappers: tuple[str, ...]) -> tuple[str, Items] | None:
    """Recognise an S3-side payload; return its trigger name and items, or None when it is none of them.

    Trigger names join the wrappers with "/" (an S3 notification adds nothing, so SQS(SNS(S3)) is "sqs/sns");
    CloudTrail's own message always travels by SNS and replaces the "sns" wrapper with "cloudtrail-sns".
    """
    if isinstance(payload.get("Records"), list):
        if {_record_source(r) if isinstance(r, Mapping) else None for r in payload["Records"]} - {"aws:s3"}:
            return None
        return "/".join(wrappers) or "s3", _s3_notification(payload["Records"])
    if payload.get("Event") == "s3:TestEvent":
        return "/".join(wrappers) or "s3", (Skip(SkipReason.S3_TEST_EVENT, f"bucket {payload.get('Bucket')}"),)
    if payload.get("source") == "aws.s3" and str(payload.get("detail-type")).startswith("Object "):
        return "/".join((*wrappers, "eventbridge")), (_eventbridge(payload),)
    if "s3Bucket" in payload and "s3ObjectKey" in payload:
        return "/".join((*(w for w in wrappers if w != "sns"), "cloudtrail-sns")), _cloudtrail_sns(payload)
    if "source" in payload and "detail-type" in payload:
        return "/".join((*wrappers, "eventbridge")), (_event(payload),)
    return None


def _s3_notification(records: Iterable[Any]) -> Items:
    """Every record of an S3 notification (not only the first); only ObjectCreated:* ones become work.

    S3 URL-encodes keys in notifications ("red flower.jpg" → "red+flower.jpg", "+" → "%2B"), so they are
    decoded here, once, with unquote_plus.
    """
    items: list[WorkItem | Skip] = []
    for record in records:
        name = str(record.get("eventName", ""))
        s3 = _field(record, "s3", Mapping)
        bucket = _field(_field(s3, "bucket", Mapping), "name", str)
        obj = s3.get("object") or {}
        key = _decoded(_field(obj, "key", str))
        if not name.removeprefix("s3:").startswith("ObjectCreated:"):
            items.append(Skip(SkipReason.NOT_OBJECT_CREATED, f"{name} s3://{bucket}/{key}"))
            continue
        items.append(_s3_object(bucket, key, obj, version_field="versionId", etag_field="eTag"))
    return tuple(items)


def _eventbridge(event: Mapping[str, Any]) -> WorkItem | Skip:
    """An S3 event delivered through EventBridge; only "Object Created" becomes work.

    The key is decoded with unquote_plus like a notification key. AWS's EventBridge page for S3 does not say
    whether `detail.object.key` is URL-encoded (its examples only use safe keys), but Powertools
    (S3EventBridgeNotificationObject.key) and OpenSearch Data Prepper (S3EventBridgeNotification.getUrlDecodedKey)
    both decode it, so we follow them. Were a key ever sent plain, decoding changes it only if it holds "+" or
    "%", characters S3's key naming guidelines already single out. Note the lowercase `etag` and the hyphenated
    `version-id`, unlike the notification's `eTag` and `versionId`.
    """
    detail = _field(event, "detail", Mapping)
    bucket = _field(_field(detail, "bucket", Mapping), "name", str)
    obj = _field(detail, "object", Mapping)
    key = _decoded(_field(obj, "key", str))
    if event["detail-type"] != "Object Created":
        return Skip(SkipReason.NOT_OBJECT_CREATED, f"{event['detail-type']} s3://{bucket}/{key}")
    return _s3_object(bucket, key, obj, version_field="version-id", etag_field="etag")


def _event(event: Mapping[str, Any]) -> EventBridgeEvent:
    """Any other EventBridge event, forwarded whole or (CloudTrail's) as the record it carries.

    Its id is EventBridge's `id`, which a retry of the same event keeps; an event without one (sent by
    hand) is named by a hash of its content, so that a retry still gives its entry the same id.
    """
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        try:
            content = json.dumps(event, sort_keys=True, default=repr).encode()
        except (ValueError, RecursionError):
            raise _BadShape("EventBridge event without an id cannot be written as JSON") from None
        event_id = "sha:" + hashlib.blake2b(content, digest_size=16).hexdigest()
    return EventBridgeEvent(dict(event), event_id)


def _batch_operations(event: Mapping[str, Any]) -> Invocation:
    """An S3 Batch Operations invocation: one Message per task, answered on its own (`taskId`).

    Schema 1.0 names the bucket by ARN (`s3BucketArn`), 2.0 by name (`s3Bucket`). The key is URL-encoded
    in both: AWS's example function decodes it with `unquote`, and Powertools, after testing against Batch
    Operations, with `unquote_plus`, which S3 notifications need too; a task whose fields cannot be read
    fails alone, permanently, naming why.
    """
    schema = event.get("invocationSchemaVersion")
    if schema not in BATCH_SCHEMAS:
        raise _BadShape(f"S3 Batch Operations invocation schema {_quoted(schema)}; known: {', '.join(BATCH_SCHEMAS)}")
    invocation_id = _field(event, "invocationId", str)
    tasks = event.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(task, Mapping) for task in tasks):
        raise _BadShape("S3 Batch Operations tasks is not a non-empty list of objects")
    messages = tuple(_batch_task(task) for task in tasks)
    return Invocation(messages, from_batch_operations=BatchOperations(schema, invocation_id))


def _batch_task(task: Mapping[str, Any]) -> Message:
    task_id = _field(task, "taskId", str)
    try:
        key = _decoded(_field(task, "s3Key", str))
        bucket, arn = task.get("s3Bucket"), task.get("s3BucketArn")
        if not (isinstance(bucket, str) and bucket) and isinstance(arn, str) and arn.startswith("arn:"):
            bucket = arn.rsplit(":", 1)[-1]  # arn:aws:s3:::name; a bucket name has no colon
        if not isinstance(bucket, str) or not bucket:
            raise _BadShape("the task names no bucket (s3Bucket, or an s3BucketArn)")
    except _BadShape as exc:
        return Message(task_id, BATCH_OPERATIONS, error=f"task {task_id[:80]}: {exc}")
    version = task.get("s3VersionId")  # null when the bucket is not versioned
    version_id = version if isinstance(version, str) and version else None
    return Message(task_id, BATCH_OPERATIONS, (S3Object(bucket, key, version_id=version_id),))


def _s3_object(bucket: str, key: str, obj: Mapping[str, Any], *, version_field: str, etag_field: str) -> S3Object:
    """The created object an S3 notification or EventBridge event names; the two spell two fields apart."""
    return S3Object(
        bucket=bucket,
        key=key,
        version_id=obj.get(version_field),
        etag=obj.get(etag_field),
        size=_size(obj.get("size")),
        sequencer=obj.get("sequencer"),
    )


def _cloudtrail_sns(message: Mapping[str, Any]) -> Items:
    """CloudTrail's SNS message lists the files it delivered. Its keys are plain, not URL-encoded."""
    bucket = _field(message, "s3Bucket", str)
    keys = message["s3ObjectKey"]
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise _BadShape("CloudTrail SNS message: s3ObjectKey is not a list of strings")
    return tuple(S3Object(bucket=bucket, key=key) for key in keys)


def _continuation(fields: Any) -> S3Object:
    """The rest of an object an earlier invocation handed over before its deadline."""
    try:
        return continuation.from_message(fields)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _BadShape(f"continuation message is malformed ({type(exc).__name__}: {exc})") from None


def _awslogs(awslogs: Any) -> AwsLogs:
    """A CloudWatch Logs subscription; the data stays base64(gzip(json)) until read.py decodes it."""
    if not isinstance(awslogs, Mapping) or not isinstance(awslogs.get("data"), str):
        raise _BadShape("awslogs.data is not a string")
    return AwsLogs(awslogs["data"])


def _field(mapping: Mapping[str, Any], name: str, kind: type) -> Any:
    value = mapping.get(name)
    if not isinstance(value, kind):
        raise _BadShape(f"field {name!r} is missing or not a {kind.__name__}")
    return value


def _decoded(key: str) -> str:
    try:
        return unquote_plus(key, errors="strict")
    except UnicodeDecodeError:
        raise _BadShape("S3 object key is not URL-encoded UTF-8") from None


def _size(size: Any) -> int | None:
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _describe(value: Mapping[str, Any]) -> str:
    return f"top-level keys {_names(str(key) for key in value)}" if value else "an empty object"


def _names(names: Iterable[str]) -> str:
    """A short sorted list of names for error messages, each name and the list cut to a readable length."""
    ordered = sorted(name[:40] for name in names)
    more = f", … {len(ordered) - _MAX_NAMES} more" if len(ordered) > _MAX_NAMES else ""
    return "[" + ", ".join(ordered[:_MAX_NAMES]) + more + "]"


def _quoted(value: Any) -> str:
    return repr(str(value)[:60])
