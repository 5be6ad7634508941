"""The fault matrix: `handle` against the moto server and a local intake that misbehaves on purpose.

Each test drives one fault and checks the accounting by `forwarder.id` (see faults.py): every input
event accepted, stored for replay, or reported failed (its object or message failed, so AWS retries
it); nothing lost; duplicates counted; the tally balanced; and, where the input is bad, the error
names the object and the position. Run with FAULT_MATRIX_OUT=<file> to write the measured table.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import boto3
import orjson
import pytest
import urllib3.exceptions
from botocore.response import StreamingBody

from bench.fixtures import cloudtrail_documents, k8s_audit_lines, records_of, s3_event, trail_key
from forwarder import runtime
from forwarder.devintake import DROP, Fault, LocalIntake
from forwarder.errors import ConfigError, DeliveryError, IncompleteInvocation
from forwarder.handler import handle, lambda_handler
from forwarder.metrics import Tally
from forwarder.model import Checkpoint, S3Object
from forwarder.reliability import continuation
from forwarder.reliability.idempotency import identity
from forwarder.reliability.store import FailureStore
from tests.unit.test_intake import answering, dripping, serving

from .faults import (
    ROWS,
    Accounting,
    Clock,
    S3Reads,
    event_ids,
    line_ids,
    received_ids,
    record,
    records,
    stored_ids,
    stored_objects,
    trail,
    trail_ids,
    write_matrix,
)
from .helpers import (
    API_KEY,
    context,
    put,
    settings_for,
    sqs_event,
)

# Small retry budgets keep the file quick; the client's backoff base is 0.2 s.
MATRIX = {
    "FORWARDER_BATCH_MAX_ENTRIES": "100",
    "FORWARDER_MAX_ATTEMPTS": "3",
    "FORWARDER_HTTP_TIMEOUT_SECONDS": "2",
}


@pytest.fixture(scope="module", autouse=True)
def measured_table() -> Iterator[None]:
    yield
    out = os.environ.get("FAULT_MATRIX_OUT")
    if out:
        write_matrix(Path(out), ROWS)


def continuation_queue(moto_endpoint: str) -> tuple[Any, str]:
    """An SQS client and a fresh queue for continuation messages."""
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    return sqs, sqs.create_queue(QueueName=f"continuation-{uuid.uuid4().hex[:12]}")["QueueUrl"]


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket for the test's objects and its failure store."""
    name = f"faults-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def store_env(bucket: str) -> dict[str, str]:
    return {"DD_STORE_FAILED_EVENTS": "true", "DD_S3_BUCKET_NAME": bucket}


def invoke(
    clock: Clock, event: dict[str, Any], settings: Any, timeout: float = 60.0, tally: Tally | None = None
) -> tuple[Any, BaseException | None, Tally]:
    tally = Tally() if tally is None else tally
    result, error = clock.call(timeout, lambda: handle(event, context(timeout), settings, tally=tally))
    if error is not None and not isinstance(error, IncompleteInvocation):
        raise error
    return result, error, tally


def put_trail(s3: Any, bucket: str, name: str, recs: list[dict[str, Any]]) -> str:
    key = trail_key(name)
    put(s3, bucket, key, trail(recs))
    return key


def down_url() -> str:
    """The URL of an intake that is not there: connections are refused."""
    server = LocalIntake(api_key=API_KEY).start()
    url = server.url
    server.stop()
    return url


# --- 429, 5xx, 413 --------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["0.5", None], ids=["retry-after", "no-retry-after"])
def test_429_is_retried_and_everything_arrives_once(
    s3: Any, intake: LocalIntake, bucket: str, caplog: Any, retry_after: str | None
) -> None:
    keys, expected = [], set()
    for name, document in cloudtrail_documents().items():
        keys.append(trail_key(name))
        put(s3, bucket, keys[-1], document)
        expected |= trail_ids(bucket, keys[-1], records_of(document))
    intake.script([429, 429], retry_after=retry_after)
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, *keys), settings_for(intake.url, **MATRIX))

    assert error is None and result["events_delivered"] == len(expected)
    assert intake.rejected == 2
    if retry_after is not None:
        assert clock.total >= 0.5  # the intake's Retry-After was honoured
    accounting = Accounting(expected, received_ids(intake))
    assert accounting.duplicated == 0
    label = "with `Retry-After: 0.5`" if retry_after else "without `Retry-After` (jittered backoff)"
    record(f"429 {label}", f"2 x 429 {label}, then 202", accounting, clock, tally, caplog.records)


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
def test_5xx(s3: Any, intake: LocalIntake, bucket: str, caplog: Any, status: int, persistent: bool) -> None:
    recs = records(f"e{status}{int(persistent)}", 500)
    key = put_trail(s3, bucket, f"{status}-{persistent}", recs)
    env = {**MATRIX, **store_env(bucket)}
    if persistent:
        intake.script([status] * 1000)
        env["FORWARDER_MAX_ATTEMPTS"] = "2"
    else:
        intake.script([status] * 2)
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **env))

    assert error is None
    accounting = Accounting(event_ids(recs), received_ids(intake), stored_ids(s3, bucket))
    if persistent:  # every batch tried twice, then kept for replay; the invocation succeeds
        assert (result["events_stored"], result["events_delivered"], intake.requests) == (500, 0, 10)
        assert len(stored_objects(s3, bucket)) == 5
    else:
        assert result["events_delivered"] == 500 and intake.rejected == 2
        assert not accounting.stored
    assert accounting.duplicated == 0
    fault = f"{status}, {'every answer (retries exhausted, store on)' if persistent else '2 answers, then 202'}"
    record(f"{status} {'persistent' if persistent else 'transient'}", fault, accounting, clock, tally, caplog.records)


def test_413_is_not_retried_and_its_batch_is_stored(s3: Any, intake: LocalIntake, bucket: str, caplog: Any) -> None:
    recs = records("e413", 500)
    key = put_trail(s3, bucket, "413", recs)
    intake.script([413])
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **MATRIX, **store_env(bucket)))

    assert error is None and (result["events_delivered"], result["events_stored"]) == (400, 100)
    assert intake.requests == 5  # the rejected batch was not sent again
    stored = stored_objects(s3, bucket)
    assert len(stored) == 1
    (document,) = stored_failures(s3, bucket, stored)
    assert document["status"] == 413 and "not retried" in document["reason"]
    accounting = Accounting(event_ids(recs), received_ids(intake), stored_ids(s3, bucket))
    record("413", "413 on one request (store on)", accounting, clock, tally, caplog.records)


# --- slow answers, dropped connections, intake down -----------------------------------------------


