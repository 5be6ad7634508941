"""The `forwarder` commands that run the Lambda handler outside Lambda, on the events it would get:
`invoke` (an event file), `replay` (the failure store, as the `{"retry": true}` event) and `redrive`
(a dead-letter queue's messages, each as it first arrived).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from forwarder.cli import CommandError, LocalContext

if TYPE_CHECKING:
    from forwarder.settings import Settings

ASYNC_FAILURE_ATTRIBUTE = "ErrorCode"
"""A message attribute Lambda puts on the dead-letter message of a failed asynchronous invocation,
whose body is then the invocation's event; a message redriven from a queue has none."""


def invoke(path: str, timeout: float) -> int:
    """The handler on the event in the file at `path`; its answer printed."""
    return _run_event(_event_file(path), timeout)


def replay(timeout: float) -> int:
    """The failure store's events sent again, once the store is known to be there."""
    _check_store()
    return _run_event({"retry": True}, timeout)


def _event_file(path: str) -> dict[str, object]:
    try:
        event = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read the event file {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"the event file {path} is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise CommandError(f"the event file {path} holds a JSON {type(event).__name__}, not an event object")
    return event


def _check_store() -> None:
    """A replay needs a store that exists: say so plainly rather than fail the invocation inside."""
    from botocore.exceptions import BotoCoreError, ClientError

    from forwarder import runtime
    from forwarder.settings import load_settings

    settings = load_settings()
    if not settings.store_failed_events:  # the settings refuse the flag without a bucket
        raise CommandError("no failure store: set DD_STORE_FAILED_EVENTS=true and DD_S3_BUCKET_NAME")
    try:
        runtime.client("s3").head_bucket(Bucket=settings.store_bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        reason = {404: "does not exist", 403: "is not readable with these credentials"}.get(status, str(exc))
        raise CommandError(f"the failure store bucket {settings.store_bucket} {reason}") from None
    except BotoCoreError as exc:
        raise CommandError(f"cannot reach the failure store bucket {settings.store_bucket}: {exc}") from None


def redrive(queue_url: str, limit: int, timeout: float) -> int:
    """Forward each message through the handler as it first arrived; delete it once nothing failed.

    A dead-letter queue mixes two kinds: messages the queues gave up on (S3, EventBridge or SNS
    notifications, continuations), which are handled as the SQS message they were, and failed
    asynchronous invocations (direct S3 or EventBridge deliveries, CloudWatch Logs payloads), whose
    body is the invocation's event. A message that fails again stays, invisible for the timeout.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from forwarder import runtime
    from forwarder.settings import load_settings

    settings = load_settings()
    sqs = runtime.client("sqs")
    done = failed = 0
    while done + failed < limit:
        try:
            answer = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, limit - done - failed),
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
                VisibilityTimeout=int(timeout) + 60,
                WaitTimeSeconds=1,
            )
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(f"cannot receive from {queue_url}: {exc}") from None
        messages = answer.get("Messages", [])
        if not messages:
            break
        for message in messages:
            if _forward_message(message, settings, timeout):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                done += 1
            else:
                failed += 1
    print(f"forwarder redrive: {done} messages forwarded and deleted, {failed} left in {queue_url}", file=sys.stderr)
    return 1 if failed else 0


def _forward_message(message: dict[str, Any], settings: Settings, timeout: float) -> bool:
    from forwarder.errors import ForwarderError
    from forwarder.handler import handle

    message_id = message.get("MessageId", "?")
    body = message.get("Body", "")
    if ASYNC_FAILURE_ATTRIBUTE in message.get("MessageAttributes", {}):
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            print(f"forwarder redrive: message {message_id} is not a JSON event; left in the queue", file=sys.stderr)
            return False
    else:
        record = {"messageId": message_id, "body": body, "eventSource": "aws:sqs", "awsRegion": settings.region}
        event = {"Records": [{**record, "attributes": message.get("Attributes", {}), "messageAttributes": {}}]}
    try:
        result = handle(event, LocalContext(timeout_seconds=timeout), settings)
    except ForwarderError as exc:
        print(f"forwarder redrive: message {message_id} failed again: {exc}", file=sys.stderr)
        return False
    if result.get("batchItemFailures"):
        print(f"forwarder redrive: message {message_id} failed again; see the log lines above", file=sys.stderr)
        return False
    return True


def _run_event(event: dict[str, object], timeout: float) -> int:
    from forwarder.errors import ForwarderError
    from forwarder.handler import handle
    from forwarder.settings import load_settings

    try:
        result = handle(event, LocalContext(timeout_seconds=timeout), load_settings())
    except ForwarderError as exc:
        print(f"forwarder: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0
