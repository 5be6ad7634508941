"""The operator's commands: `check`, `run` and the one-line errors of `invoke` and `replay`.

Every intake here is the local one on 127.0.0.1 and every S3 call goes to the moto server.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

# handler is imported here, at collection, so that the Powertools loggers of the modules the CLI
# imports lazily bind the session's stdout rather than one test's capsys stream, closed after it.
from forwarder import cli, handler  # noqa: F401
from forwarder.devintake import LocalIntake
from forwarder.settings import Settings, load_settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cloudtrail"
TRAIL_FILE = FIXTURES / "trailscraper_111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz"
DIGEST_FILE = FIXTURES / "awsdocs_cloudtrail-digest_example.json"
API_KEY = "cli-test-key-not-a-secret-0000000"
WRONG_KEY = "cli-wrong-key-not-a-secret-111111"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean forwarder environment; settings are re-read for each test."""
    for name in ("DD_URL", "DD_SITE", "DD_API_KEY", "DD_STORE_FAILED_EVENTS", "DD_S3_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FORWARDER_HTTP_TIMEOUT_SECONDS", "5")
    load_settings.cache_clear()
    yield monkeypatch
    load_settings.cache_clear()


@pytest.fixture
def intake() -> Iterator[LocalIntake]:
    with LocalIntake(api_key=API_KEY) as server:
        yield server


