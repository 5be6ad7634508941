"""triggers.parse_event: every real envelope routes to the right work items, skips or errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.errors import UnsupportedEvent
from forwarder.model import (
    AwsLogs,
    BatchOperations,
    Checkpoint,
    EventBridgeEvent,
    Invocation,
    Message,
    Replay,
    S3Object,
    Skip,
)
from forwarder.reliability import continuation
from forwarder.triggers import parse_event

FIXTURES = Path(__file__).parent.parent / "fixtures" / "envelopes"
EVENTS = Path(__file__).parent.parent.parent / "events"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def sqs_record(body: str, message_id: str = "m-1") -> dict[str, Any]:
    return {"messageId": message_id, "receiptHandle": "rh", "body": body, "eventSource": "aws:sqs"}


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {"Records": [sqs_record(body, f"m-{n}") for n, body in enumerate(bodies, 1)]}


def sns_record(message: str) -> dict[str, Any]:
    """SNS straight to Lambda, which spells the URL fields ...Url."""
    return {"EventSource": "aws:sns", "Sns": {"Type": "Notification", "Message": message, "SigningCertUrl": "x"}}


def sns_in_sqs(message: str) -> str:
    """The SNS envelope as an SQS body: pretty-printed with " : " and the URL fields spelled ...URL."""
    envelope = {"Type": "Notification", "MessageId": "sns-1", "Message": message, "SigningCertURL": "x"}
    return json.dumps(envelope, indent=2, separators=(",", " : "))


def s3_record(key: str, event_name: str = "ObjectCreated:Put", bucket: str = "b") -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1, "eTag": "e", "sequencer": "s"}},
    }


def s3_event(*keys: str) -> dict[str, Any]:
    return {"Records": [s3_record(key) for key in keys]}


def eventbridge(key: str, detail_type: str = "Object Created") -> dict[str, Any]:
    return {
        "source": "aws.s3",
        "detail-type": detail_type,
        "detail": {"bucket": {"name": "b"}, "object": {"key": key, "etag": "e", "version-id": "v", "size": 7}},
    }


def keys(invocation: Invocation) -> list[tuple[str | None, str, str, str]]:
    """(message id, trigger, bucket, key) of every S3Object, in order."""
    return [
        (message.message_id, message.trigger, item.bucket, item.key)
        for message in invocation.messages
        for item in message.items
        if isinstance(item, S3Object)
    ]


CLOUDTRAIL_KEYS = {
    "sns/awsdocs_cloudtrail-sns-notification-message_single.json": [
        "AWSLogs/123456789012/CloudTrail/us-east-2/2013/12/13/"
        "123456789012_CloudTrail_us-west-2_20131213T1920Z_LnPgDQnpkSKEsppV.json.gz"
    ],
    "sns/awsdocs_cloudtrail-sns-notification-message_multiple.json": [
        "AWSLogs/123456789012/CloudTrail/us-east-2/2016/08/11/"
        "123456789012_CloudTrail_us-east-2_20160811T2215Z_kpaMYavMQA9Ahp7L.json.gz",
        "AWSLogs/123456789012/CloudTrail/us-east-2/2016/08/11/"
        "123456789012_CloudTrail_us-east-2_20160811T2210Z_zqDkyQv3TK8ZdLr0.json.gz",
        "AWSLogs/123456789012/CloudTrail/us-east-2/2016/08/11/"
        "123456789012_CloudTrail_us-east-2_20160811T2205Z_jaMVRa6JfdLCJYHP.json.gz",
    ],
}


@pytest.mark.parametrize(
    ("fixture", "from_sqs", "expected"),
    [
        ("s3/aws-lambda-go_s3-event.json", False, [(None, "s3", "sourcebucket", "Happy Face.jpg")]),
        (
            "s3/powertools_s3Event.json",
            False,
            [(None, "s3", "lambda-artifacts-deafc19498e3f2df", "b21b84d653bb07b05b1e6b33684dc11b")],
        ),
        (
            "s3/powertools-pr_sns_s3_event.json",
            False,
            [(None, "sns", "s3-sns-unwrap-bucket-683517028648", "samconfig.toml")],
        ),
        (
            "s3/powertools-pr_eventbridge_s3_event.json",
            False,
            [(None, "eventbridge", "s3-eb-unwrap-sourcebucket-7mop1gqlyrzu", "s3-eb-template.yaml")],
        ),
        (
            "s3/powertools_s3EventBridgeNotificationObjectCreatedEvent.json",
            False,
            [(None, "eventbridge", "example-bucket", "IMG_m7fzo3.jpg")],
        ),
        (
            "s3/powertools_s3SqsEvent.json",
            True,
            [("ca3e7a89-c358-40e5-8aa0-5da01403c267", "sqs", "xxx", "test.pdf")],
        ),
        (
            "s3/powertools-pr_sqs_s3_event.json",
            True,
            [("44103047-3123-4583-aed3-7224000351a8", "sqs", "sqs-s3-unwrap-bucket-683517028648", "samconfig.toml")],
        ),
        (
            "s3/powertools-pr_sqs_rawsns_s3_event.json",
            True,
            [("519619da-e529-46d7-b58c-bc054405af0f", "sqs", "unwraptestevents-bucket-683517028648", "samconfig.toml")],
        ),
        (
            "s3/powertools-pr_sqs_sns_s3_event.json",
            True,
            [
                (
                    "45405be4-2278-4eef-a29c-993898bb8917",
                    "sqs/sns",
                    "unwraptestevents-bucket-683517028648",
                    "firehose-s3-template.json",
                )
            ],
        ),
        (
            "s3/powertools-pr_sqs_eventbridge_s3_event.json",
            True,
            [
                (
                    "ee95829a-ba32-471d-9684-34368ab9995e",
                    "sqs/eventbridge",
                    "s3-eb-unwrap-sourcebucket-7mop1gqlyrzu",
                    "__init__.py",
                )
            ],
        ),
    ],
)
def test_envelope_fixture_routes_to_its_object(fixture: str, from_sqs: bool, expected: list[tuple]) -> None:
    invocation = parse_event(load(fixture))
    assert invocation.from_sqs is from_sqs, fixture
    assert keys(invocation) == expected, fixture
    assert all(message.error is None for message in invocation.messages), fixture


def test_s3_notification_carries_version_etag_size_sequencer() -> None:
    (message,) = parse_event(load("s3/aws-lambda-go_s3-event.json")).messages
    assert message.items == (
        S3Object(
            "sourcebucket", "Happy Face.jpg", "version", "d41d8cd98f00b204e9800998ecf8427e", 1024, "Happy Sequencer"
        ),
    )


def test_eventbridge_lowercase_etag_and_hyphenated_version_id() -> None:
    (message,) = parse_event(eventbridge("k")).messages
    assert message.items == (S3Object("b", "k", version_id="v", etag="e", size=7),)


def test_sekoia_sqs_bodies_cloudtrail_deliveries_and_test_event() -> None:
    bodies = (FIXTURES / "s3/sekoia_sqs-bodies_cloudtrail-delivery-and-s3-testevent.jsonl").read_text().splitlines()
    invocation = parse_event(sqs_event(*bodies))

    prefix = "AWSLogs/111111111111/CloudTrail/eu-west-2/2022/02/21/111111111111_CloudTrail_eu-west-2_20220221T"
    assert invocation.from_sqs
    assert keys(invocation) == [
        ("m-1", "sqs", "aws-cloudtrail-111111111111-3abc4c4f", prefix + "1020Z_nTGkKkyO0OcwEIvv.json.gz"),
        ("m-3", "sqs", "aws-cloudtrail-111111111111-3abc4c4f", prefix + "1055Z_YhegGgxhib9WTAx8.json.gz"),
    ]
    assert invocation.messages[1] == Message(
        "m-2", "sqs", (Skip("s3_test_event", "bucket aws-cloudtrail-logs-111111111111-3abc4c4f"),)
    )


@pytest.mark.parametrize("fixture", sorted(CLOUDTRAIL_KEYS))
def test_cloudtrail_sns_message_keys_are_not_unquoted(fixture: str) -> None:
    message = (FIXTURES / fixture).read_text()
    expected = CLOUDTRAIL_KEYS[fixture]
    bucket = "your-bucket-name"

    direct = parse_event({"Records": [sns_record(message)]})
    via_sqs = parse_event(sqs_event(sns_in_sqs(message)))
    raw_in_sqs = parse_event(sqs_event(message))

    assert keys(direct) == [(None, "cloudtrail-sns", bucket, key) for key in expected]
    assert keys(via_sqs) == [("m-1", "sqs/cloudtrail-sns", bucket, key) for key in expected]
    assert keys(raw_in_sqs) == [("m-1", "sqs/cloudtrail-sns", bucket, key) for key in expected]


def test_cloudtrail_sns_key_with_plus_stays_as_is() -> None:
    message = json.dumps({"s3Bucket": "b", "s3ObjectKey": ["a+b%20c.json.gz"]})
    assert keys(parse_event({"Records": [sns_record(message)]})) == [(None, "cloudtrail-sns", "b", "a+b%20c.json.gz")]


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("Happy%20Face.jpg", "Happy Face.jpg"),
        ("red+flower.jpg", "red flower.jpg"),
        ("c%2B%2B.tar.gz", "c++.tar.gz"),
        ("caf%C3%A9/r%C3%A9sum%C3%A9.json", "café/résumé.json"),
        ("a+b%2Bc%20d", "a b+c d"),
        ("dt%3D2024-12-04/part%3A1.gz", "dt=2024-12-04/part:1.gz"),
    ],
)
def test_s3_key_unquote_plus(encoded: str, decoded: str) -> None:
    notification = json.dumps(s3_event(encoded))
    routes = {
        "s3": parse_event(s3_event(encoded)),
        "sqs": parse_event(sqs_event(notification)),
        "sqs/sns": parse_event(sqs_event(sns_in_sqs(notification))),
        "sns": parse_event({"Records": [sns_record(notification)]}),
        "eventbridge": parse_event(eventbridge(encoded)),
        "sqs/eventbridge": parse_event(sqs_event(json.dumps(eventbridge(encoded)))),
    }
    for trigger, invocation in routes.items():
        assert [(t, k) for _, t, _, k in keys(invocation)] == [(trigger, decoded)], (trigger, encoded)


def test_key_is_decoded_once_not_twice() -> None:
    assert keys(parse_event(s3_event("100%2525.json"))) == [(None, "s3", "b", "100%25.json")]


def test_every_record_not_only_first() -> None:
    event = {"Records": [s3_record("one"), s3_record("two", "ObjectRemoved:Delete"), s3_record("three")]}
    (message,) = parse_event(event).messages
    assert message.items == (
        S3Object("b", "one", etag="e", size=1, sequencer="s"),
        Skip("not_object_created", "ObjectRemoved:Delete s3://b/two"),
        S3Object("b", "three", etag="e", size=1, sequencer="s"),
    )


@pytest.mark.parametrize(
    ("event", "skip"),
    [
        ({"Records": [s3_record("a+b", "ObjectRemoved:Delete")]}, "ObjectRemoved:Delete s3://b/a b"),
        ({"Records": [s3_record("k", "ObjectRestore:Completed")]}, "ObjectRestore:Completed s3://b/k"),
        (eventbridge("k", "Object Deleted"), "Object Deleted s3://b/k"),
        (eventbridge("k", "Object Restore Completed"), "Object Restore Completed s3://b/k"),
    ],
)
def test_not_object_created_is_skipped(event: dict[str, Any], skip: str) -> None:
    (message,) = parse_event(event).messages
    assert message.items == (Skip("not_object_created", skip),)
    assert message.error is None


@pytest.mark.parametrize(
    ("event", "trigger"),
    [
        ({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}, "s3"),
        (sqs_event(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})), "sqs"),
        (
            sqs_event(sns_in_sqs(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}))),
            "sqs/sns",
        ),
        (
            {"Records": [sns_record(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}))]},
            "sns",
        ),
    ],
)
def test_s3_test_event_is_skipped_wherever_it_arrives(event: dict[str, Any], trigger: str) -> None:
    (message,) = parse_event(event).messages
    assert (message.trigger, message.items, message.error) == (trigger, (Skip("s3_test_event", "bucket b"),), None)


def test_sqs_bad_body_fails_only_its_message() -> None:
    good = json.dumps(s3_event("k"))
    invocation = parse_event(sqs_event(good, "not json {", json.dumps({"hello": 1, "world": 2}), "[1, 2]", good))

    assert invocation.from_sqs
    assert [m.message_id for m in invocation.messages] == ["m-1", "m-2", "m-3", "m-4", "m-5"]
    assert keys(invocation) == [("m-1", "sqs", "b", "k"), ("m-5", "sqs", "b", "k")]
    errors = {m.message_id: m.error for m in invocation.messages if m.error}
    assert set(errors) == {"m-2", "m-3", "m-4"}
    assert "not JSON" in errors["m-2"]
    assert "top-level keys [hello, world]" in errors["m-3"]
    assert "list" in errors["m-4"]
    assert all(m.items == () and m.trigger == "sqs" for m in invocation.messages if m.error)


def test_sns_in_sqs_with_a_non_s3_message_fails_only_that_message() -> None:
    event = load("sns/powertools_snsSqsEvent.json")
    event["Records"].append(sqs_record(json.dumps(s3_event("k")), "good"))

    first, second = parse_event(event).messages

    assert first.message_id == "79406a00-bf15-46ca-978c-22c3613fcb30"
    assert first.items == ()
    assert first.error is not None and "top-level keys [message, username]" in first.error
    assert "lessa" not in first.error
    assert second == Message("good", "sqs", (S3Object("b", "k", etag="e", size=1, sequencer="s"),))


def test_sqs_body_with_malformed_s3_record_fails_only_its_message() -> None:
    broken = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]})
    invocation = parse_event(sqs_event(broken, json.dumps(s3_event("k"))))
    assert [m.error is None for m in invocation.messages] == [False, True]
    assert "'bucket'" in str(invocation.messages[0].error)


def test_direct_sns_with_unknown_message_is_an_error_message() -> None:
    (message,) = parse_event({"Records": [sns_record('{"alarm": "x"}')]}).messages
    assert (message.message_id, message.trigger, message.items) == (None, "sns", ())
    assert message.error is not None and "[alarm]" in message.error


def test_cloudwatch_logs_subscription_routes_to_awslogs() -> None:
    event = load("cloudwatch-logs/powertools_cloudWatchLogEvent.json")
    assert parse_event(event) == Invocation((Message(None, "cloudwatch", (AwsLogs(event["awslogs"]["data"]),)),))


def test_a_cloudwatch_logs_payload_moved_from_the_dead_letter_queue_to_the_queue_is_forwarded() -> None:
    """Lambda writes a failed asynchronous invocation's event as the dead-letter message's body; once an operator
    moves it to the stack's queue (`aws sqs start-message-move-task --destination-arn`), the body is the payload."""
    event = load("cloudwatch-logs/powertools_cloudWatchLogEvent.json")
    invocation = parse_event(sqs_event(json.dumps(event), '{"awslogs": {"data": 42}}'))
    moved, broken = invocation.messages
    assert moved == Message("m-1", "sqs/cloudwatch", (AwsLogs(event["awslogs"]["data"]),))
    assert (broken.items, broken.error) == ((), "SQS message m-2: awslogs.data is not a string")


