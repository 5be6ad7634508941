"""The ways in: `lambda_handler` itself, the API key from Secrets Manager or SSM, every envelope, the CLI."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.fixtures import cloudtrail_documents, records_of, s3_event
from forwarder import handler, sources, triggers
from forwarder.devintake import LocalIntake
from forwarder.errors import IncompleteInvocation
from forwarder.model import S3Object
from forwarder.settings import load_settings

from .helpers import (
    API_KEY,
    FIXTURES,
    awslogs_event,
    context,
    put,
    settings_for,
    sqs_event,
)

ROOT = Path(__file__).parent.parent.parent
DOCUMENT = cloudtrail_documents()["aws.persistence.iam-create-admin-user"]


@pytest.fixture
def lambda_env(intake: LocalIntake, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DD_URL", intake.url)
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "forwarder-test")
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def test_lambda_handler_reads_settings_from_the_environment(s3: Any, intake: LocalIntake, lambda_env: None) -> None:
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/04/handler.json.gz"
    put(s3, "handler-bucket", key, DOCUMENT)

    summary = handler.lambda_handler(s3_event("handler-bucket", key), context())

    assert summary["events_delivered"] == len(records_of(DOCUMENT)) == len(intake.entries)
    assert "forwardername:forwarder-test" in intake.entries[0]["ddtags"]


@pytest.mark.parametrize("as_json", [True, False], ids=["json-secret", "plain-secret"])
def test_api_key_from_secrets_manager(s3: Any, intake: LocalIntake, as_json: bool) -> None:
    secrets = boto3.client("secretsmanager")
    value = json.dumps({"DD_API_KEY": API_KEY}) if as_json else API_KEY
    arn = secrets.create_secret(Name=f"forwarder/api-key-{as_json}", SecretString=value)["ARN"]
    key = f"AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/04/secret-{as_json}.json.gz"
    put(s3, "secret-bucket", key, DOCUMENT)

    settings = settings_for(intake.url, DD_API_KEY="", DD_API_KEY_SECRET_ARN=arn)
    handler.handle(s3_event("secret-bucket", key), context(), settings)

    assert len(intake.entries) == len(records_of(DOCUMENT))


def test_api_key_from_ssm_parameter(s3: Any, intake: LocalIntake) -> None:
    boto3.client("ssm").put_parameter(Name="/forwarder/api-key", Value=API_KEY, Type="SecureString")
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/04/ssm.json.gz"
    put(s3, "ssm-bucket", key, DOCUMENT)

    settings = settings_for(intake.url, DD_API_KEY="", DD_API_KEY_SSM_NAME="/forwarder/api-key")
    handler.handle(s3_event("ssm-bucket", key), context(), settings)

    assert len(intake.entries) == len(records_of(DOCUMENT))


ENVELOPES = sorted(
    path
    for folder in ("s3", "sns")
    for path in (FIXTURES / "envelopes" / folder).glob("*.json")
    if path.name != "powertools_snsSqsEvent.json"
)


@pytest.mark.parametrize("path", ENVELOPES, ids=[path.stem for path in ENVELOPES])
def test_every_envelope_fixture_delivers_the_objects_it_names(s3: Any, intake: LocalIntake, path: Path) -> None:
    # moto cannot create an object under a chosen version id, so the fixtures' ids are dropped.
    event = json.loads(re.sub(r'\\?"versionId\\?":\s*\\?"[^"\\]*\\?",?', "", path.read_text()))
    if "s3Bucket" in event:  # CloudTrail's own SNS message: wrap it as SNS delivers it
        event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(event)}}]}
    objects = [
        item for message in triggers.parse_event(event).messages for item in message.items if isinstance(item, S3Object)
    ]
    assert objects, f"{path.name} names no object"
    for obj in objects:
        put(s3, obj.bucket, obj.key, DOCUMENT)

    result = handler.handle(event, context(), settings_for(intake.url))

    assert result.get("batchItemFailures", []) == []
    assert len(intake.entries) == len(objects) * len(records_of(DOCUMENT))


def test_cli_invokes_the_handler_on_an_event_file(s3: Any, intake: LocalIntake, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(s3_event("cli-bucket", "AWSLogs/123456789012/CloudTrail/us-east-1/cli.json.gz")))
    put(s3, "cli-bucket", "AWSLogs/123456789012/CloudTrail/us-east-1/cli.json.gz", DOCUMENT)
    env = {**os.environ, "DD_URL": intake.url, "DD_API_KEY": API_KEY, "POWERTOOLS_LOG_LEVEL": "WARNING"}

    run = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "invoke", str(event)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["events_delivered"] == len(records_of(DOCUMENT))
    assert API_KEY not in run.stdout + run.stderr


def test_sample_events_all_parse() -> None:
    for path in sorted((ROOT / "events").glob("*.json")):
        assert triggers.parse_event(json.loads(path.read_text())).messages, path.name


def test_an_unexpected_failure_fails_only_its_own_sqs_message(
    s3: Any, intake: LocalIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(s3, "good-bucket", "AWSLogs/123456789012/CloudTrail/us-east-1/good.json.gz", DOCUMENT)
    put(s3, "buggy-bucket", "AWSLogs/123456789012/CloudTrail/us-east-1/buggy.json.gz", DOCUMENT)
    labelled = sources.for_object

    def for_object(obj: S3Object, settings: Any, content: Any = None) -> Any:
        if obj.bucket == "buggy-bucket":
            raise RuntimeError("a bug")
        return labelled(obj, settings, content)

    monkeypatch.setattr(sources, "for_object", for_object)
    event = sqs_event(
        s3_event("buggy-bucket", "AWSLogs/123456789012/CloudTrail/us-east-1/buggy.json.gz"),
        s3_event("good-bucket", "AWSLogs/123456789012/CloudTrail/us-east-1/good.json.gz"),
    )

    result = handler.handle(event, context(), settings_for(intake.url))

    assert result == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}
    assert len(intake.entries) == len(records_of(DOCUMENT))


def test_a_cloudwatch_logs_payload_moved_from_the_dead_letter_queue_through_the_queue_is_forwarded(
    intake: LocalIntake,
) -> None:
    """The body of a failed asynchronous invocation's dead letter is the event Lambda received; moved to the
    stack's queue, it arrives as an SQS message whose body is that CloudWatch Logs payload."""
    audit = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1", "stage": "ResponseComplete",
             "verb": "get", "requestURI": "/api/v1/namespaces/default/pods", "user": {"username": "alice"},
             "stageTimestamp": "2024-12-04T12:00:00.000000Z"}  # fmt: skip
    payload = awslogs_event("/aws/eks/prod/cluster", "kube-apiserver-audit-0123", [json.dumps(audit)] * 3)

    result = handler.handle(sqs_event(payload), context(), settings_for(intake.url))

    assert result == {"batchItemFailures": []}
    assert [entry["ddsource"] for entry in intake.entries] == ["kubernetes.audit"] * 3
    assert all(json.loads(entry["message"])["auditID"] == "a-1" for entry in intake.entries), intake.entries[0]


def test_an_unreadable_stored_batch_fails_the_replay_after_the_rest_is_replayed(s3: Any, intake: LocalIntake) -> None:
    s3.create_bucket(Bucket="store-bucket")
    settings = settings_for(intake.url, DD_STORE_FAILED_EVENTS="true", DD_S3_BUCKET_NAME="store-bucket")
    s3.put_object(Bucket="store-bucket", Key=f"{settings.store_prefix}2024/01/01/000000-a.json.gz", Body=b"\x1f\x8bbad")
    good = gzip.compress(json.dumps({"entries": [{"message": "kept", "ddsource": "cloudtrail"}]}).encode())
    s3.put_object(Bucket="store-bucket", Key=f"{settings.store_prefix}2024/01/01/000001-b.json.gz", Body=good)

    with pytest.raises(IncompleteInvocation, match=r"000000-a\.json\.gz"):
        handler.handle({"retry": True}, context(), settings)

    assert [entry["message"] for entry in intake.entries] == ["kept"]
    left = s3.list_objects_v2(Bucket="store-bucket", Prefix=settings.store_prefix)["Contents"]
    assert [item["Key"].rsplit("/", 1)[-1] for item in left] == ["000000-a.json.gz"]
