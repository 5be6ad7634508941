"""The OCSF output: every real CloudTrail and audit fixture validates against the pinned OCSF 1.1.0."""

from __future__ import annotations

import io
import logging
from typing import Any

import orjson
import pytest

from bench.fixtures import cloudtrail_documents, k8s_audit_lines
from forwarder import formats
from forwarder.formats import Format
from forwarder.formats.jsonhead import HeadReader
from forwarder.formats.parquet import read_parquet
from forwarder.model import Invoker, LogBatch, LogEvent, RawEvent, S3Object, Source
from forwarder.outputs.ocsf import MARKER, REASON, OcsfEncoder
from forwarder.outputs.ocsf_audit import KUBERNETES_VERBS
from forwarder.outputs.ocsf_map import Activity, cloudtrail_activity
from forwarder.read.s3 import Tracker
from forwarder.settings import Settings
from forwarder.times import AUDIT_TIME_FIELDS
from tests.integration.helpers import FIXTURES
from tests.ocsf_schema import problems

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:Forwarder"
OWNER = "210987654321"
OBJECT = S3Object("trail-bucket", "AWSLogs/123456789012/CloudTrail/eu-west-1/2024/12/04/f.json.gz")
TRAIL = Source("cloudtrail", "cloudtrail", "trail-bucket")
AUDIT = Source("kubernetes.audit", "kubernetes.audit", "/aws/eks/prod/cluster", (), AUDIT_TIME_FIELDS)
INSIGHT_RECORDS = 3  # plaso's two Insights events and streamalert's one: no eventName, no userIdentity


def encoder(
    source: Source = TRAIL, container: Any = OBJECT, datadog: bool = False, settings: Settings | None = None
) -> OcsfEncoder:
    return OcsfEncoder(source, container, Invoker.from_arn(ARN), settings or Settings(), datadog=datadog)


def log_batch(messages: list[str], group: str = "/aws/eks/prod/cluster") -> LogBatch:
    events = tuple(LogEvent(str(index), 1733313600000 + index, message) for index, message in enumerate(messages))
    return LogBatch(OWNER, group, "kube-apiserver-audit-0123", ("forwarder",), events)


def ocsf_of(coder: OcsfEncoder, blocks: Any) -> list[dict[str, Any]]:
    return [orjson.loads(entry.body) for block in blocks for entry in coder.entries(block)]


def cloudtrail_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for name, document in cloudtrail_documents().items():
        blocks = formats.read_object([document], name, Format.CLOUDTRAIL, OcsfEncoder.watched)
        events.extend(ocsf_of(encoder(), blocks))
    logstash = (FIXTURES / "cloudtrail" / "otrf_ec2_proxy_s3_exfiltration_2020-09-14011940.ndjson").read_bytes()
    events.extend(ocsf_of(encoder(), formats.read_object([logstash], "otrf", Format.LINES, OcsfEncoder.watched)))
    return events


def audit_events() -> list[dict[str, Any]]:
    batch = log_batch(k8s_audit_lines())
    return ocsf_of(
        encoder(AUDIT, batch), [RawEvent.log_event(index, event) for index, event in enumerate(batch.log_events)]
    )


def test_every_cloudtrail_fixture_record_is_valid_ocsf_1_1_0() -> None:
    events = cloudtrail_events()
    assert len(events) == 324 + 103  # the CloudTrail files, and OTRF's records re-emitted by Logstash
    for event in events:
        assert problems(event) == [], event["metadata"]["uid"]
    activities = [event for event in events if event["class_uid"] == 6003]
    assert len(activities) == len(events) - INSIGHT_RECORDS
    assert {event["unmapped"][MARKER] for event in events if event["class_uid"] == 0} == {"unmappable"}
    assert {event["activity_id"] for event in activities} == {1, 2, 3, 4, 99}