@pytest.mark.parametrize(
    ("event", "says"),
    [
        (["not", "an", "object"], "got list"),
        ("a string", "got str"),
        ({}, "empty object"),
        ({"retry": False}, "top-level keys [retry]"),
        ({"detail": {}, "password": "hunter2"}, "top-level keys [detail, password]"),
        ({"Records": [{"eventSource": "aws:kinesis", "kinesis": {"data": "hunter2"}}]}, "eventSource [aws:kinesis]"),
        ({"Records": [{"eventSource": "aws:dynamodb"}, {"eventSource": "aws:sqs"}]}, "[aws:dynamodb, aws:sqs]"),
        ({"Records": []}, "Records is not a non-empty list"),
        ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, "no messageId"),
        ({"Records": [s3_record("k") | {"s3": {"object": {"key": "k"}}}]}, "'bucket'"),
        ({"invocationSchemaVersion": "3.0", "tasks": [{"password": "hunter2"}]}, "schema '3.0'"),
        ({"invocationSchemaVersion": "2.0", "invocationId": "i", "tasks": []}, "tasks is not a non-empty list"),
        ({"invocationSchemaVersion": "2.0", "invocationId": "i", "tasks": [{"s3Key": "hunter2"}]}, "'taskId'"),
        ({"invocationSchemaVersion": "1.0", "tasks": [{"taskId": "t"}]}, "'invocationId'"),
        ({"awslogs": {"data": 42}}, "awslogs.data"),
        (s3_event("%FF%FE"), "not URL-encoded UTF-8"),
    ],
)
def test_unsupported_event_names_its_shape_not_its_content(event: Any, says: str) -> None:
    with pytest.raises(UnsupportedEvent) as raised:
        parse_event(event)
    assert says in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    ("name", "from_sqs", "trigger", "items"),
    [
        ("s3-put", False, "s3", 1),
        ("sns-s3", False, "sns", 1),
        ("sqs-s3", True, "sqs", 1),
        ("sqs-sns-s3", True, "sqs/sns", 1),
        ("sqs-raw-sns-s3", True, "sqs", 1),
        ("eventbridge-s3", False, "eventbridge", 1),
        ("sqs-eventbridge-s3", True, "sqs/eventbridge", 1),
        ("cloudtrail-sns", False, "cloudtrail-sns", 2),
        ("s3-test-event", False, "s3", 1),
        ("cloudwatch-logs-eks-audit", False, "cloudwatch", 1),
        ("cloudwatch-logs-control-message", False, "cloudwatch", 1),
        ("eventbridge-guardduty", False, "eventbridge", 1),
        ("s3-batch-operations", False, "s3-batch-operations", 1),
    ],
)
def test_sample_event_routes(name: str, from_sqs: bool, trigger: str, items: int) -> None:
    invocation = parse_event(json.loads((EVENTS / f"{name}.json").read_text()))
    (message,) = invocation.messages
    assert (invocation.from_sqs, message.trigger, len(message.items), message.error) == (from_sqs, trigger, items, None)
    for item in message.items:
        if isinstance(item, S3Object):
            assert item.bucket == "demo-cloudtrail-bucket"
            assert item.key.startswith("AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/04/")


