"""The `forwarder` command: check the settings and key, forward one object, invoke, replay, or run the local intake.

    forwarder check [--validate-url URL]
    forwarder run FILE|s3://bucket/key [--as s3://bucket/key] [--dry-run]
    forwarder invoke events/s3-put.json [--timeout 300]
    forwarder replay [--timeout 900]
    forwarder redrive QUEUE_URL [--max-messages 100] [--timeout 300]
    forwarder backfill s3://bucket/prefix [--since DATE] [--until DATE] [--workers 4] [--state FILE]
    forwarder intake [--port 8080] [--api-key KEY] [--out received.ndjson]

Every command reads settings from the environment exactly as the Lambda does (DD_SITE, DD_URL,
DD_API_KEY or its secret...), and S3 through boto3's default chain, so AWS_ENDPOINT_URL points it
at a local S3 such as moto. What an operator gets wrong (a setting, a missing file, a store that is
not there, a refused key) ends in one line on stderr and exit status 1, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    from forwarder.model import Deadline, Entry, S3Object
    from forwarder.outputs.batch import Batch
    from forwarder.settings import Settings

VALIDATE_PATH = "/api/v1/validate"
"""Datadog's API key validation endpoint, on the site's API host (api.<DD_SITE>)."""
ASYNC_FAILURE_ATTRIBUTE = "ErrorCode"
"""A message attribute Lambda puts on the dead-letter message of a failed asynchronous invocation,
whose body is then the invocation's event; a message redriven from a queue has none."""


@dataclass
class LocalContext:
    """The parts of the Lambda context the forwarder reads, for running it outside Lambda."""

    function_name: str = "security-log-forwarder"
    timeout_seconds: float = 300.0
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:security-log-forwarder"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forwarder", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="validate the settings and ask the intake whether the API key is valid")
    check.add_argument(
        "--validate-url",
        help=f"the key validation endpoint (default https://api.<DD_SITE>{VALIDATE_PATH}; with DD_URL, its host)",
    )

    run = commands.add_parser("run", help="forward one local file or S3 object, without a Lambda event")
    run.add_argument("target", help="a local file, or s3://bucket/key")
    run.add_argument("--as", dest="as_object", help="label a local file as this s3://bucket/key (key rules, metadata)")
    run.add_argument("--dry-run", action="store_true", help="print the entries (NDJSON) instead of sending them")

    intake = commands.add_parser("intake", help="run a local Datadog-compatible logs intake on 127.0.0.1")
    intake.add_argument("--host", default="127.0.0.1")
    intake.add_argument("--port", type=int, default=8080)
    intake.add_argument("--api-key", default=os.environ.get("DD_API_KEY", ""), help="expected key (default DD_API_KEY)")
    intake.add_argument("--out", default=None, help="append every accepted entry to this NDJSON file")

    invoke = commands.add_parser("invoke", help="run the handler once on a Lambda event file")
    invoke.add_argument("event", help="path to a JSON event, e.g. events/s3-put.json")
    invoke.add_argument("--timeout", type=float, default=300.0, help="the invocation's time limit in seconds")

    replay = commands.add_parser("replay", help="re-send the events kept in the failure store (DD_S3_BUCKET_NAME)")
    replay.add_argument("--timeout", type=float, default=900.0, help="stop starting new batches after this long")

    redrive = commands.add_parser(
        "redrive", help="forward a dead-letter queue's messages again, whatever their trigger, deleting each done"
    )
    redrive.add_argument("queue_url", help="the queue, e.g. the stack's output DeadLetterQueueUrl")
    redrive.add_argument("--max-messages", type=int, default=100, help="stop after this many messages")
    redrive.add_argument("--timeout", type=float, default=300.0, help="each message's time limit in seconds")

    backfill = commands.add_parser("backfill", help="forward every object under an S3 prefix, resumably")
    backfill.add_argument("prefix", help="s3://bucket/prefix")
    backfill.add_argument("--since", help="first day, YYYY-MM-DD (the key's date, else LastModified)")
    backfill.add_argument("--until", help="last day, YYYY-MM-DD, included")
    backfill.add_argument("--workers", type=int, default=4, help="objects forwarded at once")
    backfill.add_argument("--state", help="checkpoint file (default .forwarder-backfill-<hash>.json)")
    backfill.add_argument("--progress-every", type=float, default=10.0, help="seconds between lines off a TTY")

    args = parser.parse_args(argv)
    from forwarder.errors import ForwarderError

    try:
        if args.command == "intake":
            return _intake(args)
        if args.command == "check":
            return _check(args.validate_url)
        if args.command == "run":
            return _forward_one(args.target, args.as_object, args.dry_run)
        if args.command == "replay":
            _check_store()
            return _run({"retry": True}, args.timeout)
        if args.command == "redrive":
            return _redrive(args.queue_url, args.max_messages, args.timeout)
        if args.command == "backfill":
            return _backfill(args)
        return _run(_event(args.event), args.timeout)
    except (ForwarderError, CommandError) as exc:
        print(f"forwarder {args.command}: {exc}", file=sys.stderr)
        return 1