def test_every_audit_fixture_event_is_valid_ocsf_1_1_0_with_the_envelope_owner_as_account() -> None:
    events = audit_events()
    mapped = [event for event in events if event["class_uid"] == 6003]
    for event in events:
        assert problems(event) == [], event["raw_data"][:200]
    assert len(mapped) >= len(events) - 1  # falco's deliberately malformed `{"kind": 0}`
    assert {event["cloud"]["account"]["uid"] for event in events} == {OWNER}
    assert {event["metadata"]["product"]["name"] for event in mapped} == {"Amazon EKS"}
    assert {event["activity_id"] for event in mapped} >= {1, 2, 3, 4}


def test_the_panther_eks_events_without_a_verb_are_marked_unmappable(caplog: Any) -> None:
    lines = (FIXTURES / "k8s-audit" / "panther_eks-audit_normalized.jsonl").read_text().splitlines()
    batch = log_batch(lines)
    coder = encoder(AUDIT, batch)
    with caplog.at_level(logging.WARNING):
        events = ocsf_of(coder, [RawEvent.log_event(index, event) for index, event in enumerate(batch.log_events)])
    marked = [event for event in events if event["class_uid"] == 0]
    assert [event["unmapped"][REASON] for event in marked] == ["no verb (api.operation)"] * 3
    assert coder.unmappable == 3 and caplog.text.count("record not mapped to OCSF") == 3
    assert all(problems(event) == [] for event in events)
    assert [event["raw_data"] for event in events] == lines
    eks = next(event for event in events if event.get("actor", {}).get("session", {}).get("issuer"))
    assert eks["actor"]["user"]["uid"].startswith("aws-iam-authenticator:")


@pytest.mark.parametrize("verb", sorted(KUBERNETES_VERBS))
def test_every_kubernetes_resource_verb_maps_to_its_activity(verb: str) -> None:
    event = {"kind": "Event", "verb": verb, "user": {"username": "bob"}, "sourceIPs": ["10.0.0.1"]}
    event["stageTimestamp"] = "2024-12-04T12:00:00.123456Z"
    (mapped,) = audit_of(event)
    expected = {"create": 1, "get": 2, "list": 2, "watch": 2, "update": 3, "patch": 3, "delete": 4}
    assert mapped["activity_id"] == expected.get(verb, 4 if verb == "deletecollection" else None)
    assert mapped["type_uid"] == 600300 + mapped["activity_id"] and problems(mapped) == []


@pytest.mark.parametrize("verb", ["proxy", "impersonate", "bind", "escalate", "post", "head"])
def test_other_kubernetes_verbs_are_other(verb: str) -> None:
    event = {"kind": "Event", "verb": verb, "user": {"username": "bob"}, "sourceIPs": ["10.0.0.1"]}
    (mapped,) = audit_of(event)
    assert (mapped["activity_id"], mapped["activity_name"], mapped["api"]["operation"]) == (99, "Other", verb)


def record_event(record: dict[str, Any]) -> RawEvent:
    raw = orjson.dumps(record)
    return RawEvent.structured(0, raw, HeadReader(OcsfEncoder.watched).read(raw))


def audit_of(*events: dict[str, Any]) -> list[dict[str, Any]]:
    batch = log_batch([orjson.dumps(event).decode() for event in events])
    coder = encoder(AUDIT, batch)
    return ocsf_of(coder, [RawEvent.log_event(index, event) for index, event in enumerate(batch.log_events)])


@pytest.mark.parametrize(
    ("name", "read_only", "activity"),
    [
        ("CreateUser", None, Activity.CREATE),
        ("RunInstances", None, Activity.CREATE),
        ("GetPasswordData", True, Activity.READ),
        ("BatchGetSecretValue", True, Activity.READ),
        ("DescribeInstances", True, Activity.READ),
        ("PutEventSelectors", False, Activity.UPDATE),
        ("StopLogging", False, Activity.UPDATE),
        ("DeleteTrail", False, Activity.DELETE),
        ("TerminateInstances", False, Activity.DELETE),
        ("Decrypt", True, Activity.READ),
        ("ConsoleLogin", False, Activity.OTHER),
        ("Getaway", False, Activity.OTHER),
    ],
)
def test_cloudtrail_event_names_map_by_their_verb(name: str, read_only: Any, activity: Activity) -> None:
    assert cloudtrail_activity(name, read_only) is activity