@pytest.mark.parametrize("flag", [True, "true", "True"])
def test_retry_event_asks_for_a_replay_as_datadogs_schedule_sends_it(flag: object) -> None:
    invocation = parse_event({"retry": flag})
    assert invocation.messages == (Message(None, "replay", (Replay(),)),)


def test_continuation_message_resumes_the_object_it_names() -> None:
    """Handed over before anything was read: no checkpoint, the object from its start."""
    body = continuation.message_body(S3Object("b", "k 1+2", version_id="v1", etag="e1"), 0)
    invocation = parse_event(sqs_event_with(body))
    assert invocation.messages[0].trigger == "sqs/continuation"
    assert invocation.messages[0].items == (S3Object("b", "k 1+2", version_id="v1", etag="e1", continued=True),)


def test_a_continuation_past_its_first_event_without_a_checkpoint_is_malformed() -> None:
    """No released version wrote one: where it would resume cannot be known."""
    body = continuation.message_body(S3Object("b", "k"), 2048)
    message = parse_event(sqs_event_with(body)).messages[0]
    assert message.error and "without a checkpoint" in message.error


@pytest.mark.parametrize("fields", [{"bucket": "b"}, {"bucket": "b", "key": "k", "resume_at": -1}, "text"])
def test_malformed_continuation_fails_only_its_message(fields: object) -> None:
    message = parse_event(sqs_event_with(json.dumps({"forwarder_continuation": fields}))).messages[0]
    assert message.error and "continuation" in message.error