def _records(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(gzip.decompress(path.read_bytes()))["Records"]
    return records


def _lines(out: str) -> list[dict[str, Any]]:
    """NDJSON as printed: split on newlines only (a record may hold U+2028, which splitlines splits on)."""
    return [json.loads(line) for line in out.split("\n") if line]


def _one_line_error(err: str, *needles: str) -> None:
    """What an operator error must look like: one line, no traceback, never the key."""
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert API_KEY not in err and WRONG_KEY not in err
    for needle in needles:
        assert needle in err, err


# --- check ------------------------------------------------------------------------------------------


def test_check_accepts_a_valid_key(env: pytest.MonkeyPatch, intake: LocalIntake, capsys: Any) -> None:
    env.setenv("DD_URL", intake.url)
    env.setenv("DD_API_KEY", API_KEY)

    assert cli.main(["check"]) == 0

    out, err = capsys.readouterr()
    assert "the API key is valid" in out and intake.validate_url in out
    assert API_KEY not in out + err
    assert intake.requests == 0, "checking a key sends no logs"


def test_check_names_the_site_a_refused_key_was_tried_against(
    env: pytest.MonkeyPatch, intake: LocalIntake, capsys: Any
) -> None:
    env.setenv("DD_SITE", "datadoghq.eu")
    env.setenv("DD_API_KEY", WRONG_KEY)

    assert cli.main(["check", "--validate-url", intake.validate_url]) == 1

    _, err = capsys.readouterr()
    _one_line_error(err, "forwarder check:", "403", "DD_SITE=datadoghq.eu", "set DD_SITE")


def test_check_reports_an_unreachable_endpoint_in_one_line(env: pytest.MonkeyPatch, capsys: Any) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env.setenv("DD_API_KEY", API_KEY)

    assert cli.main(["check", "--validate-url", f"http://127.0.0.1:{port}/api/v1/validate"]) == 1

    _one_line_error(capsys.readouterr().err, "could not reach", "ConnectionError")


def test_check_says_when_an_intake_cannot_validate_keys(
    env: pytest.MonkeyPatch, intake: LocalIntake, capsys: Any
) -> None:
    """DD_URL may name an intake or proxy without Datadog's API: the check says what to give instead."""
    env.setenv("DD_API_KEY", API_KEY)

    assert cli.main(["check", "--validate-url", intake.url.replace("/api/v2/logs", "/elsewhere")]) == 1

    _one_line_error(capsys.readouterr().err, "no key validation endpoint (404)", "--validate-url")


@pytest.mark.parametrize(
    ("variables", "needle"),
    [({}, "no API key"), ({"DD_API_KEY": API_KEY, "DD_PORT": "https"}, "DD_PORT must be a number")],
    ids=["no-key", "bad-setting"],
)
def test_check_reports_settings_before_asking_anyone(
    env: pytest.MonkeyPatch, capsys: Any, variables: dict[str, str], needle: str
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)

    assert cli.main(["check", "--validate-url", "http://127.0.0.1:9/never-asked"]) == 1

    _one_line_error(capsys.readouterr().err, needle)


@pytest.mark.parametrize(
    ("environment", "url"),
    [
        ({"DD_SITE": "datadoghq.eu"}, "https://api.datadoghq.eu/api/v1/validate"),
        ({}, "https://api.datadoghq.com/api/v1/validate"),
        ({"DD_URL": "http://127.0.0.1:8080/api/v2/logs"}, "http://127.0.0.1:8080/api/v1/validate"),
        ({"DD_URL": "proxy.internal", "DD_PORT": "8443"}, "https://proxy.internal:8443/api/v1/validate"),
    ],
)
def test_the_key_is_validated_on_the_site_api_or_the_intake_host(environment: dict[str, str], url: str) -> None:
    assert cli.key_validation_url(Settings.from_env(environment)) == url


# --- run --------------------------------------------------------------------------------------------


def test_run_dry_run_prints_the_entries_and_sends_nothing(env: pytest.MonkeyPatch, capsys: Any) -> None:
    """No key and no intake needed: the entries are those the Lambda would send."""
    assert cli.main(["run", str(TRAIL_FILE), "--dry-run"]) == 0

    out, err = capsys.readouterr()
    entries = _lines(out)
    records = _records(TRAIL_FILE)
    assert [entry["eventID"] for entry in entries] == [record["eventID"] for record in records]
    assert {entry["ddsource"] for entry in entries} == {"cloudtrail"}
    assert entries[0]["aws"]["s3"] == {"bucket": "local", "key": TRAIL_FILE.as_posix()}
    assert f"{len(records)} events, printed" in err


def test_run_labels_a_local_file_as_the_object_named(env: pytest.MonkeyPatch, capsys: Any) -> None:
    key = "AWSLogs/111111111111/CloudTrail/eu-central-1/2017/12/11/trail.json.gz"

    assert cli.main(["run", str(TRAIL_FILE), "--as", f"s3://org-trail/{key}", "--dry-run"]) == 0

    first = _lines(capsys.readouterr().out)[0]
    assert first["aws"]["s3"] == {"bucket": "org-trail", "key": key}
    assert first["host"] == "org-trail"


def test_run_sends_a_file_to_the_intake(env: pytest.MonkeyPatch, intake: LocalIntake, capsys: Any) -> None:
    env.setenv("DD_URL", intake.url)
    env.setenv("DD_API_KEY", API_KEY)

    assert cli.main(["run", str(TRAIL_FILE)]) == 0

    records = _records(TRAIL_FILE)
    assert sorted(entry["eventID"] for entry in intake.entries) == sorted(record["eventID"] for record in records)
    assert f"{len(records)} events, {len(records)} delivered, 0 failed" in capsys.readouterr().err


def test_run_fails_when_the_intake_refuses(env: pytest.MonkeyPatch, intake: LocalIntake, capsys: Any) -> None:
    env.setenv("DD_URL", intake.url)
    env.setenv("DD_API_KEY", WRONG_KEY)

    assert cli.main(["run", str(TRAIL_FILE)]) == 1

    err = capsys.readouterr().err
    assert "0 delivered" in err and "Traceback" not in err and WRONG_KEY not in err


def test_run_reads_an_s3_object(env: pytest.MonkeyPatch, s3: Any, capsys: Any) -> None:
    key = "AWSLogs/111111111111/CloudTrail/eu-central-1/2017/12/11/run.json.gz"
    s3.create_bucket(Bucket="cli-run-bucket")
    s3.put_object(Bucket="cli-run-bucket", Key=key, Body=TRAIL_FILE.read_bytes())

    assert cli.main(["run", f"s3://cli-run-bucket/{key}", "--dry-run"]) == 0

    entries = _lines(capsys.readouterr().out)
    assert len(entries) == len(_records(TRAIL_FILE))
    assert entries[0]["aws"]["s3"] == {"bucket": "cli-run-bucket", "key": key}


def test_run_says_why_an_object_is_skipped(env: pytest.MonkeyPatch, capsys: Any) -> None:
    assert cli.main(["run", str(DIGEST_FILE), "--dry-run"]) == 0

    out, err = capsys.readouterr()
    assert out == ""
    assert "skipped (cloudtrail_digest)" in err


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("no/such/file.json.gz", "no such file: no/such/file.json.gz"),
        ("s3://cli-missing-bucket/AWSLogs/x.json.gz", "s3://cli-missing-bucket/AWSLogs/x.json.gz"),
        ("s3://only-a-bucket", "not an s3://bucket/key address"),
    ],
    ids=["missing-file", "missing-object", "no-key"],
)
def test_run_reports_what_cannot_be_read_in_one_line(
    env: pytest.MonkeyPatch, s3: Any, capsys: Any, target: str, needle: str
) -> None:
    assert cli.main(["run", target, "--dry-run"]) == 1

    _one_line_error(capsys.readouterr().err, "forwarder run:", needle)


# --- invoke and replay ------------------------------------------------------------------------------


def test_invoke_reports_a_missing_event_file_in_one_line(env: pytest.MonkeyPatch, capsys: Any) -> None:
    assert cli.main(["invoke", "events/no-such-event.json"]) == 1

    _one_line_error(capsys.readouterr().err, "forwarder invoke:", "events/no-such-event.json", "No such file")


