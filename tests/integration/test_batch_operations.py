"""S3 Batch Operations invocations end to end: moto's S3, the real local intake, an answer per task."""

from __future__ import annotations

import gzip
from typing import Any
from urllib.parse import quote_plus

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from bench.fixtures import cloudtrail_documents, records_of, trail_key
from forwarder.devintake import LocalIntake
from forwarder.errors import DeadlineReached, InputError, UnsupportedEvent
from forwarder.handler import handle
from forwarder.metrics import Tally
from forwarder.pipeline import FailureKind, failure_kind

from .helpers import context, put, settings_for

BUCKET = "batch-operations-archive"
DOCUMENT = cloudtrail_documents()["aws.persistence.iam-create-admin-user"]
EVENTS = len(records_of(DOCUMENT))


def task(task_id: str, key: str, schema: str) -> dict[str, Any]:
    """A task as Batch Operations sends it: the key URL-encoded, the bucket by ARN (1.0) or name (2.0)."""
    where = {"s3BucketArn": f"arn:aws:s3:::{BUCKET}"} if schema == "1.0" else {"s3Bucket": BUCKET}
    return {"taskId": task_id, "s3Key": quote_plus(key, safe="/"), "s3VersionId": None, **where}


def invocation(schema: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = {"id": "f3cc4f60-61f6-4a2b-8a21-d07600c373ce"}
    if schema == "2.0":
        job["userArguments"] = {"purpose": "backfill"}
    return {"invocationSchemaVersion": schema, "invocationId": "invocation-1", "job": job, "tasks": list(tasks)}


def results(answer: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {result["taskId"]: (result["resultCode"], result["resultString"]) for result in answer["results"]}


@pytest.mark.parametrize("schema", ["1.0", "2.0"])
def test_a_missing_object_fails_its_task_alone_and_permanently(s3: Any, intake: LocalIntake, schema: str) -> None:
    first, second = trail_key(f"batch-first-{schema}"), f"backfill {schema}/copied trail+file.json.gz"
    put(s3, BUCKET, first, DOCUMENT)
    put(s3, BUCKET, second, DOCUMENT)
    event = invocation(
        schema,
        task("t-1", first, schema),
        task("t-missing", f"AWSLogs/gone-{schema}.json.gz", schema),
        task("t-2", second, schema),
    )
    tally = Tally()

    answer = handle(event, context(), settings_for(intake.url), tally)

    assert {key: answer[key] for key in ("invocationSchemaVersion", "treatMissingKeysAs", "invocationId")} == {
        "invocationSchemaVersion": schema,
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": "invocation-1",
    }
    assert [result["taskId"] for result in answer["results"]] == ["t-1", "t-missing", "t-2"]
    by_task = results(answer)
    assert by_task["t-1"] == by_task["t-2"] == ("Succeeded", f"{EVENTS} events read, {EVENTS} delivered")
    code, reason = by_task["t-missing"]
    assert code == "PermanentFailure"
    assert f"s3://{BUCKET}/AWSLogs/gone-{schema}.json.gz" in reason and "NoSuchKey" in reason
    assert len(intake.entries) == 2 * EVENTS == tally.events_read
    assert {entry["aws"]["s3"]["key"] for entry in intake.entries} == {first, second}


def test_corrupt_content_is_a_permanent_failure_naming_where(s3: Any, intake: LocalIntake) -> None:
    key = "corrupt/trail.json.gz"
    put(s3, BUCKET, key, gzip.compress(DOCUMENT)[:-40], compress=False)

    answer = handle(invocation("2.0", task("t", key, "2.0")), context(), settings_for(intake.url))

    ((code, reason),) = results(answer).values()
    assert code == "PermanentFailure" and f"s3://{BUCKET}/{key}" in reason


def test_an_intake_that_refuses_is_a_temporary_failure(s3: Any, intake: LocalIntake) -> None:
    key = trail_key("batch-refused")
    put(s3, BUCKET, key, DOCUMENT)
    intake.script([400])

    answer = handle(invocation("2.0", task("t", key, "2.0")), context(), settings_for(intake.url))

    ((code, reason),) = results(answer).values()
    assert code == "TemporaryFailure" and "400" in reason


def test_a_skipped_object_succeeds_saying_why(s3: Any, intake: LocalIntake) -> None:
    key = "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/12/04/digest.json.gz"
    put(s3, BUCKET, key, b"{}")

    answer = handle(invocation("1.0", task("t", key, "1.0")), context(), settings_for(intake.url))

    assert results(answer) == {"t": ("Succeeded", "0 events read, skipped: cloudtrail_digest")}


def test_a_task_that_names_no_object_fails_alone(s3: Any, intake: LocalIntake) -> None:
    key = trail_key("batch-beside-a-bad-task")
    put(s3, BUCKET, key, DOCUMENT)
    event = invocation("2.0", {"taskId": "bad", "s3Key": "k", "s3VersionId": None}, task("good", key, "2.0"))

    by_task = results(handle(event, context(), settings_for(intake.url)))

    assert by_task["bad"][0] == "PermanentFailure" and "names no bucket" in by_task["bad"][1]
    assert by_task["good"][0] == "Succeeded"


def test_an_unknown_schema_is_still_an_unsupported_event(intake: LocalIntake) -> None:
    with pytest.raises(UnsupportedEvent, match=r"schema '3\.0'"):
        handle(invocation("3.0", task("t", "k", "2.0")), context(), settings_for(intake.url))


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (client_error("NoSuchKey", 404), FailureKind.PERMANENT),
        (client_error("AccessDenied", 403), FailureKind.PERMANENT),
        (client_error("PreconditionFailed", 412), FailureKind.PERMANENT),
        (client_error("SlowDown", 503), FailureKind.TEMPORARY),
        (client_error("InternalError", 500), FailureKind.TEMPORARY),
        (client_error("TooManyRequests", 429), FailureKind.TEMPORARY),
        (EndpointConnectionError(endpoint_url="https://s3.amazonaws.com"), FailureKind.TEMPORARY),
        (TimeoutError("read timed out"), FailureKind.TEMPORARY),
        (ValueError("corrupt gzip data"), FailureKind.PERMANENT),
        (None, FailureKind.PERMANENT),
    ],
)
def test_why_a_read_failed_decides_whether_retrying_can_help(cause: BaseException | None, kind: FailureKind) -> None:
    error = InputError("s3://b/k", "byte 0", "could not read")
    error.__cause__ = cause
    assert failure_kind(error) is kind


def test_the_deadline_is_temporary() -> None:
    assert failure_kind(DeadlineReached("s3://b/k", "event 7", "no time left")) is FailureKind.TEMPORARY