def test_a_failed_cloudtrail_call_maps_field_for_field() -> None:
    record = {
        "eventVersion": "1.08",
        "eventTime": "2024-12-04T12:00:00Z",
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "UpdateTrail",
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-cli/2.0",
        "errorCode": "TrailNotFoundException",
        "errorMessage": "Unknown trail",
        "requestID": "req-1",
        "eventID": "evt-1",
        "recipientAccountId": "111122223333",
        "requestParameters": {"name": "trail"},
        "userIdentity": {
            "type": "AssumedRole",
            "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice",
            "principalId": "AROA:alice",
            "accountId": "111122223333",
            "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {
                "sessionIssuer": {"arn": "arn:aws:iam::111122223333:role/Admin"},
                "attributes": {"creationDate": "2024-12-04T11:00:00Z", "mfaAuthenticated": "true"},
            },
        },
        "resources": [{"ARN": "arn:aws:cloudtrail:eu-west-1:111122223333:trail/t", "type": "AWS::CloudTrail::Trail"}],
    }
    (event,) = ocsf_of(encoder(), [record_event(record)])
    assert problems(event) == []
    assert (event["activity_id"], event["status_id"], event["status"]) == (3, 2, "Failure")
    assert event["api"] == {
        "operation": "UpdateTrail",
        "service": {"name": "cloudtrail.amazonaws.com"},
        "request": {"uid": "req-1", "data": {"name": "trail"}},
        "response": {"error": "TrailNotFoundException", "message": "Unknown trail"},
    }
    user = event["actor"]["user"]
    assert (user["uid"], user["uid_alt"], user["type_id"], user["type"]) == (
        record["userIdentity"]["arn"], "AROA:alice", 99, "AssumedRole",
    )  # fmt: skip
    assert event["actor"]["session"] == {
        "issuer": "arn:aws:iam::111122223333:role/Admin",
        "created_time": 1733310000000,
        "created_time_dt": "2024-12-04T11:00:00.000Z",
        "is_mfa": True,
    }
    assert event["src_endpoint"] == {"ip": "192.0.2.10"}
    assert event["http_request"] == {"user_agent": "aws-cli/2.0"}
    assert event["cloud"] == {
        "provider": "AWS",
        "region": "eu-west-1",
        "account": {"uid": "111122223333", "type_id": 10, "type": "AWS Account"},
    }
    assert event["resources"][0]["uid"].endswith("trail/t")
    assert (event["time"], event["metadata"]["uid"]) == (1733313600000, "evt-1")
    assert orjson.loads(event["raw_data"]) == record