CHECKPOINT = {
    "offset": 4096,
    "skip_bytes": 10,
    "decompressed": 50000,
    "position": 2048,
    "format": "cloudtrail",
    "codec": "gzip",
    "etag": '"e1"',
}


def test_continuation_message_carries_its_checkpoint() -> None:
    checkpoint = Checkpoint(4096, 10, 50000, 2048, "cloudtrail", "gzip", '"e1"')
    body = continuation.message_body(S3Object("b", "k", etag="e1"), 2048, checkpoint)
    assert orjson.loads(body)["forwarder_continuation"]["checkpoint"] == CHECKPOINT
    (item,) = parse_event(sqs_event_with(body)).messages[0].items
    assert item == S3Object("b", "k", etag="e1", resume_at=2048, checkpoint=checkpoint, continued=True)


@pytest.mark.parametrize(
    "change",
    [
        "text",
        {"offset": -1},
        {"skip_bytes": "10"},
        {"decompressed": 1.5},
        {"position": True},
        {"position": 0},
        {"position": 2047},  # a CloudTrail checkpoint counts the records handled: it must match resume_at
        {"format": "digest"},
        {"codec": "brotli"},
        {"etag": 7},
        {"skip_bytes": 60000},  # more to drop than the resume point's own offset
        {"codec": "plain"},  # an uncompressed object's checkpoint is its exact byte, nothing dropped
        {"format": None},
    ],
    ids=repr,
)
def test_malformed_checkpoint_fails_only_its_message(change: object) -> None:
    checkpoint = {**CHECKPOINT, **change} if isinstance(change, dict) else change
    fields = {"bucket": "b", "key": "k", "resume_at": 2048, "checkpoint": checkpoint}
    good = continuation.message_body(S3Object("b", "other"), 0)
    event = {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": "bad", "body": json.dumps({"forwarder_continuation": fields})},
            {"eventSource": "aws:sqs", "messageId": "good", "body": good},
        ]
    }
    bad, fine = parse_event(event).messages
    assert bad.error and "continuation message is malformed" in bad.error and not bad.items
    assert fine.error is None and fine.items == (S3Object("b", "other", continued=True),)


