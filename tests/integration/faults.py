"""Shared parts of the fault matrix (test_faults.py): inputs, accounting by `forwarder.id`, measurements.

Accounting: every input event is identified by the id the forwarder puts on it (`forwarder.id`:
CloudTrail's eventID; for text lines the documented bucket/key/ETag/position hash). After a fault,
each input id must be accepted by the intake, kept in the failure store, or reported failed: its
object or message failed the invocation (IncompleteInvocation, or a batchItemFailure), so AWS sends it
again. Anything else is lost. An id the intake accepted more than once is a duplicate.

Each test records one `Row` per matrix row; with FAULT_MATRIX_OUT=<path> set, the module writes the
measured table there when it finishes (that is how docs/reliability-matrix.md is produced).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from botocore.response import StreamingBody

from forwarder.metrics import Tally
from forwarder.model import S3Object

from .helpers import ACCOUNT

STORE_PREFIX = "failed-events/"
_ORIGIN = re.compile(r"s3://faults-[0-9a-f]+/[^\s:]+")  # the test's bucket and key, shortened in the table


def records(tag: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` CloudTrail records shaped as a trail writes them, with unique eventIDs `<tag>-<n>`."""
    return [
        {
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "AssumedRole",
                "principalId": "AROAEXAMPLE:session",
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/reader/session",
                "accountId": ACCOUNT,
            },
            "eventTime": f"2024-12-04T12:{(n // 60) % 60:02d}:{n % 60:02d}Z",
            "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.7",
            "userAgent": "aws-cli/2.15.0",
            "requestParameters": {"bucketName": "data", "key": f"reports/{n:06d}.csv"},
            "responseElements": None,
            "requestID": f"REQ{n:013d}",
            "eventID": f"{tag}-{n:06d}",
            "readOnly": True,
            "eventType": "AwsApiCall",
            "managementEvent": False,
            "recipientAccountId": ACCOUNT,
        }
        for n in range(start, start + count)
    ]


def trail(recs: Iterable[dict[str, Any]]) -> bytes:
    """A CloudTrail log file's content (uncompressed)."""
    return orjson.dumps({"Records": list(recs)})


def event_ids(recs: Iterable[dict[str, Any]]) -> set[str]:
    return {str(record["eventID"]) for record in recs}


def trail_ids(bucket: str, key: str, recs: list[dict[str, Any]]) -> set[str]:
    """The ids of a trail file's records: the eventID, else bucket, key, ETag and record index."""
    base = S3Object(bucket=bucket, key=key).id_base
    return {
        str(record.get("eventID") or hashlib.blake2b(f"{base}@{index}".encode(), digest_size=16).hexdigest())
        for index, record in enumerate(recs)
    }


def line_ids(bucket: str, key: str, lines: list[str]) -> set[str]:
    """The ids of an object's non-blank text lines: bucket, key, ETag (none in these notifications), line."""
    base = S3Object(bucket=bucket, key=key).id_base
    return {
        hashlib.blake2b(f"{base}@{number}".encode(), digest_size=16).hexdigest()
        for number, line in enumerate(lines, 1)
        if line.strip()
    }


def received_ids(intake: Any) -> Counter[str]:
    return Counter(str(entry["forwarder"]["id"]) for entry in intake.entries)


def stored_objects(s3: Any, bucket: str) -> dict[str, list[dict[str, Any]]]:
    """The failure store's objects in `bucket`, each as its list of entries."""
    objects: dict[str, list[dict[str, Any]]] = {}
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=STORE_PREFIX)
    for item in listing.get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        document = orjson.loads(gzip.decompress(body))
        objects[item["Key"]] = document["entries"]
    return objects


def stored_ids(s3: Any, bucket: str) -> Counter[str]:
    return Counter(
        str(entry["forwarder"]["id"]) for entries in stored_objects(s3, bucket).values() for entry in entries
    )


@dataclass
class Accounting:
    """Where each input id ended up."""

    expected: set[str]
    delivered: Counter[str]
    stored: Counter[str] = field(default_factory=Counter)
    reported: set[str] = field(default_factory=set)  # ids of objects/messages the invocation reported failed

    @property
    def accepted(self) -> set[str]:
        return set(self.delivered) & self.expected

    @property
    def kept(self) -> set[str]:
        return (set(self.stored) & self.expected) - self.accepted

    @property
    def reported_failed(self) -> set[str]:
        return (self.reported & self.expected) - self.accepted - self.kept

    @property
    def lost(self) -> set[str]:
        return self.expected - self.accepted - self.kept - self.reported_failed

    @property
    def unknown(self) -> set[str]:
        """Ids that were never input: must stay empty (a corrupted record delivered as if valid)."""
        return (set(self.delivered) | set(self.stored)) - self.expected

    @property
    def duplicated(self) -> int:
        """Extra copies the intake accepted: a SIEM deduplicating on forwarder.id drops them."""
        return sum(count - 1 for count in self.delivered.values() if count > 1)

    @property
    def delivered_and_stored(self) -> int:
        """Ids both accepted and kept: a replay would send them again."""
        return len(set(self.delivered) & set(self.stored))

    def check(self) -> None:
        assert not self.lost, f"{len(self.lost)} events lost, e.g. {sorted(self.lost)[:3]}"
        assert not self.unknown, f"{len(self.unknown)} ids never input, e.g. {sorted(self.unknown)[:3]}"
        assert self.accepted | self.kept | self.reported_failed == self.expected