class CommandError(Exception):
    """What the operator asked for cannot be done; the message says why, in one line."""


def _event(path: str) -> dict[str, object]:
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


def _redrive(queue_url: str, limit: int, timeout: float) -> int:
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


def _check(validate_url: str | None) -> int:
    """Settings, then the key, then the intake's verdict on the key; the exit status says which failed."""
    import requests

    from forwarder.settings import load_settings

    settings = load_settings()
    api_key = settings.resolve_api_key()
    url = validate_url or key_validation_url(settings)
    where = f"DD_SITE={settings.site}" if not settings.url else f"DD_URL={settings.url}"
    try:
        response = requests.get(url, headers={"DD-API-KEY": api_key}, timeout=settings.http_timeout_seconds)
    except requests.RequestException as exc:
        raise CommandError(f"could not reach {url}: {type(exc).__name__}") from None
    if response.status_code == 200:
        print(f"forwarder check: the API key is valid for {url} ({where}); logs go to {settings.intake_url}")
        return 0
    if response.status_code == 403:
        raise CommandError(
            f"the API key was refused (403) by {url}, tried against {where}: "
            "a key works only on the Datadog site it was created on; set DD_SITE to that site"
        )
    if response.status_code == 404:
        raise CommandError(
            f"{url} has no key validation endpoint (404); give --validate-url https://api.<site>{VALIDATE_PATH}"
        )
    raise CommandError(f"unexpected answer {response.status_code} from {url}")


def key_validation_url(settings: Settings) -> str:
    """The site's API host, or, with DD_URL, the intake's own host: a proxy or compatible intake."""
    if not settings.url:
        return f"https://api.{settings.site}{VALIDATE_PATH}"
    parts = urlsplit(settings.intake_url)
    return f"{parts.scheme}://{parts.netloc}{VALIDATE_PATH}"


def _forward_one(target: str, as_object: str | None, dry_run: bool) -> int:
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


def _backfill(args: argparse.Namespace) -> int:
    """Forward a prefix (forwarder/backfill.py); 1 when any object failed, naming each."""
    from forwarder.backfill import Backfill, Window, parse_day, split_prefix
    from forwarder.settings import load_settings

    bucket, prefix = split_prefix(args.prefix, CommandError)
    try:
        window = Window(parse_day(args.since) if args.since else None, parse_day(args.until) if args.until else None)
    except ValueError as exc:
        raise CommandError(f"--since/--until take YYYY-MM-DD: {exc}") from None
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    state = Path(args.state) if args.state else None
    from botocore.exceptions import BotoCoreError, ClientError

    job = Backfill(load_settings(), bucket, prefix, window, args.workers, state, progress_every=args.progress_every)
    try:
        report = job.run()
    except (BotoCoreError, ClientError) as exc:  # the listing: objects' own failures are in the report
        raise CommandError(f"cannot list {args.prefix}: {exc}") from None
    print(report.summary(), file=sys.stderr)
    return 1 if report.failed or report.interrupted else 0


def _intake(args: argparse.Namespace) -> int:
    from forwarder.devintake import serve

    if not args.api_key:
        print("forwarder intake: give --api-key or set DD_API_KEY", file=sys.stderr)
        return 2
    serve(args.host, args.port, args.api_key, args.out)
    return 0


def _run(event: dict[str, object], timeout: float) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