@pytest.mark.parametrize(("content", "needle"), [(b"{not json", "is not JSON"), (b"[1, 2]", "a JSON list")])
def test_invoke_reports_an_unusable_event_file_in_one_line(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: Any, content: bytes, needle: str
) -> None:
    event = tmp_path / "event.json"
    event.write_bytes(content)

    assert cli.main(["invoke", str(event)]) == 1

    _one_line_error(capsys.readouterr().err, needle)


def test_replay_without_a_store_says_how_to_configure_one(env: pytest.MonkeyPatch, capsys: Any) -> None:
    env.setenv("DD_API_KEY", API_KEY)

    assert cli.main(["replay"]) == 1

    _one_line_error(capsys.readouterr().err, "forwarder replay:", "DD_STORE_FAILED_EVENTS=true")


def test_replay_reports_a_store_bucket_that_does_not_exist(env: pytest.MonkeyPatch, s3: Any, capsys: Any) -> None:
    env.setenv("DD_API_KEY", API_KEY)
    env.setenv("DD_STORE_FAILED_EVENTS", "true")
    env.setenv("DD_S3_BUCKET_NAME", "cli-no-such-store")

    assert cli.main(["replay"]) == 1

    _one_line_error(capsys.readouterr().err, "the failure store bucket cli-no-such-store does not exist")


# --- redrive ----------------------------------------------------------------------------------------


def _awslogs_event(*messages: str) -> dict[str, Any]:
    """A CloudWatch Logs subscription event, as Lambda would have passed it to the function."""
    payload = {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": "/aws/eks/prod/cluster",
        "logStream": "kube-apiserver-audit-0123456789abcdef",
        "subscriptionFilters": ["forwarder"],
        "logEvents": [
            {"id": f"3{index:055d}", "timestamp": 1733313600000 + index, "message": message}
            for index, message in enumerate(messages)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}


@pytest.fixture
def dead_letters(moto_endpoint: str) -> Iterator[tuple[Any, str]]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"cli-dead-letters-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def test_redrive_forwards_every_kind_of_dead_letter_and_deletes_it(
    env: pytest.MonkeyPatch, intake: LocalIntake, s3: Any, dead_letters: tuple[Any, str], capsys: Any
) -> None:
    """A failed asynchronous invocation (a CloudWatch Logs payload) and a message a queue gave up on
    (an S3 notification) both reach the intake; the queue is empty afterwards."""
    sqs, url = dead_letters
    env.setenv("DD_URL", intake.url)
    env.setenv("DD_API_KEY", API_KEY)
    key = "AWSLogs/111111111111/CloudTrail/eu-central-1/2017/12/11/redrive.json.gz"
    s3.create_bucket(Bucket="cli-redrive-bucket")
    s3.put_object(Bucket="cli-redrive-bucket", Key=key, Body=TRAIL_FILE.read_bytes())
    failed_invocation = {"ErrorCode": {"DataType": "Number", "StringValue": "200"}}
    audit = json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a1", "verb": "get"})
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(_awslogs_event(audit)), MessageAttributes=failed_invocation)
    notification = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": "cli-redrive-bucket"}, "object": {"key": key, "size": 1}}}]}  # fmt: skip
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(notification))

    assert cli.main(["redrive", url, "--timeout", "60"]) == 0

    sources = [entry["ddsource"] for entry in intake.entries]
    assert sources.count("kubernetes.audit") == 1
    assert sources.count("cloudtrail") == len(_records(TRAIL_FILE))
    assert "2 messages forwarded and deleted, 0 left" in capsys.readouterr().err
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0, VisibilityTimeout=0)


def test_redrive_leaves_what_fails_again(
    env: pytest.MonkeyPatch, intake: LocalIntake, dead_letters: tuple[Any, str], capsys: Any
) -> None:
    sqs, url = dead_letters
    env.setenv("DD_URL", intake.url)
    env.setenv("DD_API_KEY", API_KEY)
    sqs.send_message(QueueUrl=url, MessageBody='{"neither": "an event nor a notification"}')

    assert cli.main(["redrive", url, "--timeout", "60"]) == 1

    err = capsys.readouterr().err
    assert "0 messages forwarded and deleted, 1 left" in err and "Traceback" not in err
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_redrive_reports_a_queue_that_does_not_exist(env: pytest.MonkeyPatch, moto_endpoint: str, capsys: Any) -> None:
    env.setenv("DD_API_KEY", API_KEY)

    assert cli.main(["redrive", f"{moto_endpoint}/123456789012/cli-no-such-queue"]) == 1

    _one_line_error(capsys.readouterr().err, "forwarder redrive: cannot receive from")