def test_missing_checkpoint_field_fails_its_message() -> None:
    fields = {"bucket": "b", "key": "k", "resume_at": 2048, "checkpoint": {**CHECKPOINT}}
    del fields["checkpoint"]["codec"]  # type: ignore[attr-defined]
    message = parse_event(sqs_event_with(json.dumps({"forwarder_continuation": fields}))).messages[0]
    assert message.error and "codec" in message.error


def sqs_event_with(body: str) -> dict[str, object]:
    return {"Records": [{"eventSource": "aws:sqs", "messageId": "m-1", "body": body}]}


GUARDDUTY = Path(__file__).parent.parent / "fixtures" / "guardduty"


def finding() -> dict[str, Any]:
    return json.loads((GUARDDUTY / "eventbridge_kubernetes-privileged-container.json").read_text())


@pytest.mark.parametrize(
    ("wrap", "from_sqs", "trigger"),
    [
        (lambda event: event, False, "eventbridge"),
        (lambda event: sqs_event(json.dumps(event)), True, "sqs/eventbridge"),
        (lambda event: sqs_event(sns_in_sqs(json.dumps(event))), True, "sqs/sns/eventbridge"),
        (lambda event: {"Records": [sns_record(json.dumps(event))]}, False, "sns/eventbridge"),
    ],
    ids=["direct", "sqs", "sqs-sns", "sns"],
)
def test_a_guardduty_finding_is_an_event_of_its_own_wherever_it_arrives(
    wrap: Any, from_sqs: bool, trigger: str
) -> None:
    event = finding()
    invocation = parse_event(wrap(event))
    (message,) = invocation.messages
    assert (invocation.from_sqs, message.trigger, message.error) == (from_sqs, trigger, None)
    assert message.items == (EventBridgeEvent(event, "cd2d702e-ab31-411b-9344-793ce56b1bc7"),)


