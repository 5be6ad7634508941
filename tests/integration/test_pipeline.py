"""End to end: `handle` against a real moto S3 server and the real local intake, on real fixtures."""

from __future__ import annotations

import gzip
from collections import Counter
from typing import Any

import orjson
import pytest

from bench.fixtures import cloudtrail_documents, k8s_audit_lines, records_of, s3_event, trail_key
from forwarder import runtime
from forwarder.devintake import LocalIntake
from forwarder.errors import ConfigError, IncompleteInvocation, UnsupportedEvent
from forwarder.formats import Block
from forwarder.handler import handle
from forwarder.metrics import Outcome, Tally
from forwarder.model import Deadline, Invoker, S3Object, Source
from forwarder.pipeline import Pipeline, Unit
from forwarder.process import EventList

from .helpers import (
    ACCOUNT,
    FIXTURES,
    awslogs_event,
    canonical,
    context,
    eventbridge_event,
    put,
    settings_for,
    sqs_event,
    without_metadata,
)

BUCKET = "trail-bucket"


def test_every_cloudtrail_record_arrives_exactly_once(s3: Any, intake: LocalIntake) -> None:
    documents = cloudtrail_documents()
    keys = []
    for name, document in documents.items():
        keys.append(trail_key(name))
        put(s3, BUCKET, keys[-1], document)
    expected = Counter(canonical(record) for document in documents.values() for record in records_of(document))

    summary = handle(s3_event(BUCKET, *keys), context(), settings_for(intake.url))

    received = intake.entries
    assert Counter(canonical(without_metadata(entry)) for entry in received) == expected
    assert {entry["ddsource"] for entry in received} == {"cloudtrail"}
    assert summary["events_read"] == summary["events_delivered"] == sum(expected.values()) > 300
    by_key = Counter(entry["aws"]["s3"]["key"] for entry in received)
    assert set(by_key) == set(keys)


def test_cloudtrail_recognised_by_content_under_any_key(s3: Any, intake: LocalIntake) -> None:
    document = cloudtrail_documents()["plaso_aws_cloudtrail.json"]
    put(s3, "copies", "backup/2024/copied trail+file.json.gz", document)

    handle(s3_event("copies", "backup/2024/copied trail+file.json.gz"), context(), settings_for(intake.url))

    assert len(intake.entries) == len(records_of(document))
    assert {entry["ddsource"] for entry in intake.entries} == {"cloudtrail"}
    assert {entry["aws"]["s3"]["key"] for entry in intake.entries} == {"backup/2024/copied trail+file.json.gz"}


def test_eks_audit_events_from_cloudwatch_are_labelled(intake: LocalIntake) -> None:
    lines = k8s_audit_lines()
    event = awslogs_event("/aws/eks/prod-eu/cluster", "kube-apiserver-audit-0123456789abcdef", lines)

    summary = handle(event, context(), settings_for(intake.url, DD_TAGS="env:prod"))

    received = intake.entries
    assert [entry["message"] for entry in received] == lines
    assert {entry["ddsource"] for entry in received} == {"kubernetes.audit"}
    assert {entry["service"] for entry in received} == {"kubernetes.audit"}
    assert {entry["host"] for entry in received} == {"/aws/eks/prod-eu/cluster"}
    tags = received[0]["ddtags"].split(",")
    assert "kube_cluster_name:prod-eu" in tags and "env:prod" in tags and f"aws_account:{ACCOUNT}" in tags
    assert received[0]["aws"]["awslogs"]["logStream"] == "kube-apiserver-audit-0123456789abcdef"
    assert summary["events_delivered"] == len(lines) > 80


def test_control_messages_test_events_and_digests_are_skipped_and_counted(s3: Any, intake: LocalIntake) -> None:
    digest = (FIXTURES / "cloudtrail" / "awsdocs_cloudtrail-digest_example.json").read_bytes()
    digest_key = f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2024/12/04/{ACCOUNT}_CloudTrail-Digest_x.json.gz"
    put(s3, BUCKET, digest_key, digest)
    put(s3, BUCKET, "copied/digest.json.gz", digest)
    settings = settings_for(intake.url)

    control = handle(awslogs_event("", "", ["CWL CONTROL MESSAGE"], "CONTROL_MESSAGE"), context(), settings)
    test_event = handle({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET}, context(), settings)
    digests = handle(s3_event(BUCKET, digest_key, "copied/digest.json.gz"), context(), settings)

    assert control["skipped"] == {"control_message": 1}
    assert test_event["skipped"] == {"s3_test_event": 1}
    assert digests["skipped"] == {"cloudtrail_digest": 2}
    assert intake.entries == [] and intake.requests == 0


