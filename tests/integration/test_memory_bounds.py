"""Memory stays bounded whatever the input: each hostile object is forwarded in a fresh process, and
its peak RSS is measured over the warm baseline: the RSS after a first ordinary object, from which
the peak is counted again.

On the default 512 MB function, each of these was an out-of-memory kill: no summary, no error naming
the object, the SQS batch redelivered whole, the object failing forever. The bound is about 150 MB
over the warm baseline, independent of the input's size.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from bench.fixtures import s3_event
from forwarder.devintake import LocalIntake

from .helpers import API_KEY, put

BOUND_MB = 150
BUCKET = "memory-bounds"
WARM_KEY = "warm/ordinary.ndjson"

_CHILD = textwrap.dedent(
    """
    import gc, json, sys
    from forwarder.cli import LocalContext
    from forwarder.errors import IncompleteInvocation
    from forwarder.handler import handle
    from forwarder.metrics import Tally
    from forwarder.settings import Settings

    def kilobytes(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field))

    url, warm, event = json.loads(sys.argv[1])
    settings = Settings.from_env({"DD_URL": url, "DD_API_KEY": sys.argv[2], "AWS_REGION": "us-east-1"})
    context = lambda: LocalContext(timeout_seconds=120)
    handle(warm, context(), settings)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak starts again from here (Linux): the warm-up's own peak is not the baseline
    base = kilobytes("VmRSS:")
    tally = Tally()
    try:
        handle(event, context(), settings, tally)
    except IncompleteInvocation:
        pass
    peak = kilobytes("VmHWM:")
    print(json.dumps({"grew_mb": (peak - base) / 1024, "summary": tally.summary(), "problems": tally.problems}))
    """
)


def forward_in_a_fresh_process(intake: LocalIntake, key: str) -> dict[str, Any]:
    args = json.dumps([intake.url, s3_event(BUCKET, WARM_KEY), s3_event(BUCKET, key)])
    run = subprocess.run([sys.executable, "-c", _CHILD, args, API_KEY], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    out = os.environ.get("MEMORY_BOUNDS_OUT")  # how docs/reliability.md's memory table is measured
    if out:
        with open(out, "a") as table:
            table.write(json.dumps({"key": key, "grew_mb": round(result["grew_mb"], 1), **result["summary"]}) + "\n")
    return result


def gzipped(*parts: bytes) -> bytes:
    """One gzip member of `parts` written one after another, so no input is ever whole in memory."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as member:
        for part in parts:
            member.write(part)
    return out.getvalue()


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket=BUCKET)
    put(s3, BUCKET, WARM_KEY, b'{"n":1}\n{"n":2}\n')
    return BUCKET


def empty_lists(megabytes: int) -> bytes:
    return b"[]," * (megabytes * 1_000_000 // 3)


@pytest.mark.parametrize(("megabytes", "outcome"), [(15, "events_truncated"), (30, "input_errors")])
def test_a_line_of_nested_lists_is_never_parsed_whole(
    s3: Any, intake: LocalIntake, bucket: str, megabytes: int, outcome: str
) -> None:
    """Under the per-event cap it is truncated without being parsed for its time; over it, refused."""
    key = f"lists-{megabytes}.ndjson.gz"
    put(s3, bucket, key, gzipped(b'{"a":[', empty_lists(megabytes), b"[]]}\n"), compress=False)
    result = forward_in_a_fresh_process(intake, key)
    assert result["summary"][outcome] == 1, result
    assert result["grew_mb"] < BOUND_MB, result


@pytest.mark.parametrize(("megabytes", "outcome"), [(15, "events_truncated"), (30, "input_errors")])
def test_a_cloudtrail_record_of_nested_lists_is_never_parsed_whole(
    s3: Any, intake: LocalIntake, bucket: str, megabytes: int, outcome: str
) -> None:
    """It was parsed twice, to check it and to truncate it: now its values are never built."""
    key = f"AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/04/lists-{megabytes}.json.gz"
    record = (b'{"Records":[{"eventVersion":"1.08","eventName":"PutObject","a":[', empty_lists(megabytes), b"[]]}]}")
    put(s3, bucket, key, gzipped(*record), compress=False)
    result = forward_in_a_fresh_process(intake, key)
    assert result["summary"][outcome] == 1, result
    assert result["grew_mb"] < BOUND_MB, result


def test_a_60_mb_line_of_invalid_utf8_is_truncated_within_the_bound(s3: Any, intake: LocalIntake, bucket: str) -> None:
    put(s3, bucket, "ff.log.gz", gzipped(*([b"\xff" * 1_000_000] * 60), b"\n"), compress=False)
    result = forward_in_a_fresh_process(intake, "ff.log.gz")
    summary = result["summary"]
    assert summary["events_truncated"] + summary["input_errors"] >= 1, result
    assert result["grew_mb"] < BOUND_MB, result


def test_a_200_mb_record_is_refused_within_the_bound_naming_it(s3: Any, intake: LocalIntake, bucket: str) -> None:
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/04/huge.json.gz"
    body = gzipped(b'{"Records":[{"eventVersion":"1.08","x":"', *([b"a" * 1_000_000] * 200), b'"}]}')
    put(s3, bucket, key, body, compress=False)
    result = forward_in_a_fresh_process(intake, key)
    assert result["summary"]["input_errors"] == 1, result
    assert any("record 0" in problem and key in problem for problem in result["problems"]), result
    assert result["grew_mb"] < BOUND_MB, result


def test_a_million_empty_gzip_members_between_two_records_keep_memory_flat(
    s3: Any, intake: LocalIntake, bucket: str
) -> None:
    empty = gzip.compress(b"", mtime=0)
    body = gzip.compress(b'{"n":"first"}\n', mtime=0) + empty * 1_000_000 + gzip.compress(b'{"n":"last"}\n', mtime=0)
    put(s3, bucket, "members.ndjson.gz", body, compress=False)
    result = forward_in_a_fresh_process(intake, "members.ndjson.gz")
    assert result["summary"]["events_delivered"] == 2, result
    assert result["grew_mb"] < 20, result