@pytest.mark.parametrize(
    "name",
    [
        "envelopes/eventbridge/awsdocs-step-functions_cloudtrail-s3-putobject.json",
        "envelopes/eventbridge/powertools_eventBridgeEvent.json",
    ],
)
def test_other_eventbridge_events_are_forwarded_not_refused(name: str) -> None:
    """A CloudTrail event from `aws.s3` is not one of S3's object events: it is not read as one."""
    event = json.loads((FIXTURES.parent / name).read_text())
    (message,) = parse_event(event).messages
    assert message.items == (EventBridgeEvent(event, event["id"]),)


def test_an_event_without_an_id_is_named_by_its_content() -> None:
    event = {"source": "com.example.app", "detail-type": "Signed In", "detail": {"user": "u"}}
    (first,) = parse_event(event).messages[0].items
    (again,) = parse_event(dict(reversed(event.items()))).messages[0].items
    (other,) = parse_event({**event, "detail": {"user": "v"}}).messages[0].items
    assert isinstance(first, EventBridgeEvent) and isinstance(other, EventBridgeEvent)
    assert first == again and first.event_id.startswith("sha:") and other.event_id != first.event_id


@pytest.mark.parametrize(
    ("fixture", "schema", "version_id"),
    [
        ("powertools_s3BatchOperationEventSchemaV1.json", "1.0", "1"),
        ("powertools_s3BatchOperationEventSchemaV2.json", "2.0", None),
    ],
)
def test_batch_operations_tasks_are_messages_answered_alone(fixture: str, schema: str, version_id: str | None) -> None:
    invocation = parse_event(load(f"s3-batch-operations/{fixture}"))
    assert invocation.from_batch_operations == BatchOperations(
        schema, "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo"
    )
    assert not invocation.from_sqs
    assert invocation.messages == (
        Message(
            "dGFza2lkZ29lc2hlcmUK",
            "s3-batch-operations",
            (S3Object("powertools-dataset", "prefix/dataset/dataset.20231222.json.gz", version_id=version_id),),
        ),
    )


def batch(*tasks: dict[str, Any], schema: str = "2.0") -> dict[str, Any]:
    return {"invocationSchemaVersion": schema, "invocationId": "inv", "job": {"id": "j"}, "tasks": list(tasks)}


def test_batch_operations_keys_are_url_decoded_and_a_bad_task_fails_alone() -> None:
    invocation = parse_event(
        batch(
            {"taskId": "a", "s3Key": "AWSLogs/red+flower%2B1.json", "s3VersionId": None, "s3Bucket": "b"},
            {"taskId": "b", "s3Key": "k", "s3VersionId": None},
            {"taskId": "c", "s3Key": "%FF", "s3Bucket": "b"},
            {"taskId": "d", "s3Key": "k", "s3BucketArn": "arn:aws:s3:::from-arn"},
        )
    )
    first, second, third, fourth = invocation.messages
    assert first.items == (S3Object("b", "AWSLogs/red flower+1.json"),)
    assert second.items == () and second.error is not None and "names no bucket" in second.error
    assert third.items == () and third.error is not None and "URL-encoded" in third.error
    assert fourth.items == (S3Object("from-arn", "k"),)
    assert [message.message_id for message in invocation.messages] == ["a", "b", "c", "d"]