def test_answer_slower_than_the_timeout_is_retried_and_may_duplicate(
    s3: Any, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    recs = records("slow", 500)
    key = put_trail(s3, bucket, "slow", recs)
    intake.script([Fault(delay_seconds=1.5)])  # accepted, but only after the client gave up
    clock = Clock()
    settings = settings_for(intake.url, **{**MATRIX, "FORWARDER_HTTP_TIMEOUT_SECONDS": "0.5"})

    result, error, tally = invoke(clock, s3_event(bucket, key), settings)

    assert error is None and result["events_delivered"] == 500
    assert intake.wait_for(600, timeout=5)  # the slow request lands too: one batch twice
    accounting = Accounting(event_ids(recs), received_ids(intake))
    assert accounting.duplicated == 100
    note = "the slow request was accepted after the client timed out: its batch arrived twice (same forwarder.id)"
    record("slow answer", "1 answer after 1.5 s, timeout 0.5 s", accounting, clock, tally, caplog.records, note=note)


def test_answers_always_slower_than_the_timeout_store_and_duplicate(
    s3: Any, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    recs = records("slowall", 500)
    key = put_trail(s3, bucket, "slow-all", recs)
    intake.script([Fault(delay_seconds=1.0)] * 10)
    clock = Clock()
    env = {**MATRIX, **store_env(bucket), "FORWARDER_HTTP_TIMEOUT_SECONDS": "0.3", "FORWARDER_MAX_ATTEMPTS": "2"}

    result, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **env))

    assert error is None and result["events_stored"] == 500
    assert intake.wait_for(1000, timeout=5)  # both attempts of every batch were accepted late
    accounting = Accounting(event_ids(recs), received_ids(intake), stored_ids(s3, bucket))
    assert accounting.delivered_and_stored == 500 and accounting.duplicated == 500
    note = "all 500 were accepted twice AND stored: a replay sends them a third time"
    record(
        "slow always", "every answer after 1 s, timeout 0.3 s, 2 attempts (store on)", accounting, clock, tally,
        caplog.records, note=note,
    )  # fmt: skip


def test_dropped_connections_are_retried(s3: Any, intake: LocalIntake, bucket: str, caplog: Any) -> None:
    recs = records("drop", 500)
    key = put_trail(s3, bucket, "drop", recs)
    intake.script([DROP, DROP, DROP])
    clock = Clock()

    result, error, tally = invoke(
        clock, s3_event(bucket, key), settings_for(intake.url, **{**MATRIX, "FORWARDER_MAX_ATTEMPTS": "4"})
    )

    assert error is None and result["events_delivered"] == 500 and intake.requests == 8
    accounting = Accounting(event_ids(recs), received_ids(intake))
    assert accounting.duplicated == 0
    record("dropped", "3 connections closed without an answer", accounting, clock, tally, caplog.records)


@pytest.mark.parametrize("mode", ["store", "no-store", "sqs-no-store"])
def test_intake_down_for_the_whole_invocation(s3: Any, bucket: str, caplog: Any, mode: str) -> None:
    first, second = records(f"down-{mode}-a", 300), records(f"down-{mode}-b", 200)
    keys = [put_trail(s3, bucket, f"down-{mode}-a", first), put_trail(s3, bucket, f"down-{mode}-b", second)]
    env = {**MATRIX, "FORWARDER_MAX_ATTEMPTS": "2"}
    if mode == "store":
        env.update(store_env(bucket))
    if mode == "sqs-no-store":
        event = sqs_event(s3_event(bucket, keys[0]), s3_event(bucket, keys[1]))
    else:
        event = s3_event(bucket, *keys)
    clock = Clock()

    result, error, tally = invoke(clock, event, settings_for(down_url(), **env))

    expected = event_ids(first) | event_ids(second)
    if mode == "store":
        assert error is None and result["events_stored"] == 500
        accounting = Accounting(expected, Counter(), stored_ids(s3, bucket))
        fault, outcome = "intake down (connection refused), store on", error
    elif mode == "no-store":
        assert isinstance(error, IncompleteInvocation) and "500 of 500 events not delivered" in str(error)
        assert tally.total("failed") == 500
        accounting = Accounting(expected, Counter(), reported=expected)
        fault, outcome = "intake down, store off (S3 notification)", error
    else:
        assert error is None and result == {
            "batchItemFailures": [{"itemIdentifier": "message-0"}, {"itemIdentifier": "message-1"}]
        }
        assert tally.total("failed") == 500
        accounting = Accounting(expected, Counter(), reported=expected)
        fault, outcome = "intake down, store off (SQS, 2 messages)", result
    record(f"down {mode}", fault, accounting, clock, tally, caplog.records, error=outcome)


def test_failure_store_unreachable_fails_the_invocation(s3: Any, bucket: str, caplog: Any) -> None:
    recs = records("nostore", 300)
    key = put_trail(s3, bucket, "store-missing", recs)
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    env = {**MATRIX, "FORWARDER_MAX_ATTEMPTS": "2", **store_env(missing)}
    clock = Clock()

    _, error, tally = invoke(clock, s3_event(bucket, key), settings_for(down_url(), **env))

    assert isinstance(error, IncompleteInvocation) and f"could not store 100 events in s3://{missing}/" in str(error)
    assert tally.total("failed") == 300 and tally.total("stored") == 0
    accounting = Accounting(event_ids(recs), Counter(), stored_ids(s3, bucket), reported=event_ids(recs))
    fault = "intake down and the failure store's bucket missing"
    record("store unreachable", fault, accounting, clock, tally, caplog.records, error=error)


# --- bad input --------------------------------------------------------------------------------------


def test_object_deleted_before_it_is_read(s3: Any, intake: LocalIntake, bucket: str, caplog: Any) -> None:
    recs = records("gone", 300)
    key = put_trail(s3, bucket, "gone", recs)
    s3.delete_object(Bucket=bucket, Key=key)
    clock = Clock()

    _, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **MATRIX))

    assert isinstance(error, IncompleteInvocation)
    assert f"s3://{bucket}/{key}" in str(error) and "NoSuchKey" in str(error) and "(at byte 0)" in str(error)
    assert tally.input_errors == 1 and tally.events_read == 0
    accounting = Accounting(event_ids(recs), received_ids(intake), reported=event_ids(recs))
    fault = "S3 `GetObject` → NoSuchKey (object deleted after the notification)"
    record("nosuchkey", fault, accounting, clock, tally, caplog.records, error=error)


