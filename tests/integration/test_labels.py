"""End to end: one forwarder in a log-archive account labels each event with the account, region and
host that own it, and adds the bucket's or log group's own tags (moto S3 and Logs, the local intake)."""

from __future__ import annotations

from typing import Any

import boto3
import orjson
import pytest
from botocore.config import Config

from bench.fixtures import cloudtrail_documents, k8s_audit_lines, records_of, s3_event
from forwarder import runtime, tags
from forwarder.devintake import LocalIntake
from forwarder.handler import handle
from forwarder.tags import TagCache

from .helpers import ACCOUNT, awslogs_event, context, put, settings_for

CLOSED = "http://127.0.0.1:9"
"""The discard port: nothing listens there on a test machine, so a connection is refused at once."""
ARCHIVE = "org-log-archive"
MEMBER = "444455556666"
ORG_KEY = f"AWSLogs/o-a1b2c3d4e5/{MEMBER}/CloudTrail/eu-west-3/2024/12/04/{MEMBER}_CloudTrail_eu-west-3_f.json.gz"
INSTANCE_ARN = f"arn:aws:sts::{MEMBER}:assumed-role/WebServer/i-0a1b2c3d4e5f60718"


@pytest.fixture(autouse=True)
def fresh_tag_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tags, "CACHE", TagCache())


def tags_of(entry: dict[str, Any]) -> dict[str, str]:
    return dict(tag.partition(":")[::2] for tag in entry["ddtags"].split(","))


def test_an_organisation_trail_is_labelled_with_each_records_account_region_and_host(
    s3: Any, intake: LocalIntake
) -> None:
    records = records_of(cloudtrail_documents()["plaso_aws_cloudtrail.json"])[:6]
    for index, record in enumerate(records):
        record.update(recipientAccountId=MEMBER, awsRegion="eu-west-3", eventID=f"event-{index}")
        record.pop("userIdentity", None)
    records[1].update(recipientAccountId="777788889999", awsRegion="ap-northeast-1")
    records[2]["userIdentity"] = {"type": "AssumedRole", "arn": INSTANCE_ARN}
    put(s3, ARCHIVE, ORG_KEY, orjson.dumps({"Records": records}))
    s3.put_bucket_tagging(Bucket=ARCHIVE, Tagging={"TagSet": [{"Key": "DataClass", "Value": "Audit Logs"}]})

    summary = handle(s3_event(ARCHIVE, ORG_KEY), context(), settings_for(intake.url, DD_FETCH_S3_TAGS="true"))

    received = sorted(intake.entries, key=lambda entry: entry["eventID"])
    assert summary["events_delivered"] == len(records) and summary["tag_fetch_errors"] == 0
    where = [(tags_of(e)["aws_account"], tags_of(e)["region"], e["host"]) for e in received]
    assert where[0] == (MEMBER, "eu-west-3", ARCHIVE) != (ACCOUNT, "us-east-1", ARCHIVE)
    assert where[1] == ("777788889999", "ap-northeast-1", ARCHIVE)
    assert where[2] == (MEMBER, "eu-west-3", "i-0a1b2c3d4e5f60718")
    assert all(tags_of(e)["dataclass"] == "audit_logs" for e in received)
    assert all(e["ddtags"].count("aws_account:") == 1 for e in received)


def test_cloudwatch_events_carry_the_owner_and_the_log_groups_tags(intake: LocalIntake, moto_endpoint: str) -> None:
    boto3.client("logs", endpoint_url=moto_endpoint).create_log_group(
        logGroupName="/aws/eks/labels/cluster", tags={"Team": "Platform"}
    )
    event = awslogs_event("/aws/eks/labels/cluster", "kube-apiserver-audit-0123", k8s_audit_lines()[:3])

    summary = handle(event, context(), settings_for(intake.url, DD_FETCH_LOG_GROUP_TAGS="true"))

    assert summary["events_delivered"] == 3 and summary["tag_fetch_errors"] == 0
    for entry in intake.entries:
        assert tags_of(entry)["aws_account"] == ACCOUNT == entry["aws"]["awslogs"]["owner"]
        assert tags_of(entry)["team"] == "platform" and tags_of(entry)["kube_cluster_name"] == "labels"


def test_a_tag_lookup_that_fails_never_holds_back_delivery(
    intake: LocalIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Logs API unreachable (a closed port on 127.0.0.1): counted, and the events still go."""
    unreachable = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1)
    monkeypatch.setattr(
        runtime, "client", lambda service: boto3.client(service, endpoint_url=CLOSED, config=unreachable)
    )
    event = awslogs_event("/aws/eks/no-such-group/cluster", "kube-apiserver-audit-0123", k8s_audit_lines()[:2])

    summary = handle(event, context(), settings_for(intake.url, DD_FETCH_LOG_GROUP_TAGS="true"))

    assert summary["events_delivered"] == 2 and summary["tag_fetch_errors"] == 1
    assert len(intake.entries) == 2


def test_cloudtrail_through_cloudwatch_arrives_as_structured_as_from_s3(s3: Any, intake: LocalIntake) -> None:
    records = records_of(cloudtrail_documents()["plaso_aws_cloudtrail.json"])[:5]
    for index, record in enumerate(records):
        record["eventID"] = f"event-{index}"
    key = f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/12/04/{ACCOUNT}_CloudTrail_us-east-1_f.json.gz"
    put(s3, "trail-bucket", key, orjson.dumps({"Records": records}))
    handle(s3_event("trail-bucket", key), context(), settings_for(intake.url))
    from_s3 = {entry["forwarder"]["id"]: entry for entry in intake.entries}
    seen = len(intake.entries)
    messages = [orjson.dumps(record).decode() for record in records] + ["not json"]
    event = awslogs_event("aws-cloudtrail-logs-trail", f"{ACCOUNT}_CloudTrail_us-east-1", messages)

    summary = handle(event, context(), settings_for(intake.url))

    assert summary["events_delivered"] == len(messages)
    delivered = intake.entries[seen:]
    from_logs = {entry["forwarder"]["id"]: entry for entry in delivered}
    for event_id, entry in from_s3.items():
        same = from_logs[event_id]
        assert "message" not in same and same["ddsource"] == entry["ddsource"] == "cloudtrail"
        assert {k: v for k, v in same.items() if k not in ("aws", "host")} == {
            k: v for k, v in entry.items() if k not in ("aws", "host")
        }
    assert [entry["message"] for entry in delivered if "message" in entry] == ["not json"]
    assert {entry["host"] for entry in delivered} == {"aws-cloudtrail-logs-trail"}