@dataclass
class Row:
    fault: str
    events_in: int
    delivered: int
    stored: int
    failed: int
    lost: int
    duplicated: int
    wall_seconds: float
    operator: str


ROWS: dict[str, Row] = {}


class Clock:
    """Wall time of the invocations a test makes, and each one's time against its own limit."""

    def __init__(self) -> None:
        self.total = 0.0
        self.runs: list[tuple[float, float]] = []  # (seconds taken, the invocation's timeout)

    def call(self, timeout: float, fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
        start = time.monotonic()
        try:
            return fn(), None
        except Exception as exc:
            return None, exc
        finally:
            taken = time.monotonic() - start
            self.total += taken
            self.runs.append((taken, timeout))


class S3Reads:
    """Every GetObject a boto3 S3 client makes while active: its Range header and the body bytes read.

    Used as a context manager around invocations, through botocore's event hooks on the forwarder's
    own client, so what is counted is what S3 actually served to the forwarder.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.gets: list[list[Any]] = []  # [Range or None, bytes read]

    def __enter__(self) -> S3Reads:
        events = self.client.meta.events
        events.register("before-parameter-build.s3.GetObject", self._request, unique_id="fault-matrix-s3-ranges")
        events.register("after-call.s3.GetObject", self._response, unique_id="fault-matrix-s3-bytes")
        return self

    def __exit__(self, *_: object) -> None:
        events = self.client.meta.events
        events.unregister("before-parameter-build.s3.GetObject", unique_id="fault-matrix-s3-ranges")
        events.unregister("after-call.s3.GetObject", unique_id="fault-matrix-s3-bytes")

    @property
    def total(self) -> int:
        return sum(read for _, read in self.gets)

    def _request(self, params: dict[str, Any], **_: Any) -> None:
        self.gets.append([params.get("Range"), 0])

    def _response(self, parsed: dict[str, Any], **_: Any) -> None:
        if isinstance(parsed.get("Body"), StreamingBody):
            parsed["Body"] = StreamingBody(_CountingBody(parsed["Body"], self.gets[-1]), parsed["ContentLength"])


class _CountingBody:
    def __init__(self, raw: Any, tally: list[Any]) -> None:
        self._raw = raw
        self._tally = tally

    def read(self, amt: int | None = None) -> bytes:
        data: bytes = self._raw.read(amt)
        self._tally[1] += len(data)
        return data

    def close(self) -> None:
        self._raw.close()


def warnings_seen(records: Iterable[logging.LogRecord]) -> str:
    """The forwarder's WARNING and ERROR log lines, by message, with how many times each appeared."""
    counts: Counter[tuple[str, str]] = Counter()
    for record in records:
        if record.levelno >= logging.WARNING and record.name.startswith(("security-log-forwarder", "forwarder")):
            message = record.msg if isinstance(record.msg, str) else str(record.msg)
            counts[(record.levelname, message)] += 1
    return "; ".join(f'{level} "{message}" x{count}' for (level, message), count in counts.items())


def metrics_seen(tally: Tally) -> str:
    parts = [f"Events{name.title()}={tally.total(name)}" for name in ("delivered", "truncated", "stored", "failed")]
    parts = [part for part in parts if not part.endswith("=0")]
    if tally.input_errors:
        parts.append(f"InputErrors={tally.input_errors}")
    if tally.skipped:
        parts.append("skipped " + ",".join(f"{reason}={count}" for reason, count in sorted(tally.skipped.items())))
    return " ".join(parts)


def record(
    name: str,
    fault: str,
    accounting: Accounting,
    clock: Clock,
    tally: Tally,
    logs: Iterable[logging.LogRecord] = (),
    error: BaseException | dict[str, Any] | None = None,
    note: str = "",
) -> Row:
    """Check the accounting and keep the row's figures for the measured table."""
    accounting.check()
    assert tally.balanced(), tally.summary()
    seen = []
    if isinstance(error, BaseException):
        text = _ORIGIN.sub("s3://BUCKET/KEY", str(error))
        seen.append(f"`{type(error).__name__}`: {text[:400]}{'…' if len(text) > 400 else ''}")
    elif isinstance(error, dict) and error.get("batchItemFailures"):
        seen.append(f"`batchItemFailures` x{len(error['batchItemFailures'])}")
    metrics = metrics_seen(tally)
    if metrics:
        seen.append(f"metrics {metrics}")
    logged = warnings_seen(logs)
    if logged:
        seen.append(f"logs {logged}")
    if note:
        seen.append(note)
    row = Row(
        fault=fault,
        events_in=len(accounting.expected),
        delivered=len(accounting.accepted),
        stored=len(accounting.kept),
        failed=len(accounting.reported_failed),
        lost=len(accounting.lost),
        duplicated=accounting.duplicated,
        wall_seconds=clock.total,
        operator="; ".join(seen).replace("|", "/").replace("\n", " "),
    )
    ROWS[name] = row
    return row


def write_matrix(path: Path, rows: dict[str, Row]) -> None:
    """The measured table as Markdown."""
    head = (
        "| # | fault | events in | delivered | stored | failed (reported) | lost | duplicated | wall time | "
        "what an operator sees |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = [
        f"| {index} | {row.fault} | {row.events_in} | {row.delivered} | {row.stored} | {row.failed} | {row.lost} | "
        f"{row.duplicated} | {row.wall_seconds:.2f} s | {row.operator} |"
        for index, row in enumerate(rows.values(), 1)
    ]
    path.write_text(head + "\n".join(lines) + "\n")
