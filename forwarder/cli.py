"""The `forwarder` command: run the local intake, invoke the handler, or replay stored failures.

    forwarder intake [--port 8080] [--api-key KEY] [--out received.ndjson]
    forwarder invoke events/s3-put.json [--timeout 300]
    forwarder replay [--timeout 900]

`invoke` reads settings from the environment exactly as the Lambda does (DD_URL, DD_API_KEY...),
and S3 through boto3's default chain, so AWS_ENDPOINT_URL points it at a local S3 such as moto.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson


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

    args = parser.parse_args(argv)
    if args.command == "intake":
        return _intake(args)
    if args.command == "replay":
        return _run({"retry": True}, args.timeout)
    with open(args.event, "rb") as event_file:
        return _run(orjson.loads(event_file.read()), args.timeout)


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