class _BreaksAfter:
    """A raw HTTP body that fails like a reset connection after `limit` bytes."""

    def __init__(self, raw: Any, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def read(self, amt: int | None = None) -> bytes:
        if self._left <= 0:
            raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
        data: bytes = self._raw.read(self._left if amt is None else min(amt, self._left))
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._raw.close()


def test_get_object_failing_mid_stream(s3: Any, intake: LocalIntake, bucket: str, caplog: Any) -> None:
    recs = records("midstream", 3000)
    key = trail_key("midstream")
    body = gzip.compress(trail(recs))
    put(s3, bucket, key, body, compress=False)
    limit = len(body) * 2 // 5
    client = runtime.client("s3")
    broken: list[bool] = []

    def break_body(parsed: dict[str, Any], **_: Any) -> None:
        if not broken and isinstance(parsed.get("Body"), StreamingBody):
            broken.append(True)
            parsed["Body"] = StreamingBody(_BreaksAfter(parsed["Body"], limit), len(body))

    client.meta.events.register("after-call.s3.GetObject", break_body, unique_id="fault-matrix-break")
    settings = settings_for(intake.url, **{**MATRIX, "FORWARDER_READ_CHUNK_BYTES": "4096"})
    clock = Clock()
    try:
        _, error, tally = invoke(clock, s3_event(bucket, key), settings)
    finally:
        client.meta.events.unregister("after-call.s3.GetObject", unique_id="fault-matrix-break")

    assert broken and isinstance(error, IncompleteInvocation)
    assert f"s3://{bucket}/{key}" in str(error) and f"(at byte {limit})" in str(error)
    first = received_ids(intake)
    assert 0 < len(first) < 3000 and set(first) == {f"midstream-{n:06d}" for n in range(len(first))}
    reported = event_ids(recs)

    _, again, retry_tally = invoke(clock, s3_event(bucket, key), settings)  # AWS retries the invocation

    assert again is None
    tally.merge(retry_tally)
    accounting = Accounting(event_ids(recs), received_ids(intake), reported=reported)
    assert accounting.duplicated == len(first)
    note = f"first try delivered {len(first)} events before the break; the AWS retry sent the whole object"
    fault = f"S3 body reset after {limit} of {len(body)} bytes, then the AWS retry"
    record("midstream", fault, accounting, clock, tally, caplog.records, error=error, note=note)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip(s3: Any, intake: LocalIntake, bucket: str, caplog: Any, damage: str) -> None:
    recs = records(f"gz{damage}", 2000)
    key = trail_key(f"gzip-{damage}")
    body = gzip.compress(trail(recs))
    if damage == "truncated":
        bad = body[: len(body) * 3 // 5]
    else:
        middle = len(body) // 2
        bad = body[:middle] + b"\xff" * 8 + body[middle + 8 :]
    put(s3, bucket, key, bad, compress=False)
    clock = Clock()

    _, error, tally = invoke(
        clock, s3_event(bucket, key), settings_for(intake.url, **{**MATRIX, "FORWARDER_READ_CHUNK_BYTES": "4096"})
    )

    assert isinstance(error, IncompleteInvocation)
    text = str(error)
    assert f"s3://{bucket}/{key}" in text and re.search(r"\(at (compressed byte|record) \d+", text), text
    assert ("truncated gzip" if damage == "truncated" else "corrupt gzip") in text
    accounting = Accounting(event_ids(recs), received_ids(intake), reported=event_ids(recs))
    assert 0 < len(accounting.accepted) < 2000
    fault = "gzip cut at 60 %" if damage == "truncated" else "gzip with 8 bytes overwritten in the middle"
    record(f"gzip {damage}", fault, accounting, clock, tally, caplog.records, error=error)


def test_invalid_json_lines_are_delivered_as_text(s3: Any, intake: LocalIntake, bucket: str, caplog: Any) -> None:
    lines = k8s_audit_lines()
    garbage = ['{"kind":"Event","verb":', "not json at all", '{"unterminated": "string}', "\ufffd\ufffd binary"]
    for index, text in enumerate(garbage):
        lines.insert(10 + 7 * index, text)
    key = "eks-audit/mixed.jsonl.gz"
    raw = "\n".join(lines).encode().replace("\ufffd\ufffd".encode(), b"\xff\xfe") + b"\n"
    put(s3, bucket, key, raw)
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **MATRIX))

    assert error is None and result["events_delivered"] == len(lines)
    assert [entry["message"] for entry in intake.entries] == lines  # invalid UTF-8 replaced, never fatal
    accounting = Accounting(line_ids(bucket, key, lines), received_ids(intake))
    fault = f"NDJSON object with {len(garbage)} invalid JSON lines (one invalid UTF-8) among {len(lines)}"
    record("invalid lines", fault, accounting, clock, tally, caplog.records, note="delivered as text messages")


def test_invalid_cloudtrail_record_names_object_and_record(
    s3: Any, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    recs = records("badrec", 1000)
    parts = [orjson.dumps(rec) for rec in recs]
    parts[600] = b'{"eventVersion":"1.08","eventID":"badrec-000600",oops}'
    key = trail_key("bad-record")
    put(s3, bucket, key, b'{"Records":[' + b",".join(parts) + b"]}")
    clock = Clock()

    _, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **MATRIX))

    assert isinstance(error, IncompleteInvocation)
    assert f"s3://{bucket}/{key}" in str(error) and "record 600 (decompressed byte" in str(error)
    assert set(received_ids(intake)) == event_ids(recs[:600])  # every record before it delivered
    accounting = Accounting(event_ids(recs), received_ids(intake), reported=event_ids(recs))
    record("bad record", "CloudTrail file, record 600 of 1000 invalid", accounting, clock, tally, caplog.records, error)


def test_oversize_events_are_truncated_and_counted(s3: Any, intake: LocalIntake, bucket: str, caplog: Any) -> None:
    recs = records("big", 300)
    for index in (5, 150, 299):
        recs[index]["requestParameters"] = {"policy": "x" * 1_200_000}
    key = put_trail(s3, bucket, "oversize", recs)
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **MATRIX))

    assert error is None and (result["events_truncated"], result["events_delivered"]) == (3, 297)
    truncated = [entry for entry in intake.entries if entry["forwarder"].get("truncated")]
    assert {entry["forwarder"]["id"] for entry in truncated} == {"big-000005", "big-000150", "big-000299"}
    assert all(len(orjson.dumps(entry)) <= 1_000_000 for entry in intake.entries)
    accounting = Accounting(event_ids(recs), received_ids(intake))
    record("oversize", "3 records of 1.2 MB among 300", accounting, clock, tally, caplog.records)


# --- deadline ---------------------------------------------------------------------------------------

DEADLINE_TIMEOUT = 1.5
DEADLINE_ENV = {
    "FORWARDER_BATCH_MAX_ENTRIES": "100",
    "FORWARDER_HTTP_TIMEOUT_SECONDS": "0.4",
    "FORWARDER_DEADLINE_MARGIN_SECONDS": "0.3",
    "DD_MAX_WORKERS": "2",
}


@pytest.fixture
def slow_intake() -> Iterator[LocalIntake]:
    """An intake that answers in 0.1 s, for the tests that time real requests against a 0.4 s timeout.

    The test process's older objects (moto's state, the earlier tests') are set aside from the cyclic
    GC meanwhile: a full collection of them stopped every thread for up to 0.26 s, long enough for a
    request to miss its timeout now and then when the whole suite ran.
    """
    gc.collect()
    gc.freeze()
    try:
        with LocalIntake(api_key=API_KEY, delay_seconds=0.1) as server:
            yield server
    finally:
        gc.unfreeze()


