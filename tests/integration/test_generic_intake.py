"""A generic HTTP intake end to end: moto's S3, Secrets Manager and SSM, and a recording server on 127.0.0.1.

The recording server decodes what it receives as the intake format says (a JSON array, NDJSON, or
Splunk HEC's envelopes) and answers what the test scripts: any intake's 2xx, or HEC's own answer.
"""

from __future__ import annotations

import gzip
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import orjson
import pytest

from bench.fixtures import cloudtrail_documents, k8s_audit_lines, records_of, s3_event, trail_key
from forwarder.devintake import LocalIntake
from forwarder.errors import IncompleteInvocation
from forwarder.handler import handle
from tests.ocsf_schema import problems

from .helpers import ACCOUNT, awslogs_event, context, put, settings_for

BUCKET = "generic-trail-bucket"
HEC_SUCCESS = b'{"text":"Success","code":0}'


class Recorder:
    """An HTTP intake on 127.0.0.1 that keeps each request's headers and decoded entries."""

    def __init__(self, framing: str, answers: list[tuple[int, bytes]] | None = None) -> None:
        self.framing = framing
        self.answers = list(answers or [])
        self.requests: list[tuple[dict[str, str], list[Any]]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/ingest"

    @property
    def entries(self) -> list[Any]:
        with self.lock:
            return [entry for _, entries in self.requests for entry in entries]

    def decode(self, body: bytes) -> list[Any]:
        if self.framing == "json":
            entries: list[Any] = orjson.loads(body)
            return entries
        assert body.endswith(b"\n"), "every NDJSON line ends with a newline"
        return [orjson.loads(line) for line in body.split(b"\n")[:-1]]

    def _answer(self, headers: dict[str, str], wire: bytes) -> tuple[int, bytes]:
        with self.lock:
            status, text = self.answers.pop(0) if self.answers else (200, HEC_SUCCESS)
        if 200 <= status < 300 and not text.startswith(b"<"):  # kept only when the answer says it is
            body = gzip.decompress(wire) if headers.get("content-encoding") == "gzip" else wire
            entries = self.decode(body)
            with self.lock:
                self.requests.append((headers, entries))
        return status, text

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                wire = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, text = recorder._answer(headers, wire)
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder(request: Any) -> Iterator[Recorder]:
    with Recorder(getattr(request, "param", "ndjson")) as server:
        yield server


def generic(url: str, **env: str) -> Any:
    """Settings for a generic intake; no DD_API_KEY unless the test gives one."""
    return settings_for(url, **{"DD_API_KEY": "", **env})


def trail_object(s3: Any, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    document = cloudtrail_documents()[name]
    key = trail_key(f"generic-{name}-{uuid.uuid4().hex}")
    put(s3, BUCKET, key, document)
    return s3_event(BUCKET, key), records_of(document)


def test_ndjson_with_a_bearer_secret_from_secrets_manager_and_headers(s3: Any, recorder: Recorder) -> None:
    secret = f"token-{uuid.uuid4().hex}"
    arn = boto3.client("secretsmanager").create_secret(Name=f"intake-{uuid.uuid4().hex}", SecretString=secret)["ARN"]
    event, records = trail_object(s3, "aws.discovery.ec2-download-user-data")
    settings = generic(
        recorder.url,
        FORWARDER_INTAKE_FORMAT="ndjson",
        DD_API_KEY_SECRET_ARN=arn,
        FORWARDER_INTAKE_HEADERS="X-Tenant: blue; X-Pipeline: security",
        FORWARDER_BATCH_MAX_ENTRIES="7",
    )
    assert secret not in repr(settings)

    summary = handle(event, context(), settings)

    assert summary["events_delivered"] == len(records) > 7
    assert sorted(entry["eventID"] for entry in recorder.entries) == sorted(record["eventID"] for record in records)
    assert {entry["ddsource"] for entry in recorder.entries} == {"cloudtrail"}
    for headers, entries in recorder.requests:
        assert headers["authorization"] == f"Bearer {secret}" and headers["content-encoding"] == "gzip"
        assert (headers["x-tenant"], headers["x-pipeline"]) == ("blue", "security")
        assert len(entries) <= 7


@pytest.mark.parametrize("recorder", ["json"], indirect=True)
def test_ocsf_to_a_json_array_intake_without_auth_needs_no_api_key(recorder: Recorder) -> None:
    lines = k8s_audit_lines()
    event = awslogs_event("/aws/eks/prod-eu/cluster", "kube-apiserver-audit-0123456789abcdef", lines)
    settings = generic(recorder.url, FORWARDER_INTAKE_FORMAT="json", FORWARDER_OUTPUT_FORMAT="ocsf")

    summary = handle(event, context(), settings)

    assert summary["events_delivered"] == len(lines)
    assert all("authorization" not in headers for headers, _ in recorder.requests)
    received = recorder.entries
    assert [entry["raw_data"] for entry in received] == lines
    assert all(problems(entry) == [] for entry in received)
    assert {entry["cloud"]["account"]["uid"] for entry in received} == {ACCOUNT}
    assert sum(entry["class_uid"] == 6003 for entry in received) == len(lines) - 1  # falco's `{"kind": 0}`


def test_splunk_hec_envelopes_with_a_token_from_ssm(s3: Any, recorder: Recorder) -> None:
    token = str(uuid.uuid4())
    name = f"/forwarder/hec-{uuid.uuid4().hex}"
    boto3.client("ssm").put_parameter(Name=name, Value=token, Type="SecureString")
    event, records = trail_object(s3, "aws.defense-evasion.cloudtrail-stop")
    settings = generic(
        recorder.url, FORWARDER_INTAKE_FORMAT="splunk-hec", FORWARDER_OUTPUT_FORMAT="ocsf", DD_API_KEY_SSM_NAME=name
    )

    summary = handle(event, context(), settings)

    assert summary["events_delivered"] == len(records)
    assert {headers["authorization"] for headers, _ in recorder.requests} == {f"Splunk {token}"}
    for envelope, record in zip(recorder.entries, records, strict=True):
        assert set(envelope) == {"time", "host", "source", "sourcetype", "event"}
        assert (envelope["host"], envelope["source"], envelope["sourcetype"]) == (BUCKET, "cloudtrail", "_json")
        assert envelope["time"] * 1000 == envelope["event"]["time"]
        assert envelope["event"]["api"]["operation"] == record["eventName"] and problems(envelope["event"]) == []


def test_a_2xx_that_is_not_hecs_answer_fails_and_the_failure_store_keeps_it_for_replay(
    s3: Any, recorder: Recorder
) -> None:
    s3.create_bucket(Bucket="generic-store")
    event, records = trail_object(s3, "aws.defense-evasion.cloudtrail-stop")
    settings = generic(
        recorder.url,
        FORWARDER_INTAKE_FORMAT="splunk-hec",
        DD_API_KEY="hec-token-not-a-secret",
        DD_STORE_FAILED_EVENTS="true",
        DD_S3_BUCKET_NAME="generic-store",
    )
    recorder.answers = [(200, b"<html>a login page</html>")]

    summary = handle(event, context(), settings)

    assert (summary["events_stored"], recorder.entries) == (len(records), [])
    replayed = handle({"retry": True}, context(), settings)
    assert replayed["events_delivered"] == len(records)
    assert [envelope["event"]["eventID"] for envelope in recorder.entries] == [record["eventID"] for record in records]


def test_retries_a_503_and_redacts_the_secret_an_intake_echoes(s3: Any, recorder: Recorder, caplog: Any) -> None:
    secret = "user:pa55-not-a-real-secret"
    event, records = trail_object(s3, "aws.defense-evasion.cloudtrail-stop")
    settings = generic(recorder.url, FORWARDER_INTAKE_FORMAT="ndjson", FORWARDER_INTAKE_AUTH="basic", DD_API_KEY=secret)
    encoded = "dXNlcjpwYTU1LW5vdC1hLXJlYWwtc2VjcmV0"
    recorder.answers = [(503, f"busy, Basic {encoded}".encode())]

    with caplog.at_level(logging.WARNING):
        summary = handle(event, context(), settings)
    assert summary["events_delivered"] == len(records)
    assert {headers["authorization"] for headers, _ in recorder.requests} == {f"Basic {encoded}"}

    recorder.answers = [(401, f"bad credentials Basic {encoded}".encode())]
    with caplog.at_level(logging.WARNING), pytest.raises(IncompleteInvocation) as failed:
        handle(event, context(), settings)
    logged = caplog.text + "".join(str(vars(record)) for record in caplog.records)  # the JSON lines' fields too
    assert encoded not in str(failed.value) and encoded not in logged and secret not in logged
    assert "[redacted]" in logged


def test_ocsf_to_the_datadog_intake_every_cloudtrail_record_validates(s3: Any, intake: LocalIntake) -> None:
    documents = cloudtrail_documents()
    names = ("plaso_aws_cloudtrail.json", "aws.execution.ec2-launch-unusual-instances")
    records = [record for name in names for record in records_of(documents[name])]
    key = trail_key(f"ocsf-{uuid.uuid4().hex}")
    put(s3, BUCKET, key, orjson.dumps({"Records": records}))

    summary = handle(s3_event(BUCKET, key), context(), settings_for(intake.url, FORWARDER_OUTPUT_FORMAT="ocsf"))

    assert summary["events_delivered"] == len(records) == len(intake.entries)
    for entry, record in zip(intake.entries, records, strict=True):
        assert (entry["ddsource"], entry["host"]) == ("cloudtrail", BUCKET)
        assert entry["timestamp"] == entry["ocsf"]["time"] and problems(entry["ocsf"]) == []
        assert orjson.loads(entry["ocsf"]["raw_data"]) == record
    insights = [entry["ocsf"] for entry in intake.entries if entry["ocsf"]["class_uid"] == 0]
    assert [event["unmapped"]["forwarder.ocsf"] for event in insights] == ["unmappable"] * 2
