"""EventBridge events that are not S3 notifications, end to end: `handle` → the real local intake."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from bench.fixtures import s3_event, trail_key
from forwarder.devintake import LocalIntake
from forwarder.errors import IncompleteInvocation
from forwarder.handler import handle
from forwarder.times import iso_ms

from .helpers import FIXTURES, context, put, settings_for, sqs_event, without_metadata

GUARDDUTY = FIXTURES / "guardduty" / "eventbridge_kubernetes-privileged-container.json"
CLOUDTRAIL = FIXTURES / "envelopes" / "eventbridge" / "awsdocs-step-functions_cloudtrail-s3-putobject.json"
EC2 = FIXTURES / "envelopes" / "eventbridge" / "powertools_eventBridgeEvent.json"


def load(path: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def tags(entry: dict[str, Any]) -> list[str]:
    return str(entry["ddtags"]).split(",")


def test_a_guardduty_finding_arrives_whole_labelled_and_at_its_own_time(intake: LocalIntake) -> None:
    event = load(GUARDDUTY)

    summary = handle(event, context(), settings_for(intake.url))

    (entry,) = intake.entries
    assert summary["events_delivered"] == 1 and summary["by_source"] == {"eventbridge/guardduty": 1}
    assert without_metadata(entry) == event
    assert (entry["ddsource"], entry["service"], entry["host"]) == ("guardduty", "guardduty", "aws.guardduty")
    assert entry["forwarder"]["id"] == event["id"]
    assert entry["timestamp"] == iso_ms(event["detail"]["updatedAt"])
    assert entry["aws"]["eventbridge"] == {
        "id": event["id"],
        "source": "aws.guardduty",
        "detail-type": "GuardDuty Finding",
    }
    expected = [
        "aws_account:123456789012",
        "region:us-east-1",
        "severity:Medium",
        "finding_type:PrivilegeEscalation:Kubernetes/PrivilegedContainer",
        "kube_cluster_name:guardduty-blueprint",
    ]
    assert tags(entry)[-len(expected) :] == expected


def test_a_cloudtrail_event_arrives_as_the_same_record_from_s3_would(s3: Any, intake: LocalIntake) -> None:
    event = load(CLOUDTRAIL)
    key = trail_key("eventbridge-compare")
    put(s3, "eventbridge-trail", key, orjson.dumps({"Records": [event["detail"]]}))
    settings = settings_for(intake.url)

    handle(s3_event("eventbridge-trail", key), context(), settings)
    handle(event, context(), settings)

    from_s3, from_eventbridge = intake.entries
    assert without_metadata(from_eventbridge) == without_metadata(from_s3) == event["detail"]
    for name in ("ddsource", "service", "timestamp", "forwarder"):
        assert from_eventbridge[name] == from_s3[name], name
    assert from_eventbridge["forwarder"]["id"] == event["detail"]["eventID"]
    assert from_eventbridge["timestamp"] == iso_ms(event["detail"]["eventTime"])
    assert from_eventbridge["aws"]["eventbridge"]["id"] == event["id"]


@pytest.mark.parametrize(
    ("change", "ddsource"),
    [({}, "ec2"), ({"source": "com.example.app", "detail-type": "Order Placed"}, "com.example.app")],
)
def test_any_other_event_arrives_whole_named_after_its_source(
    intake: LocalIntake, change: dict[str, str], ddsource: str
) -> None:
    event = {**load(EC2), **change}

    handle(event, context(), settings_for(intake.url))

    (entry,) = intake.entries
    assert without_metadata(entry) == event
    assert (entry["ddsource"], entry["timestamp"], entry["forwarder"]["id"]) == (
        ddsource,
        iso_ms(event["time"]),
        event["id"],
    )


def test_eventbridge_events_in_an_sqs_batch_each_succeed_beside_s3_objects(s3: Any, intake: LocalIntake) -> None:
    key = trail_key("eventbridge-sqs")
    put(s3, "eventbridge-sqs", key, orjson.dumps({"Records": [load(CLOUDTRAIL)["detail"]]}))
    event = sqs_event(load(GUARDDUTY), load(CLOUDTRAIL), load(EC2), s3_event("eventbridge-sqs", key))

    answer = handle(event, context(), settings_for(intake.url))

    assert answer == {"batchItemFailures": []}
    assert sorted(entry["ddsource"] for entry in intake.entries) == ["cloudtrail", "cloudtrail", "ec2", "guardduty"]


def test_an_event_that_cannot_be_sent_fails_the_invocation_naming_it(intake: LocalIntake) -> None:
    event = {**load(EC2), "id": "unwritable", "detail": {"text": "\ud800"}}

    with pytest.raises(IncompleteInvocation) as raised:
        handle(event, context(), settings_for(intake.url))

    assert "EventBridge event unwritable" in str(raised.value)
    assert intake.entries == []
