"""`make demo`: the forwarder end to end on this machine, no AWS account needed.

Starts moto's S3 server and the local intake on 127.0.0.1, uploads the real CloudTrail fixture files
as a trail would, invokes the handler through S3, SQS, SNS and EventBridge notifications and an EKS
audit CloudWatch Logs subscription event, then prints what went in, what the intake received, and
one complete enriched event of each source, ending with "N events in, N delivered".
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from forwarder.devintake import LocalIntake
    from forwarder.metrics import Tally

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / ".demo"
API_KEY = "demo-api-key-00000000000000000000"
BUCKET = "demo-cloudtrail-bucket"


def main() -> int:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_LAMBDA_FUNCTION_NAME="security-log-forwarder-demo",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    from forwarder.devintake import LocalIntake

    OUT.mkdir(exist_ok=True)
    received_path = OUT / "received.ndjson"
    received_path.unlink(missing_ok=True)
    try:
        with LocalIntake(api_key=API_KEY, out_path=str(received_path)) as intake:
            print(f"moto S3 on http://{host}:{port}, local intake on {intake.url}\n")
            runs = run_demo(intake)
            report(runs, intake.entries, received_path)
    finally:
        moto.stop()
    return 0


def run_demo(intake: LocalIntake) -> list[tuple[str, Tally]]:
    """Upload the fixtures and invoke the handler once per trigger shape; (trigger, summary) pairs.

    Before the EventBridge invocation the intake is told to answer 503 twice, to show the retries.
    """
    import boto3

    from bench import fixtures
    from forwarder.handler import handle
    from forwarder.metrics import Tally
    from forwarder.settings import Settings
    from tests.integration import helpers

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    documents = fixtures.cloudtrail_documents()
    keys = []
    for name, document in documents.items():
        keys.append(fixtures.trail_key(name))
        helpers.put(s3, BUCKET, keys[-1], document)
    digest = helpers.FIXTURES / "cloudtrail" / "awsdocs_cloudtrail-digest_example.json"
    digest_key = f"AWSLogs/{helpers.ACCOUNT}/CloudTrail-Digest/us-east-1/2024/12/04/digest.json.gz"
    helpers.put(s3, BUCKET, digest_key, digest.read_bytes())

    settings = Settings.from_env({**os.environ, "DD_URL": intake.url, "DD_API_KEY": API_KEY, "DD_TAGS": "env:demo"})
    third = len(keys) // 3
    sns_message = orjson.dumps({"s3Bucket": BUCKET, "s3ObjectKey": keys[2 * third :]}).decode()
    events = [
        ("s3 notification", fixtures.s3_event(BUCKET, *keys[:third], digest_key)),
        (
            "sqs (s3 notification)",
            helpers.sqs_event(*(fixtures.s3_event(BUCKET, key) for key in keys[third : 2 * third])),
        ),
        ("eventbridge (after 2 x 503)", helpers.eventbridge_event(BUCKET, keys[2 * third])),
        ("sns (cloudtrail)", {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": sns_message}}]}),
        (
            "cloudwatch logs (eks audit)",
            helpers.awslogs_event(
                "/aws/eks/demo-cluster/cluster", "kube-apiserver-audit-0123456789abcdef", fixtures.k8s_audit_lines()
            ),
        ),
        (
            "cloudwatch logs (control)",
            helpers.awslogs_event("", "", ["CWL CONTROL MESSAGE: Checking health of destination"], "CONTROL_MESSAGE"),
        ),
        ("s3 test event", {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}),
    ]
    runs = []
    for trigger, event in events:
        if "503" in trigger:
            intake.script([503, 503])
        tally = Tally()
        started = time.perf_counter()
        handle(event, helpers.context(), settings, tally)
        print(f"  via {trigger:<28} {time.perf_counter() - started:5.2f} s  {summarise(tally)}")
        runs.append((trigger, tally))
    return runs


def summarise(tally: Tally) -> str:
    skipped = ", ".join(f"{reason} x{count}" for reason, count in tally.skipped.items())
    text = f"events in {tally.events_read:>4}, delivered {tally.total('delivered') + tally.total('truncated'):>4}"
    return text + (f", skipped: {skipped}" if skipped else "")


def report(runs: list[tuple[str, Tally]], entries: list[dict[str, Any]], received_path: Path) -> None:
    from forwarder.metrics import Tally

    total = Tally()
    for _, tally in runs:
        total.merge(tally)
    print(f"\nIn all: {summarise(total)}, failed {total.total('failed')}")
    print("\nWhat the intake received, by source and host:")
    counts = Counter((entry["ddsource"], entry["host"]) for entry in entries)
    for (source, host), count in sorted(counts.items()):
        print(f"  {source:<20} {host:<40} {count:>5}")
    print(f"  {'total':<61} {len(entries):>5}")
    for source, entry in sorted(samples(entries).items()):
        print(f"\nOne enriched {source} event as delivered, complete:")
        print(orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode())
    print(f"\nEvery entry received is in {received_path.relative_to(ROOT)}")
    delivered = total.total("delivered") + total.total("truncated")
    print(f"{total.events_read} events in, {delivered} delivered")


def samples(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The first entry the intake received of each source."""
    first: dict[str, dict[str, Any]] = {}
    for entry in entries:
        first.setdefault(entry["ddsource"], entry)
    return first


if __name__ == "__main__":
    sys.exit(main())
