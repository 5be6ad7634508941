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

This module parses the arguments and runs the commands that check or serve; `run_command` forwards
one object, `handler_commands` runs the handler (`invoke`, `replay`, `redrive`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from forwarder.settings import Settings

VALIDATE_PATH = "/api/v1/validate"
"""Datadog's API key validation endpoint, on the site's API host (api.<DD_SITE>)."""


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
    args = _parser().parse_args(argv)
    from forwarder.errors import ForwarderError

    try:
        return _command(args)
    except (ForwarderError, CommandError) as exc:
        print(f"forwarder {args.command}: {exc}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace) -> int:
    """Run the command; each command's module is imported only when it runs."""
    if args.command == "intake":
        return _intake(args)
    if args.command == "check":
        return _check(args.validate_url)
    if args.command == "run":
        from forwarder.run_command import forward_one

        return forward_one(args.target, args.as_object, args.dry_run)
    if args.command == "backfill":
        return _backfill(args)
    from forwarder import handler_commands

    if args.command == "replay":
        return handler_commands.replay(args.timeout)
    if args.command == "redrive":
        return handler_commands.redrive(args.queue_url, args.max_messages, args.timeout)
    return handler_commands.invoke(args.event, args.timeout)


def _parser() -> argparse.ArgumentParser:
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

    return parser


class CommandError(Exception):
    """What the operator asked for cannot be done; the message says why, in one line."""


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


if __name__ == "__main__":  # `python -m forwarder.cli`: the command modules import `forwarder.cli`, so run
    from forwarder.cli import main as imported_main  # its `main`, whose CommandError is the one they raise

    sys.exit(imported_main())