def test_a_service_source_address_is_a_name_not_an_ip() -> None:
    record = {"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:00Z", "eventName": "AssumeRole"}
    record |= {
        "sourceIPAddress": "ec2.amazonaws.com",
        "userIdentity": {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"},
    }
    (event,) = ocsf_of(encoder(), [RawEvent(0, record=orjson.dumps(record))])
    assert event["src_endpoint"] == {"name": "ec2.amazonaws.com", "domain": "ec2.amazonaws.com"}
    assert event["actor"]["invoked_by"] == "ec2.amazonaws.com" and problems(event) == []


def test_to_a_datadog_intake_the_ocsf_object_sits_beside_the_reserved_attributes() -> None:
    batch = log_batch(k8s_audit_lines()[:1])
    coder = encoder(AUDIT, batch, datadog=True)
    (entry,) = coder.entries(RawEvent.log_event(0, batch.log_events[0]))
    body = orjson.loads(entry.body)
    assert {key for key in body} == {
        "ddsource", "ddsourcecategory", "service", "host", "ddtags", "aws", "timestamp", "forwarder", "ocsf",
    }  # fmt: skip
    assert (body["ddsource"], body["host"]) == ("kubernetes.audit", "/aws/eks/prod/cluster")
    assert "output_format:ocsf" in body["ddtags"].split(",")
    assert body["timestamp"] == body["ocsf"]["time"] and body["forwarder"]["id"] == "0"
    assert problems(body["ocsf"]) == []


def test_other_sources_pass_through_as_marked_base_events(caplog: Any) -> None:
    batch = log_batch(["START RequestId: 1 Version: $LATEST", '{"level":"info"}'], group="/aws/lambda/app")
    coder = encoder(Source("lambda", "lambda", "/aws/lambda/app"), batch)
    with caplog.at_level(logging.INFO):
        events = ocsf_of(coder, [RawEvent.log_event(index, event) for index, event in enumerate(batch.log_events)])
    assert [event["unmapped"] for event in events] == [{MARKER: "passthrough"}] * 2
    assert [event["raw_data"] for event in events] == [event.message for event in batch.log_events]
    assert [event["time"] for event in events] == [1733313600000, 1733313600001]
    assert all(problems(event) == [] for event in events)
    assert caplog.text.count("not mapped to OCSF") == 1 and coder.unmappable == 0


def test_cloudtrail_under_another_source_name_is_mapped_by_its_shape() -> None:
    record = {"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:00Z", "eventName": "ListBuckets"}
    record |= {"sourceIPAddress": "192.0.2.1", "userIdentity": {"type": "Root", "accountId": "111122223333"}}
    coder = encoder(Source("my-trail", "my-trail", "trail-bucket"))
    (event,) = ocsf_of(coder, [RawEvent.line(1, orjson.dumps(record).decode(), 10)])
    assert (event["class_uid"], event["activity_id"], event["actor"]["user"]["type"]) == (6003, 2, "Admin")


def test_a_text_line_in_an_audit_source_is_unmappable_and_kept() -> None:
    batch = log_batch(["not json at all"])
    coder = encoder(AUDIT, batch)
    (event,) = ocsf_of(coder, [RawEvent.log_event(0, batch.log_events[0])])
    assert event["unmapped"] == {MARKER: "unmappable", REASON: "not a CloudTrail record or audit event"}
    assert event["raw_data"] == "not json at all" and coder.unmappable == 1


def test_a_record_nested_past_what_orjson_writes_is_kept_as_text() -> None:
    nested = '{"eventVersion":"1.08","eventName":"PutObject","sourceIPAddress":"192.0.2.1",'
    nested += '"userIdentity":{"type":"Root","accountId":"1"},"requestParameters":' + "[" * 300 + "]" * 300 + "}"
    (event,) = ocsf_of(encoder(), [RawEvent(0, record=nested.encode())])
    assert event["unmapped"][MARKER] == "unmappable" and event["raw_data"] == nested


@pytest.mark.parametrize("size", [20_000, 200_000])
def test_an_entry_over_the_limit_is_shrunk_marked_and_still_valid(size: int) -> None:
    record = {"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:00Z", "eventName": "PutBucketPolicy"}
    record |= {"sourceIPAddress": "192.0.2.1", "userIdentity": {"type": "Root", "accountId": "111122223333"}}
    record["requestParameters"] = {"policy": "x" * 6000}
    record["resources"] = [{"ARN": f"arn:aws:s3:::b{index}"} for index in range(size // 50)]
    coder = encoder(settings=Settings(entry_max_bytes=16_384), datadog=True)
    (entry,) = coder.entries(RawEvent(0, record=orjson.dumps(record)))
    body = orjson.loads(entry.body)
    assert entry.truncated and len(entry.body) <= 16_384
    assert body["ocsf"]["unmapped"]["forwarder.truncated"] == "true" and problems(body["ocsf"]) == []
    assert body["ocsf"]["time"] == 1733313600000 and body["ddsource"] == "cloudtrail"


LAKE_SAMPLES = [
    ("eks_audit-1.1.0.parquet", "EKS_AUDIT/2.0", AUDIT, 6003),
    ("cloud_trail-consolelogin-1.0.0-rc.2.gz.parquet", "CLOUD_TRAIL_MGMT/1.0", TRAIL, 3002),
    ("vpc_flow-1.0.0-rc.2.gz.parquet", "VPC_FLOW/1.0", Source("vpc", "vpc", "lake"), 4001),
]


def lake_object(path: str) -> S3Object:
    return S3Object("aws-security-data-lake-us-east-1-x", f"aws/{path}/region=us-east-1/accountId={OWNER}/a.parquet")


def lake_rows(sample: str) -> list[RawEvent]:
    data = (FIXTURES / "securitylake" / sample).read_bytes()
    return list(read_parquet(io.BytesIO(data), sample, OcsfEncoder.watched, Tracker()))


@pytest.mark.parametrize(("sample", "path", "source", "class_uid"), LAKE_SAMPLES)
def test_security_lake_rows_pass_as_the_ocsf_events_they_are(
    sample: str, path: str, source: Source, class_uid: int
) -> None:
    (row,) = lake_rows(sample)
    coder = encoder(source, lake_object(path))
    (entry,) = coder.entries(row)
    assert entry.body == row.record and not entry.truncated, "the row as read: not wrapped, not rewritten"
    assert orjson.loads(entry.body)["class_uid"] == class_uid and coder.unmappable == 0


def test_to_a_datadog_intake_a_security_lake_row_is_the_ocsf_object_as_read() -> None:
    (row,) = lake_rows("eks_audit-1.1.0.parquet")
    (entry,) = encoder(AUDIT, lake_object("EKS_AUDIT/2.0"), datadog=True).entries(row)
    body = orjson.loads(entry.body)
    assert body["ocsf"] == orjson.loads(row.record or b"") and body["timestamp"] == body["ocsf"]["time"]
    assert body["ddsource"] == "kubernetes.audit" and "output_format:ocsf" in body["ddtags"].split(",")


def test_only_a_security_lake_object_s_ocsf_rows_pass_as_they_are() -> None:
    """Elsewhere an OCSF-looking record is not trusted as OCSF; in a lake object, a row that is not
    OCSF is treated as any record of its source (here, unmappable in an audit source)."""
    (row,) = lake_rows("eks_audit-1.1.0.parquet")
    (elsewhere,) = ocsf_of(encoder(AUDIT, S3Object("bucket", "exports/eks.parquet")), [row])
    assert (elsewhere["class_uid"], elsewhere["unmapped"][MARKER]) == (0, "unmappable")
    not_ocsf = RawEvent(0, record=orjson.dumps({"time": 1700000000000, "metadata": {}, "class_uid": "6003"}))
    coder = encoder(AUDIT, lake_object("EKS_AUDIT/2.0"))
    (event,) = ocsf_of(coder, [not_ocsf])
    assert event["class_uid"] == 0 and coder.unmappable == 1


def test_a_security_lake_row_over_the_limit_is_shrunk_and_marked_even_with_a_null_unmapped() -> None:
    row = {"class_uid": 4001, "time": 1700000000000, "metadata": {"version": "1.1.0"}, "unmapped": None}
    row["raw_data"] = "r" * 30_000
    coder = encoder(Source("vpc", "vpc", "lake"), lake_object("VPC_FLOW/2.0"), settings=Settings(entry_max_bytes=4096))
    (entry,) = coder.entries(RawEvent(0, record=orjson.dumps(row)))
    event = orjson.loads(entry.body)
    assert entry.truncated and len(entry.body) <= 4096 and event["class_uid"] == 4001
    assert event["unmapped"] == {"forwarder.truncated": "true", "forwarder.original_bytes": str(len(orjson.dumps(row)))}
