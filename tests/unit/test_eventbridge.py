"""EventBridge events that are not S3 notifications: their source (`sources.for_event`) and their one
event (`formats.inline.read_event`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder import sources
from forwarder.errors import InputError
from forwarder.formats.inline import ENVELOPE_TIME, Shape, read_event
from forwarder.model import EventBridgeEvent, RawEvent
from forwarder.outputs.datadog import RESERVED
from forwarder.settings import Settings
from forwarder.times import TIME_FIELDS, iso_ms

FIXTURES = Path(__file__).parent.parent / "fixtures"
DEFAULT = Settings()


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def item(event: dict[str, Any]) -> EventBridgeEvent:
    return EventBridgeEvent(event, str(event.get("id", "no-id")))


def only(event: EventBridgeEvent, shape: Shape, times: tuple[tuple[str, ...], ...] = ENVELOPE_TIME) -> RawEvent:
    (raw,) = read_event(event, shape, times, RESERVED)
    return raw


def test_a_kubernetes_finding_is_labelled_by_its_own_content() -> None:
    decided = sources.for_event(item(load("guardduty/eventbridge_kubernetes-privileged-container.json")), DEFAULT)
    assert (decided.source.name, decided.source.service, decided.source.host) == ("guardduty",) * 2 + ("aws.guardduty",)
    assert decided.source.tags == (
        "aws_account:123456789012",  # the finding's account, not the envelope's (a delegated administrator's)
        "region:us-east-1",
        "severity:Medium",
        "finding_type:PrivilegeEscalation:Kubernetes/PrivilegedContainer",
        "kube_cluster_name:guardduty-blueprint",
    )
    assert (decided.shape, decided.times) == (Shape.EVENT, sources.FINDING_TIMES)


def test_a_finding_about_no_cluster_has_no_cluster_tag() -> None:
    decided = sources.for_event(item(load("guardduty/eventbridge_iam-administrative-permissions.json")), DEFAULT)
    assert "severity:High" in decided.source.tags
    assert "finding_type:PrivilegeEscalation:IAMUser/AdministrativePermissions" in decided.source.tags
    assert not [tag for tag in decided.source.tags if tag.startswith("kube_cluster_name:")]


def test_a_value_in_a_finding_never_adds_a_tag_of_its_own() -> None:
    event = load("guardduty/eventbridge_kubernetes-privileged-container.json")
    event["detail"]["type"] = "Recon:EC2/Portscan,env:prod team:x"
    event["detail"]["resource"]["eksClusterDetails"]["name"] = 42
    tags = sources.for_event(item(event), DEFAULT).source.tags
    assert "finding_type:Recon:EC2/Portscan_env:prod_team:x" in tags
    assert not [tag for tag in tags if tag.startswith(("env:", "kube_cluster_name:"))]


@pytest.mark.parametrize(
    ("severity", "band"),
    [
        *[(0.1, "Low"), (3.9, "Low"), (4, "Medium"), (6.9, "Medium"), (7.0, "High"), (8.9, "High")],
        *[(9, "Critical"), (10.0, "Critical"), ("8", None), (True, None), (None, None), (float("nan"), None)],
    ],
)
def test_severity_bands_are_guarddutys(severity: Any, band: str | None) -> None:
    assert sources.severity_band(severity) == band


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("aws.securityhub", "securityhub"),
        ("aws.ec2", "ec2"),
        ("com.example.app", "com.example.app"),
        ("aws.partner/example.com/123/stream", "aws.partner/example.com/123/stream"),
        ("my,app", "my_app"),
        ("", "eventbridge"),
        (7, "eventbridge"),
    ],
)
def test_other_events_are_named_after_their_source(source: Any, name: str) -> None:
    decided = sources.for_event(item({"source": source, "detail-type": "Something Happened", "detail": {}}), DEFAULT)
    assert (decided.source.name, decided.source.tags, decided.shape) == (name, (), Shape.EVENT)
    assert decided.times == ENVELOPE_TIME


@pytest.mark.parametrize(
    "detail_type",
    ["AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail", "AWS Service Event via CloudTrail"],
)
def test_cloudtrail_events_are_read_as_the_record_they_carry(detail_type: str) -> None:
    decided = sources.for_event(item({"source": "aws.iam", "detail-type": detail_type, "detail": {}}), DEFAULT)
    assert (decided.source.name, decided.source.time_fields, decided.shape) == ("cloudtrail", TIME_FIELDS, Shape.RECORD)


def test_the_source_override_names_every_event() -> None:
    settings = Settings.from_env({"DD_SOURCE": "custom"})
    decided = sources.for_event(item(load("guardduty/eventbridge_kubernetes-privileged-container.json")), settings)
    assert decided.source.name == "custom"


def test_a_record_is_the_detail_with_its_own_id_and_time() -> None:
    event = load("envelopes/eventbridge/awsdocs-step-functions_cloudtrail-s3-putobject.json")
    raw = only(item(event), Shape.RECORD)
    assert raw.record is not None and orjson.loads(raw.record) == event["detail"]
    assert (raw.head.eventID, raw.head.eventTime) == ("cdc4b7ed-e171-4cef-975a-ad829d4123e8", "2018-09-12T00:25:10Z")
    assert raw.timestamp_ms == iso_ms(event["time"])


def test_a_record_shape_whose_detail_is_no_object_goes_whole() -> None:
    event = {"id": "e", "source": "aws.iam", "detail-type": "AWS API Call via CloudTrail", "detail": "text"}
    raw = only(item(event), Shape.RECORD)
    assert raw.record is not None and orjson.loads(raw.record) == event
    assert raw.head.eventID == "e"


@pytest.mark.parametrize(
    ("drop", "expected"),
    [
        ((), "2023-03-22T21:28:07.748Z"),
        (("updatedAt",), "2023-03-22T21:28:07.748Z"),
        (("updatedAt", "createdAt"), None),
    ],
)
def test_a_finding_goes_whole_with_the_event_id_and_its_own_time(drop: tuple[str, ...], expected: str | None) -> None:
    event = load("guardduty/eventbridge_kubernetes-privileged-container.json")
    event["detail"]["createdAt"] = "2023-03-22T21:28:07.748Z"
    event["detail"]["updatedAt"] = "2023-03-22T21:28:07.748Z"
    for name in drop:
        del event["detail"][name]
    raw = only(item(event), Shape.EVENT, sources.FINDING_TIMES)
    assert raw.record is not None and orjson.loads(raw.record) == event
    assert raw.head.eventID == "cd2d702e-ab31-411b-9344-793ce56b1bc7"
    # the envelope's documented time is epoch zero, which counts as no time at all
    assert raw.head.eventTime == expected
    assert raw.timestamp_ms == (iso_ms(expected) if expected else None)


def test_an_integer_orjson_cannot_write_is_written_by_the_standard_library() -> None:
    event = {
        "id": "e",
        "source": "com.example.app",
        "detail-type": "Big",
        "detail": {"n": 2**70},
        "time": "2024-12-04T12:00:00Z",
    }
    raw = only(item(event), Shape.EVENT)
    assert raw.record == json.dumps(event).encode()
    assert raw.timestamp_ms == iso_ms("2024-12-04T12:00:00Z")


def test_an_event_that_cannot_be_written_is_an_input_error_naming_it() -> None:
    event = {"id": "bad-one", "source": "com.example.app", "detail-type": "Broken", "detail": {"s": "\ud800"}}
    with pytest.raises(InputError) as raised:
        only(item(event), Shape.EVENT)
    assert raised.value.origin == "EventBridge event bad-one" and raised.value.position == "event"