def test_sqs_eventbridge_and_sns_paths_deliver(s3: Any, intake: LocalIntake) -> None:
    document = cloudtrail_documents()["aws.persistence.iam-create-admin-user"]
    key = trail_key("sqs-paths")
    put(s3, BUCKET, key, document)
    records = len(records_of(document))
    settings = settings_for(intake.url)

    sqs = handle(sqs_event(s3_event(BUCKET, key), eventbridge_event(BUCKET, key)), context(), settings)
    direct = handle(eventbridge_event(BUCKET, key), context(), settings)
    cloudtrail_sns = {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {
                    "Message": orjson.dumps({"s3Bucket": BUCKET, "s3ObjectKey": [key]}).decode(),
                    "Type": "Notification",
                },
            }
        ]
    }
    handle(cloudtrail_sns, context(), settings)

    assert sqs == {"batchItemFailures": []}
    assert direct["events_delivered"] == records
    assert len(intake.entries) == 4 * records


def test_sqs_partial_batch_fails_only_bad_messages(s3: Any, intake: LocalIntake) -> None:
    key = trail_key("partial")
    put(s3, BUCKET, key, cloudtrail_documents()["aws.defense-evasion.cloudtrail-stop"])
    event = sqs_event(s3_event(BUCKET, key), "not json at all", s3_event(BUCKET, "AWSLogs/missing/object.json.gz"))

    result = handle(event, context(), settings_for(intake.url))

    assert result == {"batchItemFailures": [{"itemIdentifier": "message-1"}, {"itemIdentifier": "message-2"}]}
    assert len(intake.entries) == 1


def test_intake_down_fails_the_invocation_and_counts_every_event(s3: Any, intake: LocalIntake) -> None:
    key = trail_key("intake-down")
    put(s3, BUCKET, key, cloudtrail_documents()["aws.execution.ec2-user-data"])
    intake.script([500] * 100)
    settings = settings_for(intake.url, FORWARDER_MAX_ATTEMPTS="2")

    with pytest.raises(IncompleteInvocation, match="not delivered"):
        handle(s3_event(BUCKET, key), context(), settings)
    assert intake.entries == []


def test_wrong_api_key_is_reported_without_the_key(s3: Any, intake: LocalIntake, caplog: Any) -> None:
    key = trail_key("wrong-key")
    put(s3, BUCKET, key, cloudtrail_documents()["aws.defense-evasion.cloudtrail-stop"])
    wrong = "wrong-key-0000000000000000000000"

    with pytest.raises(IncompleteInvocation) as error:
        handle(s3_event(BUCKET, key), context(), settings_for(intake.url, DD_API_KEY=wrong))
    assert wrong not in str(error.value)
    assert intake.entries == []