def test_deadline_hands_the_rest_to_continuations(
    s3: Any, moto_endpoint: str, slow_intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    recs = records("cont", 4000)
    key = put_trail(s3, bucket, "continued", recs)
    sqs, queue = continuation_queue(moto_endpoint)
    settings = settings_for(slow_intake.url, **DEADLINE_ENV, FORWARDER_CONTINUATION_QUEUE_URL=queue)
    clock, tally = Clock(), Tally()

    result, error, _ = invoke(clock, s3_event(bucket, key), settings, DEADLINE_TIMEOUT, tally)
    assert error is None and result["skipped"] == {"continued_later": 1}
    bodies = drain_continuations(sqs, queue, clock, settings, tally)

    accounting = Accounting(event_ids(recs), received_ids(slow_intake))
    assert len(accounting.accepted) == 4000 and accounting.duplicated == 0
    invocations = len(clock.runs)
    assert invocations >= 2
    worst = max(taken / timeout for taken, timeout in clock.runs)
    assert worst < 1.0, clock.runs  # no invocation ran past its deadline
    # A trail file is one gzip member: each continuation starts over at byte 0 and drops the
    # decompressed bytes before its record instead of splitting and parsing the records before it.
    checkpoints = [body["checkpoint"] for body in bodies]
    assert all(c["offset"] == 0 and c["skip_bytes"] == c["decompressed"] > 0 for c in checkpoints), checkpoints
    assert [c["position"] for c in checkpoints] == [body["resume_at"] for body in bodies]
    note = (
        f"{invocations} invocations (1 S3 + {invocations - 1} continuations), each ≤ {worst:.0%} of its "
        f"{DEADLINE_TIMEOUT} s timeout; each continuation decompresses from byte 0 and drops the bytes before "
        'its checkpoint (single gzip member); logs "handed over to a continuation" (INFO)'
    )
    fault = f"object needing ~{invocations} x the {DEADLINE_TIMEOUT} s timeout (intake answers in 0.1 s), queue set"
    record("deadline continuation", fault, accounting, clock, tally, caplog.records, note=note)


def drain_continuations(
    sqs: Any, queue: str, clock: Clock, settings: Any, tally: Tally, failures: bool = False
) -> list[dict[str, Any]]:
    """Run every continuation message until the queue is empty; their bodies' continuation fields.

    Unless `failures`, each must succeed; a failed one is deleted too (as a DLQ would take it).
    """
    bodies = []
    for _ in range(30):
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(orjson.loads(message["Body"])[continuation.MESSAGE_KEY])
            answer, error, _ = invoke(clock, sqs_event(message["Body"]), settings, DEADLINE_TIMEOUT, tally)
            assert error is None and (failures or answer == {"batchItemFailures": []}), answer
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    pytest.fail("the continuations did not finish the object")


def audit_lines(count: int) -> list[str]:
    """EKS-audit-like JSON lines, each unique, with a blank line now and then."""
    lines = []
    for n in range(count):
        lines.append(
            orjson.dumps(
                {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": f"audit-{n:06d}", "verb": "get"}
            ).decode()
        )
        if n % 97 == 0:
            lines.append("")
    return lines


LINES_PER_MEMBER = 100


@pytest.mark.parametrize("encoding", ["gzip members", "uncompressed"])
def test_deadline_continuations_resume_with_a_ranged_get(
    s3: Any, moto_endpoint: str, slow_intake: LocalIntake, bucket: str, caplog: Any, encoding: str
) -> None:
    lines = audit_lines(5000)
    text = [("\n".join(lines[at : at + LINES_PER_MEMBER]) + "\n").encode() for at in range(0, len(lines), 100)]
    body = b"".join(gzip.compress(part) for part in text) if encoding == "gzip members" else b"".join(text)
    key = f"eks/audit/{encoding.replace(' ', '-')}.log"
    put(s3, bucket, key, body, compress=False)
    sqs, queue = continuation_queue(moto_endpoint)
    env = {**DEADLINE_ENV, "FORWARDER_READ_CHUNK_BYTES": "4096", "FORWARDER_CONTINUATION_QUEUE_URL": queue}
    settings = settings_for(slow_intake.url, **env)
    clock, tally = Clock(), Tally()

    with S3Reads(runtime.client("s3")) as reads:
        result, error, _ = invoke(clock, s3_event(bucket, key), settings, DEADLINE_TIMEOUT, tally)
        assert error is None and result["skipped"] == {"continued_later": 1}
        bodies = drain_continuations(sqs, queue, clock, settings, tally)

    accounting = Accounting(line_ids(bucket, key, lines), received_ids(slow_intake))
    assert len(accounting.accepted) == len(accounting.expected) and accounting.duplicated == 0
    invocations = len(clock.runs)
    assert invocations >= 3 and max(taken / timeout for taken, timeout in clock.runs) < 1.0, clock.runs
    offsets = [body["checkpoint"]["offset"] for body in bodies]
    assert [get[0] for get in reads.gets] == [None] + [f"bytes={offset}-" for offset in offsets]
    if encoding == "gzip members":  # each continuation starts at the member holding its next line
        starts = {sum(len(gzip.compress(part)) for part in text[:index]) for index in range(len(text))}
        assert set(offsets) <= starts and all(body["checkpoint"]["skip_bytes"] > 0 for body in bodies)
    else:  # at the exact byte where the next line starts
        assert all(body["checkpoint"]["skip_bytes"] == 0 for body in bodies)
        assert all(body[offset - 1 : offset] == b"\n" for offset in offsets)
    # Read-ahead (4 KiB chunks, the batches in flight) and one member per continuation are read twice.
    assert reads.total < 1.5 * len(body), (reads.total, len(body))
    rereading = len(body) + sum(offsets)  # the least a continuation starting over would have read
    note = (
        f"{invocations} invocations; S3 served {reads.total / 1000:.0f} kB for the {len(body) / 1000:.0f} kB object "
        f"over {len(reads.gets)} GETs, {len(reads.gets) - 1} of them ranged (starting over each time: "
        f"≥ {rereading / 1000:.0f} kB); no event read twice"
    )
    fault = f"{encoding} EKS audit lines needing ~{invocations} x the {DEADLINE_TIMEOUT} s timeout, queue set"
    record(f"deadline ranged {encoding}", fault, accounting, clock, tally, caplog.records, note=note)


def test_continuation_of_a_replaced_object_fails_its_message_clearly(
    s3: Any, moto_endpoint: str, slow_intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    lines = audit_lines(3000)
    key = "eks/audit/replaced.log"
    put(s3, bucket, key, ("\n".join(lines) + "\n").encode(), compress=False)
    sqs, queue = continuation_queue(moto_endpoint)
    settings = settings_for(slow_intake.url, **DEADLINE_ENV, FORWARDER_CONTINUATION_QUEUE_URL=queue)
    clock, tally = Clock(), Tally()

    result, error, _ = invoke(clock, s3_event(bucket, key), settings, DEADLINE_TIMEOUT, tally)
    assert error is None and result["skipped"] == {"continued_later": 1}
    handled = tally.total("delivered")
    put(s3, bucket, key, b'{"kind":"Event","auditID":"the-new-object"}\n', compress=False)  # its own notification
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"]
    answer, error, _ = invoke(clock, sqs_event(messages[0]["Body"]), settings, DEADLINE_TIMEOUT, tally)

    assert error is None and answer == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}
    problem = next(line for line in tally.problems if "replaced" in line)
    assert problem.startswith(f"s3://{bucket}/{key}: the object was replaced since an earlier invocation read it")
    assert re.search(r"\(at byte [1-9]\d*\)$", problem), problem
    expected = line_ids(bucket, key, lines)
    accounting = Accounting(expected, received_ids(slow_intake), reported=expected)
    assert len(accounting.accepted) == handled and accounting.duplicated == 0
    note = (
        "the continuation reads with IfMatch on the ETag the first invocation read; S3 answers 412 and the "
        "message fails (to the DLQ after its retries): `s3://BUCKET/KEY: the object was replaced since an earlier "
        "invocation read it … (at byte N)`; the events left were in the old object only"
    )
    fault = "object overwritten between an invocation and its continuation"
    record("continuation replaced object", fault, accounting, clock, tally, caplog.records, error=answer, note=note)


def test_deadline_without_a_queue_fails_before_the_deadline(
    s3: Any, slow_intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    recs = records("noqueue", 4000)
    key = put_trail(s3, bucket, "no-queue", recs)
    clock = Clock()

    _, error, tally = invoke(
        clock, s3_event(bucket, key), settings_for(slow_intake.url, **DEADLINE_ENV), DEADLINE_TIMEOUT
    )

    assert isinstance(error, IncompleteInvocation)
    found = re.search(rf"deadline reached in s3://{bucket}/{re.escape(key)} after (\d+) events", str(error))
    assert found and "FORWARDER_CONTINUATION_QUEUE_URL" in str(error), str(error)
    handled = int(found.group(1))
    assert set(received_ids(slow_intake)) == event_ids(recs[:handled]) and tally.total("delivered") == handled
    (taken, timeout), *_ = clock.runs
    assert taken < timeout
    accounting = Accounting(event_ids(recs), received_ids(slow_intake), reported=event_ids(recs))
    note = f"returned after {taken:.2f} s of its {timeout} s; the AWS retry starts the object over"
    fault = "the same object, no continuation queue"
    record("deadline no queue", fault, accounting, clock, tally, caplog.records, error=error, note=note)


def after_record(recs: list[dict[str, Any]], count: int) -> Checkpoint:
    """The checkpoint just past record `count - 1` of `trail(recs)` gzipped as one member."""
    end = len(b'{"Records":[') + sum(len(orjson.dumps(record)) for record in recs[:count]) + count - 1
    assert trail(recs)[end - 1 : end + 1] == b"},"
    return Checkpoint(0, end, end, count, "cloudtrail", "gzip")


class _SlowBody:
    """A raw HTTP body that arrives slowly: `delay` seconds per read."""

    def __init__(self, raw: Any, delay: float) -> None:
        self._raw = raw
        self._delay = delay

    def read(self, amt: int | None = None) -> bytes:
        time.sleep(self._delay)
        data: bytes = self._raw.read(amt)
        return data

    def close(self) -> None:
        self._raw.close()


def test_continuation_that_rereads_a_long_prefix_stays_within_its_deadline(
    s3: Any, moto_endpoint: str, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    recs = records("reread", 20000)
    key = put_trail(s3, bucket, "reread", recs)  # ~250 kB gzip; read at ~100 kB/s below: ~2.4 s
    _, queue = continuation_queue(moto_endpoint)
    env = {**DEADLINE_ENV, "FORWARDER_READ_CHUNK_BYTES": "4096", "FORWARDER_CONTINUATION_QUEUE_URL": queue}
    settings = settings_for(intake.url, **env)
    client = runtime.client("s3")

    def slow_body(parsed: dict[str, Any], **_: Any) -> None:
        if isinstance(parsed.get("Body"), StreamingBody):
            parsed["Body"] = StreamingBody(_SlowBody(parsed["Body"], 0.04), parsed["ContentLength"])

    client.meta.events.register("after-call.s3.GetObject", slow_body, unique_id="fault-matrix-slow")
    clock = Clock()
    try:
        checkpoint = after_record(recs, 19000)
        body = continuation.message_body(S3Object(bucket, key), resume_at=19000, checkpoint=checkpoint)
        answer, _, tally = invoke(clock, sqs_event(body), settings, DEADLINE_TIMEOUT)
    finally:
        client.meta.events.unregister("after-call.s3.GetObject", unique_id="fault-matrix-slow")

    (taken, timeout), *_ = clock.runs
    rest = event_ids(recs[19000:])
    accounting = Accounting(rest, received_ids(intake), reported=rest)  # what was not sent is in the next message
    problem = next(line for line in tally.problems if "deadline came" in line)
    reached = "decompressed byte"
    assert problem.startswith(f"s3://{bucket}/{key}: ") and f"(at {reached} " in problem, problem
    note = (
        f"the continuation stopped after {taken:.2f} s of its {timeout} s timeout and failed its message, "
        f"naming the object and the {reached} reached; re-reading the start of an object is bounded by the timeout"
    )
    how = f"checkpoint at offset 0 dropping {checkpoint.skip_bytes / 1e6:.1f} MB decompressed"
    fault = f"continuation at event 19000 of 20000, {how}, S3 read ~100 kB/s (re-reading the start takes ~2.4 s)"
    record("reread prefix, checkpoint", fault, accounting, clock, tally, caplog.records, error=answer, note=note)
    assert taken < timeout, f"the continuation took {taken:.2f} s of its {timeout} s"


# --- replay -----------------------------------------------------------------------------------------


def test_replay_while_the_intake_fails_again(s3: Any, intake: LocalIntake, bucket: str, caplog: Any) -> None:
    recs = records("replay", 600)
    key = put_trail(s3, bucket, "replay", recs)
    expected = event_ids(recs)
    base = {**store_env(bucket), "FORWARDER_MAX_ATTEMPTS": "1", "DD_MAX_WORKERS": "1"}
    clock = Clock()

    intake.script([503] * 6)  # the first run fails all six batches of 100: six stored objects
    result, error, _ = invoke(
        clock, s3_event(bucket, key), settings_for(intake.url, **base, FORWARDER_BATCH_MAX_ENTRIES="100")
    )
    assert error is None and result["events_stored"] == 600 and len(stored_objects(s3, bucket)) == 6
    replay_settings = settings_for(intake.url, **base, FORWARDER_BATCH_MAX_ENTRIES="50")  # 2 requests per object

    def phase(
        name: str, fault: str, faults: list[int | Fault], event: dict[str, Any]
    ) -> tuple[Accounting, dict[str, Any]]:
        before, stored_before = received_ids(intake), stored_ids(s3, bucket)
        intake.script(faults)
        phase_clock = Clock()
        caplog.clear()
        summary, error, tally = invoke(phase_clock, event, replay_settings)
        assert error is None
        accounting = Accounting(set(stored_before), received_ids(intake) - before, stored_ids(s3, bucket))
        assert set(received_ids(intake)) | set(stored_ids(s3, bucket)) == expected  # none lost, overall
        assert accounting.delivered_and_stored == 0 and max(received_ids(intake).values()) == 1
        record(name, fault, accounting, phase_clock, tally, caplog.records)
        return accounting, summary

    # Partly failing: objects in key order; per object two requests. Object 1 half fails (rewritten),
    # object 3 fails whole (kept as it was), the other four go through (deleted).
    ok = Fault()
    _, summary = phase(
        "replay partly failing", "replay of 6 stored batches, 3 of 12 requests answered 503",
        [503, ok, ok, ok, 503, 503], {"retry": True},
    )  # fmt: skip
    assert (summary["events_delivered"], summary["events_stored"]) == (450, 150)
    assert sorted(len(entries) for entries in stored_objects(s3, bucket).values()) == [50, 100]

    down, summary = phase("replay intake down", "replay of the 2 kept objects, every request 503", [503] * 3,
                          {"retry": "true"})  # fmt: skip
    assert (summary["events_delivered"], summary["events_stored"]) == (0, 150) and len(down.kept) == 150

    _, summary = phase("replay healthy", "replay with a healthy intake", [], {"retry": True})
    assert summary["events_delivered"] == 150 and stored_objects(s3, bucket) == {}
    assert set(received_ids(intake)) == expected


# --- the same notification twice, crashed invocations -----------------------------------------------


def idempotency_table(moto_endpoint: str) -> str:
    name = f"idempotency-{uuid.uuid4().hex[:12]}"
    boto3.client("dynamodb", endpoint_url=moto_endpoint).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.mark.parametrize("with_table", [True, False], ids=["idempotency-table", "no-table"])
def test_same_notification_twice(
    s3: Any, moto_endpoint: str, intake: LocalIntake, bucket: str, caplog: Any, with_table: bool
) -> None:
    recs = records(f"twice{int(with_table)}", 500)
    key = put_trail(s3, bucket, f"twice-{with_table}", recs)
    env = dict(MATRIX)
    if with_table:
        env["FORWARDER_IDEMPOTENCY_TABLE"] = idempotency_table(moto_endpoint)
    settings = settings_for(intake.url, **env)
    clock, tally = Clock(), Tally()

    _, error, _ = invoke(clock, s3_event(bucket, key), settings, tally=tally)
    assert error is None
    second, error, _ = invoke(clock, s3_event(bucket, key), settings, tally=Tally())
    assert error is None

    accounting = Accounting(event_ids(recs), received_ids(intake))
    if with_table:
        assert second["skipped"] == {"duplicate_notification": 1} and second["events_read"] == 0
        assert accounting.duplicated == 0
    else:
        assert second["events_delivered"] == 500 and accounting.duplicated == 500
    label = "with FORWARDER_IDEMPOTENCY_TABLE" if with_table else "without an idempotency table"
    note = 'second: skipped "duplicate_notification" (INFO "skipped")' if with_table else "forwarded twice"
    record(f"twice {with_table}", f"same S3 notification twice, {label}", accounting, clock, tally, caplog.records,
           note=note)  # fmt: skip


def test_notification_again_after_a_failed_attempt_is_forwarded(
    s3: Any, moto_endpoint: str, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    recs = records("refail", 500)
    key = put_trail(s3, bucket, "failed-then-retried", recs)
    env = {**MATRIX, "FORWARDER_MAX_ATTEMPTS": "1", "FORWARDER_IDEMPOTENCY_TABLE": idempotency_table(moto_endpoint)}
    settings = settings_for(intake.url, **env)
    intake.script([503])  # one batch of five fails, no store: the object fails
    clock, tally = Clock(), Tally()

    _, error, _ = invoke(clock, s3_event(bucket, key), settings, tally=tally)
    assert isinstance(error, IncompleteInvocation) and tally.total("failed") == 100
    first = received_ids(intake)
    result, again, retry_tally = invoke(clock, s3_event(bucket, key), settings)  # AWS's retry
    tally.merge(retry_tally)

    assert again is None and result["events_delivered"] == 500 and result["skipped"] == {}
    accounting = Accounting(event_ids(recs), received_ids(intake))
    assert accounting.duplicated == len(first) == 400
    note = "the failed attempt left no idempotency record, so the retry forwarded the whole object"
    fault = "1 batch of 5 answered 503 (no store, idempotency table), then the AWS retry"
    record("failed then retried", fault, accounting, clock, tally, caplog.records, error=error, note=note)


def test_in_progress_record_of_a_crashed_invocation_expires(
    s3: Any, moto_endpoint: str, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

    table = idempotency_table(moto_endpoint)
    recs = records("crash", 500)
    key = put_trail(s3, bucket, "crashed", recs)
    # What a crashed invocation leaves: the object's record "in progress", expiring when its time was up.
    layer = DynamoDBPersistenceLayer(table_name=table)
    layer.configure(IdempotencyConfig(), key_prefix="s3")
    layer.save_inprogress(identity(S3Object(bucket, key, sequencer=f"{0:016X}")), remaining_time_in_millis=1500)
    crashed_until = time.monotonic() + 1.5
    settings = settings_for(intake.url, **MATRIX, FORWARDER_IDEMPOTENCY_TABLE=table)
    clock, tally = Clock(), Tally()

    _, early, _ = invoke(clock, s3_event(bucket, key), settings, tally=tally)  # while it could still be running
    assert isinstance(early, IncompleteInvocation) and "being forwarded by another invocation" in str(early)
    assert f"s3://{bucket}/{key}" in str(early) and intake.entries == []
    time.sleep(max(0.0, crashed_until - time.monotonic()) + 0.1)
    result, late, _ = invoke(clock, s3_event(bucket, key), settings, tally=tally)  # AWS's next retry

    assert late is None and result["events_delivered"] == 500
    accounting = Accounting(event_ids(recs), received_ids(intake))
    assert accounting.duplicated == 0
    note = "refused while the crashed invocation's time ran (1.5 s), forwarded by the retry after it"
    fault = "in-progress idempotency record left by a crashed invocation"
    record("crashed in progress", fault, accounting, clock, tally, caplog.records, error=early, note=note)


def test_blank_lines_do_not_outrun_the_deadline(
    s3: Any, moto_endpoint: str, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    """Megabytes of blank lines produce no event, so a clock looked at every 256 events never came:
    the invocation ran far past its timeout. Each invocation now stops in time and hands over from
    the last line it passed, so the continuations make progress and every event arrives once."""
    lines = ['{"n":"first"}', *([""] * 12_000_000), '{"n":"last"}']
    key = "logs/blank-lines.ndjson.gz"
    put(s3, bucket, key, ("\n".join(lines) + "\n").encode())
    sqs, queue = continuation_queue(moto_endpoint)
    settings = settings_for(intake.url, **DEADLINE_ENV, FORWARDER_CONTINUATION_QUEUE_URL=queue)
    clock, tally = Clock(), Tally()

    result, error, _ = invoke(clock, s3_event(bucket, key), settings, DEADLINE_TIMEOUT, tally)
    assert error is None and result["skipped"] == {"continued_later": 1}, result
    drain_continuations(sqs, queue, clock, settings, tally)

    accounting = Accounting(line_ids(bucket, key, lines), received_ids(intake))
    assert len(accounting.accepted) == 2 and accounting.duplicated == 0
    assert all(taken < timeout for taken, timeout in clock.runs), clock.runs
    note = f"{len(clock.runs)} invocations, each within its {DEADLINE_TIMEOUT} s, handed over from the last line passed"
    record(
        "blank lines", "12 MB of blank lines between two events", accounting, clock, tally, caplog.records, note=note
    )


def test_a_timeout_shorter_than_the_http_timeout_still_makes_progress(
    s3: Any, moto_endpoint: str, slow_intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    """With a 1.5 s function and the default 10 s HTTP timeout, every invocation used to stop before
    reading anything and hand the same object on, forever. The margin scales with the budget."""
    recs = records("short", 3000)
    key = put_trail(s3, bucket, "short", recs)
    sqs, queue = continuation_queue(moto_endpoint)
    env = {**DEADLINE_ENV, "FORWARDER_HTTP_TIMEOUT_SECONDS": "10", "FORWARDER_CONTINUATION_QUEUE_URL": queue}
    settings = settings_for(slow_intake.url, **env)
    clock, tally = Clock(), Tally()

    result, error, _ = invoke(clock, s3_event(bucket, key), settings, DEADLINE_TIMEOUT, tally)
    assert error is None, error
    if result["skipped"]:
        drain_continuations(sqs, queue, clock, settings, tally)

    accounting = Accounting(event_ids(recs), received_ids(slow_intake))
    assert len(accounting.accepted) == 3000 and accounting.duplicated == 0
    assert all(taken < timeout for taken, timeout in clock.runs), clock.runs
    note = f"{len(clock.runs)} invocations; reading stops at half the budget when the HTTP timeout is longer"
    fault = f"function timeout {DEADLINE_TIMEOUT} s, FORWARDER_HTTP_TIMEOUT_SECONDS 10, queue set"
    record("short timeout", fault, accounting, clock, tally, caplog.records, note=note)


def test_slow_failure_store_writes_stop_at_the_deadline(s3: Any, bucket: str, caplog: Any) -> None:
    """Intake down and each failure-store write taking 0.5 s: batches were stored one after another
    with no look at the clock, past the function's timeout. A batch whose turn comes after the
    deadline is not stored: it fails, so AWS retries the object (a duplicate, never a loss)."""
    recs = records("slowstore", 1000)
    key = put_trail(s3, bucket, "slow-store", recs)
    env = {**DEADLINE_ENV, "FORWARDER_MAX_ATTEMPTS": "1", **store_env(bucket)}
    client = runtime.client("s3")

    def slow_put(**_: Any) -> None:
        time.sleep(0.5)

    client.meta.events.register("before-call.s3.PutObject", slow_put, unique_id="fault-matrix-slow-put")
    clock = Clock()
    try:
        _, error, tally = invoke(clock, s3_event(bucket, key), settings_for(down_url(), **env), DEADLINE_TIMEOUT)
    finally:
        client.meta.events.unregister("before-call.s3.PutObject", unique_id="fault-matrix-slow-put")

    (taken, timeout), *_ = clock.runs
    assert taken < timeout, f"storing took the invocation {taken:.2f} s past its {timeout} s"
    assert isinstance(error, IncompleteInvocation)
    assert tally.total("stored") + tally.total("failed") == tally.events_read and tally.total("failed") > 0
    stored = stored_ids(s3, bucket)
    failed = event_ids(recs) - set(stored)
    accounting = Accounting(event_ids(recs), Counter(), stored, reported=failed)
    fault = f"intake down, each failure-store write 0.5 s, {DEADLINE_TIMEOUT} s timeout"
    note = "batches whose turn came after the deadline are not stored: they fail and the invocation is retried"
    record("slow store", fault, accounting, clock, tally, caplog.records, error=error, note=note)


# --- hostile inputs and faults of issue 16 ----------------------------------------------------------


def test_a_digest_lookalike_audit_file_is_forwarded_whole(
    s3: Any, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    """An EKS audit file whose first event creates a ConfigMap with a CloudTrail digest's keys was
    taken for a digest file and skipped whole: the keys inside an event decide nothing."""
    lines = [line for line in audit_lines(500) if line]
    first = orjson.loads(lines[0])
    first["requestObject"] = {
        "kind": "ConfigMap",
        "metadata": {"name": "innocent", "namespace": "default"},
        "data": {"awsAccountId": "123456789012", "digestStartTime": "2024-12-04T11:00:00Z"},
    }
    lines[0] = orjson.dumps(first).decode()
    key = "eks/audit/2024/12/04/digest-lookalike.log.gz"
    put(s3, bucket, key, ("\n".join(lines) + "\n").encode())
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **MATRIX))

    assert error is None and result["skipped"] == {} and result["events_delivered"] == 500
    assert lines[0] in {entry["message"] for entry in intake.entries}
    accounting = Accounting(line_ids(bucket, key, lines), received_ids(intake))
    assert len(accounting.accepted) == 500 and accounting.duplicated == 0
    fault = "NDJSON EKS audit file whose first event holds a ConfigMap with `awsAccountId` and `digestStartTime` keys"
    note = "read as audit lines, not skipped as a CloudTrail digest file"
    record("digest lookalike", fault, accounting, clock, tally, caplog.records, note=note)


def test_records_behind_a_file_version_arrive_as_events(s3: Any, intake: LocalIntake, bucket: str, caplog: Any) -> None:
    """`{"fileVersion":"1.0","Records":[…]}` under a CloudTrail key: a key before `Records` once made
    the whole file one oversized message instead of 2000 events."""
    recs = records("fileversion", 2000)
    key = trail_key("file-version-first")
    put(s3, bucket, key, orjson.dumps({"fileVersion": "1.0", "Records": recs}))
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **MATRIX))

    assert error is None and (result["events_delivered"], result["events_truncated"]) == (2000, 0)
    assert all(entry["eventName"] == "GetObject" for entry in intake.entries)  # records, not one text message
    accounting = Accounting(event_ids(recs), received_ids(intake))
    assert len(accounting.accepted) == 2000 and accounting.duplicated == 0
    fault = '`{"fileVersion":"1.0","Records":[…]}` with 2000 records under a CloudTrail key'
    record("file version first", fault, accounting, clock, tally, caplog.records, note="each record its own event")


def test_a_record_whose_event_id_fills_the_entry_keeps_its_batch_valid(
    s3: Any, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    """A 1.1 MB `eventID` left no room in the entry: it came out empty, its batch `[…,,…]`, and the
    intake refused all 100. It is now cut and marked, its id hashed, and the batch goes through."""
    recs = records("hugeid", 299)
    huge_id = "i" * 1_100_000
    huge = {**records("hugeid", 1, start=299)[0], "eventID": huge_id}
    recs.insert(150, huge)
    key = put_trail(s3, bucket, "huge-event-id", recs)
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, key), settings_for(intake.url, **MATRIX))

    assert error is None and (result["events_delivered"], result["events_truncated"]) == (299, 1)
    assert intake.rejected == 0 and intake.requests == 3
    hashed = hashlib.blake2b(huge_id.encode(), digest_size=16).hexdigest()
    cut = [entry for entry in intake.entries if entry["forwarder"].get("truncated")]
    assert [entry["forwarder"]["id"] for entry in cut] == [hashed] and cut[0]["forwarder"]["id_hashed"] is True
    expected = (event_ids(recs) - {huge_id}) | {hashed}
    accounting = Accounting(expected, received_ids(intake))
    assert len(accounting.accepted) == 300 and accounting.duplicated == 0
    fault = "one record with a 1.1 MB `eventID` among 299"
    note = "the record cut and marked `forwarder.truncated`, its id hashed (`forwarder.id_hashed`); its batch accepted"
    record("huge event id", fault, accounting, clock, tally, caplog.records, note=note)


def recording() -> Any:
    """An intake handler that keeps each request body as it arrived (gunzipped) in its `bodies` and
    answers as Datadog does: the local intake parses what it receives, so it cannot show the bytes."""

    class Recording(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        bodies: ClassVar[list[bytes]] = []

        def do_POST(self) -> None:
            wire = self.rfile.read(int(self.headers["Content-Length"]))
            gzipped = self.headers.get("Content-Encoding", "") == "gzip"
            self.bodies.append(gzip.decompress(wire) if gzipped else wire)
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Recording


def test_a_stored_batch_is_replayed_byte_for_byte(s3: Any, bucket: str, caplog: Any) -> None:
    """Replay parsed the stored entries and wrote them again: 123456789012345678901234567890 became a
    float and 1E2 became 100.0. The stored bytes are now what the intake receives."""
    exact = [
        b'{"n":123456789012345678901234567890,"e":1E2,"forwarder":{"id":"exact-0"}}',
        b'{\n  "pretty": [1, 2], "z": -0.0,\n  "forwarder": {"id": "exact-1"}\n}',
        b'{"u":"caf\\u00e9","s":"},{\\"entries\\":[{","forwarder":{"id":"exact-2"}}',
    ]
    settings_env = store_env(bucket)
    handler = recording()
    clock = Clock()
    with serving(handler) as url:
        settings = settings_for(url, **MATRIX, **settings_env)
        FailureStore(runtime.client("s3"), bucket, settings.store_prefix).keep(exact, DeliveryError("refused", 503))
        result, error, tally = invoke(clock, {"retry": True}, settings)

    assert error is None and result["events_delivered"] == 3 and stored_objects(s3, bucket) == {}
    assert handler.bodies == [b"[" + b",".join(exact) + b"]"]
    delivered = Counter(str(entry["forwarder"]["id"]) for body in handler.bodies for entry in json.loads(body))
    accounting = Accounting({"exact-0", "exact-1", "exact-2"}, delivered, stored_ids(s3, bucket))
    fault = "stored batch holding `123456789012345678901234567890`, `1E2`, `-0.0`, an escaped é, pretty-printed JSON"
    note = "replayed byte for byte: the intake received exactly the stored bytes; the stored object deleted"
    record("replay exact", fault, accounting, clock, tally, caplog.records, note=note)


def test_a_url_answering_200_with_a_web_page_never_counts_as_delivered(s3: Any, bucket: str, caplog: Any) -> None:
    """DD_URL pointing at a web server that answers 200 and an HTML page: batches used to count as
    delivered and were gone. Only Datadog's own answer (202 and a JSON object) counts."""
    recs = records("html", 500)
    key = put_trail(s3, bucket, "html-answer", recs)
    page = b"<html><body>Welcome to nginx!</body></html>"
    handler = answering(200, page, "text/html")
    clock = Clock()
    with serving(handler) as url:
        settings = settings_for(url, **MATRIX, **store_env(bucket))
        result, error, tally = invoke(clock, s3_event(bucket, key), settings)

    assert error is None and (result["events_delivered"], result["events_stored"]) == (0, 500)
    assert handler.requests == 5  # not retried: the same page would come again
    stored = stored_objects(s3, bucket)
    failures = stored_failures(s3, bucket, stored)
    assert all("not the intake's success answer" in document["reason"] for document in failures)
    assert all(document["status"] == 200 and document["answer"] == page.decode() for document in failures)
    accounting = Accounting(event_ids(recs), Counter(), stored_ids(s3, bucket))
    fault = "`DD_URL` answering 200 with an HTML page (store on)"
    note = 'each batch stored with status 200, the page as its answer, reason "… not the intake\'s success answer …"'
    record("html 200", fault, accounting, clock, tally, caplog.records, note=note)


def stored_failures(s3: Any, bucket: str, stored: dict[str, Any]) -> list[dict[str, Any]]:
    """Each stored object's record of its failure: reason, status and the intake's answer."""
    return [orjson.loads(gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) for key in stored]


def test_zero_padded_gzip_and_text_like_a_zlib_header_are_read_whole(
    s3: Any, intake: LocalIntake, bucket: str, caplog: Any
) -> None:
    """A gzip file padded with zeros (as some copy tools leave it) lost its last record; text starting
    with `x^` (0x78 0x5e, a zlib header) was taken for zlib and failed. Both are read whole now."""
    padded_lines = [line for line in audit_lines(300) if line]
    padded_key = "eks/audit/zero-padded.log.gz"
    put(s3, bucket, padded_key, gzip.compress(("\n".join(padded_lines) + "\n").encode()) + b"\x00" * 70_000,
        compress=False)  # fmt: skip
    text_lines = [f"x^{n} + y^2 = z^2" for n in range(200)]
    text_key = "logs/formula.log"
    put(s3, bucket, text_key, ("\n".join(text_lines) + "\n").encode(), compress=False)
    clock = Clock()

    result, error, tally = invoke(clock, s3_event(bucket, padded_key, text_key), settings_for(intake.url, **MATRIX))

    assert error is None and result["events_delivered"] == 500
    messages = {entry["message"] for entry in intake.entries}
    assert padded_lines[-1] in messages and set(text_lines) <= messages
    expected = line_ids(bucket, padded_key, padded_lines) | line_ids(bucket, text_key, text_lines)
    accounting = Accounting(expected, received_ids(intake))
    assert accounting.duplicated == 0
    fault = "gzip followed by 70 kB of zero padding (300 lines), and a text object starting with `x^` (200 lines)"
    note = "the padded file's last line delivered; the `x^` text read as plain text"
    record("zero padding, x^", fault, accounting, clock, tally, caplog.records, note=note)


DRIP_TIMEOUT = 1.5


def test_an_intake_dripping_its_answer_stops_within_the_deadline(s3: Any, bucket: str, caplog: Any) -> None:
    """An intake answering one byte every 0.2 s: the HTTP timeout bounded each socket read, not the
    request, so one request could outlast the function. It is cut at the timeout (0.5 s) and the
    invocation returns before its 1.5 s deadline, the object failed for AWS to retry."""
    recs = records("drip", 300)
    key = put_trail(s3, bucket, "drip", recs)
    env = {**DEADLINE_ENV, "FORWARDER_HTTP_TIMEOUT_SECONDS": "0.5", "FORWARDER_MAX_ATTEMPTS": "2"}
    clock = Clock()
    with serving(dripping(0.2, "body")) as url:
        _, error, tally = invoke(clock, s3_event(bucket, key), settings_for(url, **env), DRIP_TIMEOUT)

    (taken, timeout), *_ = clock.runs
    # One dripped answer takes 8 s; the margin past the deadline is for a loaded machine only.
    assert taken < timeout + 1.0, f"the invocation took {taken:.2f} s of its {timeout} s"
    assert isinstance(error, IncompleteInvocation) and "no answer from the intake within" in str(error)
    accounting = Accounting(event_ids(recs), Counter(), reported=event_ids(recs))
    fault = f"intake dripping its answer one byte every 0.2 s, HTTP timeout 0.5 s, function timeout {DRIP_TIMEOUT} s"
    note = f"returned after {taken:.2f} s of its {timeout} s; the answers that never finished count as not delivered"
    record("dripping answer", fault, accounting, clock, tally, caplog.records, error=error, note=note)


def test_a_mistyped_url_with_a_password_fails_without_showing_it(
    s3: Any, bucket: str, caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DD_URL=htps://user:PASSWORD@host/…: the error quoted the URL, password and all, into the logs.
    The Lambda now fails at start naming DD_URL and never the password; the object is retried."""
    recs = records("badurl", 100)
    key = put_trail(s3, bucket, "bad-url", recs)
    monkeypatch.setenv("DD_URL", "htps://user:PASSWORD@intake.example/api/v2/logs")
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    clock = Clock()

    _, error = clock.call(60.0, lambda: lambda_handler(s3_event(bucket, key), context()))

    assert isinstance(error, ConfigError) and "DD_URL" in str(error)
    shown = " ".join([str(error), repr(error), str(error.__cause__), str(error.__context__), caplog.text])
    assert "PASSWORD" not in shown
    accounting = Accounting(event_ids(recs), Counter(), reported=event_ids(recs))
    fault = "`DD_URL=htps://user:PASSWORD@host/…` (mistyped scheme, credentials in the URL)"
    note = "the invocation fails before reading anything, so AWS retries the object; no password in the error or logs"
    record("url with password", fault, accounting, clock, Tally(), caplog.records, error=error, note=note)