def test_corrupt_gzip_delivers_what_came_before_and_names_object_and_offset(s3: Any, intake: LocalIntake) -> None:
    document = b"\n".join(line.encode() for line in k8s_audit_lines()) + b"\n"
    compressed = gzip.compress(document)
    key = "audit/truncated.log.gz"
    put(s3, BUCKET, key, compressed[: len(compressed) * 2 // 3], compress=False)

    with pytest.raises(IncompleteInvocation) as error:
        handle(s3_event(BUCKET, key), context(), settings_for(intake.url, FORWARDER_READ_CHUNK_BYTES="4096"))

    assert 0 < len(intake.entries) < len(k8s_audit_lines())
    assert f"s3://{BUCKET}/{key}" in str(error.value) and "compressed byte" in str(error.value)


def test_oversize_record_is_truncated_delivered_and_counted(s3: Any, intake: LocalIntake) -> None:
    big = {
        "eventVersion": "1.08",
        "eventName": "PutBucketPolicy",
        "eventID": "big-1",
        "eventTime": "2024-12-04T12:00:00Z",
        "requestParameters": {"policy": "x" * 1_500_000},
    }
    small = {"eventVersion": "1.08", "eventName": "GetObject", "eventID": "small-1"}
    key = trail_key("oversize")
    put(s3, BUCKET, key, orjson.dumps({"Records": [big, small]}))

    summary = handle(s3_event(BUCKET, key), context(), settings_for(intake.url))

    assert (summary["events_truncated"], summary["events_delivered"]) == (1, 1)
    truncated = next(entry for entry in intake.entries if entry.get("eventID") == "big-1")
    assert truncated["forwarder"]["truncated"] is True and truncated["eventName"] == "PutBucketPolicy"
    assert len(orjson.dumps(truncated)) <= 1_000_000


def test_plain_lines_object_goes_as_messages(s3: Any, intake: LocalIntake) -> None:
    path = FIXTURES / "k8s-audit" / "panther_eks-audit_normalized.jsonl"
    put(s3, "audit-archive", "eks/audit.jsonl", path.read_bytes(), compress=False)

    handle(s3_event("audit-archive", "eks/audit.jsonl"), context(), settings_for(intake.url))

    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert [entry["message"] for entry in intake.entries] == lines
    assert {entry["ddsource"] for entry in intake.entries} == {"kubernetes.audit"}  # audit events, by content


def test_unknown_event_shape_is_a_clear_error(intake: LocalIntake) -> None:
    with pytest.raises(UnsupportedEvent, match="unexpected"):
        handle({"unexpected": 1}, context(), settings_for(intake.url))


def test_missing_api_key_fails_at_first_invocation(s3: Any, intake: LocalIntake) -> None:
    key = trail_key("no-key")
    put(s3, BUCKET, key, cloudtrail_documents()["aws.defense-evasion.cloudtrail-stop"])
    with pytest.raises(ConfigError, match="DD_API_KEY"):
        handle(s3_event(BUCKET, key), context(), settings_for(intake.url, DD_API_KEY=""))


def test_cloudtrail_delivered_through_cloudwatch_logs_is_labelled_cloudtrail(intake: LocalIntake) -> None:
    path = FIXTURES / "envelopes" / "cloudwatch-logs" / "datadog_cloudwatch_log_cloudtrail.decoded.json"
    payload = orjson.loads(path.read_bytes())
    messages = [event["message"] for event in payload["logEvents"]]
    event = awslogs_event(payload["logGroup"], payload["logStream"], messages)

    handle(event, context(), settings_for(intake.url))

    # As structured as CloudTrail from S3: the record's fields at the top level, not a `message`.
    assert [without_metadata(entry) for entry in intake.entries] == [orjson.loads(m) for m in messages]
    assert {entry["ddsource"] for entry in intake.entries} == {"cloudtrail"}
    assert {entry["host"] for entry in intake.entries} == {payload["logGroup"]}
    assert {entry["forwarder"]["id"] for entry in intake.entries} == {orjson.loads(m)["eventID"] for m in messages}


class DropEveryThird:
    """A processor that filters every third event by position and keeps the rest as read."""

    def process(self, block: Block, source: Source) -> tuple[Block | None, int]:
        events = list(block.events())
        kept = [event for event in events if event.position % 3]
        if len(kept) == len(events):
            return block, 0
        return (EventList(kept, block.last()) if kept else None), len(events) - len(kept)


def test_a_processor_filters_events_and_the_tally_counts_them(s3: Any, intake: LocalIntake) -> None:
    """`filtered` is an outcome of its own: read == delivered + filtered, and the rest arrive as read."""
    document = cloudtrail_documents()["plaso_aws_cloudtrail.json"]
    key = trail_key("processed")
    put(s3, BUCKET, key, document)
    records = records_of(document)
    settings = settings_for(intake.url)
    tally = Tally()
    run = Pipeline(
        settings,
        Invoker(),
        Deadline(lambda: 60_000, 0),
        tally,
        lambda: runtime.OUTPUT.get(settings),
        [DropEveryThird()],
    )
    unit = Unit(0, "s3", S3Object(BUCKET, key))

    run.run(unit, guard=None)

    kept = [record for position, record in enumerate(records) if position % 3]
    assert not unit.failed
    assert [canonical(without_metadata(entry)) for entry in intake.entries] == [canonical(r) for r in kept]
    assert tally.summary()["events_filtered"] == len(records) - len(kept) > 0
    assert tally.total(Outcome.DELIVERED) == len(kept) and tally.balanced()
