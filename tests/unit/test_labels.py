"""Labels name the account, region and host that own an event, not the forwarder's own account."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bench.fixtures import k8s_audit_lines
from forwarder.formats.jsonhead import VALIDATOR_MAX_BYTES, HeadReader
from forwarder.formats.logbatch import read_log_batch, readable_prefix
from forwarder.formats.run import RecordRun
from forwarder.labels import instance_host, owner
from forwarder.model import EventBridgeEvent, Invoker, LogBatch, LogEvent, RawEvent, S3Object, Source
from forwarder.outputs import datadog
from forwarder.outputs.datadog import DatadogEncoder
from forwarder.settings import Settings
from forwarder.times import AUDIT_TIME_FIELDS
from tests.support import read_head, split_object

INVOKER = Invoker.from_arn("arn:aws:lambda:eu-west-1:999999999999:function:Forwarder")
SETTINGS = Settings(function_name="Forwarder")
TRAIL = S3Object("archive", "AWSLogs/o-abcdef1234/111122223333/CloudTrail/us-east-2/2024/12/04/f.json.gz")
CLOUDTRAIL = Source("cloudtrail", "cloudtrail", "archive")
OWN = ("999999999999", "eu-west-1")
"""The forwarder's own account and region."""
TRAILS = ("111122223333", "us-east-2", "archive")
"""The trail file's account, region and host."""
INSTANCE_ARN = "arn:aws:sts::111122223333:assumed-role/WebRole/i-0123456789abcdef0"


def tags(body: bytes | dict[str, Any]) -> list[str]:
    entry = orjson.loads(body) if isinstance(body, bytes) else body
    return entry["ddtags"].split(",")


def where(body: bytes) -> tuple[str, str, str]:
    """The entry's account and region tags and its host."""
    named = dict(tag.split(":", 1) for tag in tags(body))
    return named.get("aws_account", ""), named.get("region", ""), orjson.loads(body)["host"]


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        (
            S3Object("b", "AWSLogs/111122223333/CloudTrail/us-east-2/2024/12/04/f.json.gz"),
            ("111122223333", "us-east-2"),
        ),
        (TRAIL, ("111122223333", "us-east-2")),
        (
            S3Object("b", "logs/AWSLogs/111122223333/vpcflowlogs/ap-southeast-2/f.gz"),
            ("111122223333", "ap-southeast-2"),
        ),
        (S3Object("b", "AWSLogs/111122223333/elb/us-gov-west-1/f.gz"), ("111122223333", "us-gov-west-1")),
        (
            S3Object("b", "AWSLogs/111122223333/WAFLogs/2024/f.log.gz"),
            ("111122223333", "eu-west-1"),
        ),  # no region segment
        (S3Object("b", "exports/2024/f.json.gz"), OWN),  # not the standard key
        (S3Object("b", "AWSLogs/1111/CloudTrail/us-east-2/f.json.gz"), OWN),  # not an account
        (
            LogBatch("111122223333", "/aws/eks/prod/cluster", "kube-apiserver-audit-1", (), ()),
            ("111122223333", "eu-west-1"),
        ),
        (LogBatch("111122223333", "trail", "111122223333_CloudTrail_sa-east-1", (), ()), ("111122223333", "sa-east-1")),
        (LogBatch("not-an-account", "g", "s", (), ()), OWN),
        (
            EventBridgeEvent({"account": "111122223333", "region": "ca-central-1"}, "e1"),
            ("111122223333", "ca-central-1"),
        ),
        (EventBridgeEvent({"account": ["x"], "region": "x,env:prod"}, "e2"), OWN),
    ],
)
def test_the_container_names_the_account_and_region_that_own_its_events(container: Any, expected: tuple) -> None:
    assert owner(container, INVOKER) == expected
    body = DatadogEncoder(CLOUDTRAIL, container, INVOKER, SETTINGS).entry(RawEvent.line(1, "text", 5)).body
    assert where(body)[:2] == expected


def test_the_forwarders_own_account_is_the_last_resort_and_may_be_absent() -> None:
    assert owner(S3Object("b", "k"), Invoker()) == ("", "")
    body = DatadogEncoder(CLOUDTRAIL, S3Object("b", "k"), Invoker(), SETTINGS).entry(RawEvent.line(1, "t", 2)).body
    assert not [tag for tag in tags(body) if tag.startswith(("aws_account:", "region:"))]


def test_a_sources_own_account_and_region_tags_replace_the_containers_never_twice() -> None:
    source = Source("guardduty", "guardduty", "aws.guardduty", ("aws_account:444455556666", "region:eu-north-1"))
    event = EventBridgeEvent({"account": "111122223333", "region": "us-east-1"}, "e3")
    body = DatadogEncoder(source, event, INVOKER, SETTINGS).entry(RawEvent.line(1, "{}", 2)).body
    assert [tag for tag in tags(body) if tag.startswith(("aws_account:", "region:"))] == [
        "aws_account:444455556666",
        "region:eu-north-1",
    ]


def record(**fields: Any) -> dict[str, Any]:
    return {"eventVersion": "1.08", "eventID": "id", "eventTime": "2024-12-04T12:00:00Z", **fields}


def record_event(fields: dict[str, Any]) -> RawEvent:
    raw = orjson.dumps(fields)
    return RawEvent.structured(0, raw, read_head(raw))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, TRAILS),
        ({"recipientAccountId": "444455556666", "awsRegion": "eu-north-1"}, ("444455556666", "eu-north-1", "archive")),
        (
            {"userIdentity": {"type": "AssumedRole", "arn": INSTANCE_ARN}},
            ("111122223333", "us-east-2", "i-0123456789abcdef0"),
        ),
        ({"userIdentity": {"arn": "arn:aws:sts::1:assumed-role/R/i-0123"}}, TRAILS),
        ({"userIdentity": {"arn": "arn:aws:sts::1:assumed-role/R/alice"}}, TRAILS),
        # Hostile or odd values never reach a tag: they are not an account id or a region name.
        ({"recipientAccountId": "1,env:prod", "awsRegion": "us-east-1,team:x"}, TRAILS),
        ({"recipientAccountId": 444455556666, "awsRegion": ["eu-north-1"]}, TRAILS),
        ({"userIdentity": "i-0123456789abcdef0", "awsRegion": "eu-north-1"}, ("111122223333", "eu-north-1", "archive")),
        ({"userIdentity": {"arn": 7}}, TRAILS),
    ],
)
def test_a_cloudtrail_record_names_its_own_account_region_and_instance_host(fields: dict, expected: tuple) -> None:
    encoder = DatadogEncoder(CLOUDTRAIL, TRAIL, INVOKER, SETTINGS)
    entry = encoder.entry(record_event(record(**fields)))
    assert where(entry.body) == expected
    assert {key: orjson.loads(entry.body)[key] for key in fields} == fields


def test_a_run_of_records_from_many_accounts_gives_what_they_give_one_by_one() -> None:
    """The hot path's lead per (account, region, identity) is the one-by-one path's labels."""
    records = [
        record(
            eventID=f"e{n}", recipientAccountId=f"1111222233{n % 3:02d}", awsRegion=("us-east-1", "eu-west-3")[n % 2]
        )
        for n in range(12)
    ]
    records[5]["userIdentity"] = {"arn": INSTANCE_ARN}
    document = orjson.dumps({"Records": records})
    blocks = list(split_object([document], TRAIL.origin)[1])
    assert any(isinstance(block, RecordRun) and len(block) >= 8 for block in blocks)
    fast, slow = (
        DatadogEncoder(CLOUDTRAIL, TRAIL, INVOKER, SETTINGS),
        DatadogEncoder(CLOUDTRAIL, TRAIL, INVOKER, SETTINGS),
    )
    run_entries = [entry for block in blocks for entry in fast.entries(block)]
    assert run_entries == [slow.entry(event) for block in blocks for event in block.events()]
    for entry, fields in zip(run_entries, records, strict=True):
        assert where(entry.body)[:2] == (fields["recipientAccountId"], fields["awsRegion"])
    assert where(run_entries[5].body)[2] == "i-0123456789abcdef0"


ESCAPED_INSTANCE_ARN = (
    b'"arn:aws:sts::111122223333:assumed-role\\/WebRole\\/\\u0069-0123456789abcdef0"'  # \/ and \u0069 ("i")
)


def test_only_the_identitys_own_arn_names_a_host_however_it_is_spelled() -> None:
    """Decoys elsewhere in a record name no host, and an instance session's ARN spelled with escapes
    does, in a run and one by one: what names the host is the decoded `userIdentity.arn` alone."""
    decoy = record(
        eventID="decoy",
        userIdentity={"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice"},
        requestParameters={"roleArn": INSTANCE_ARN, "note": ":assumed-role/ and /i-0123456789abcdef0"},
        responseElements={"userIdentity": {"arn": INSTANCE_ARN}},
    )
    escaped = orjson.dumps(record(eventID="escaped", userIdentity={"type": "AssumedRole", "arn": "X"})).replace(
        b'"X"', ESCAPED_INSTANCE_ARN
    )
    assert orjson.loads(escaped)["userIdentity"]["arn"] == INSTANCE_ARN
    plain = [orjson.dumps(record(eventID=f"e{n}")) for n in range(10)]
    document = b'{"Records":[' + b",".join([*plain, orjson.dumps(decoy), escaped, *plain]) + b"]}"
    blocks = list(split_object([document], TRAIL.origin)[1])
    assert any(isinstance(block, RecordRun) for block in blocks)
    encoder = DatadogEncoder(CLOUDTRAIL, TRAIL, INVOKER, SETTINGS)
    hosts = {orjson.loads(entry.body)["eventID"]: where(entry.body)[2] for b in blocks for entry in encoder.entries(b)}
    assert (hosts["decoy"], hosts["escaped"], hosts["e0"]) == ("archive", "i-0123456789abcdef0", "archive")
    one_by_one = DatadogEncoder(CLOUDTRAIL, TRAIL, INVOKER, SETTINGS)
    assert where(one_by_one.entry(RawEvent.structured(0, escaped, read_head(escaped))).body)[2] == "i-0123456789abcdef0"
    assert where(one_by_one.entry(record_event(decoy)).body)[2] == "archive"


def test_records_of_the_containers_own_account_share_its_lead() -> None:
    encoder = DatadogEncoder(CLOUDTRAIL, TRAIL, INVOKER, SETTINGS)
    same = record(
        recipientAccountId="111122223333", awsRegion="us-east-2", userIdentity={"arn": "arn:aws:iam::1:user/a"}
    )
    encoder.entry(record_event(same))
    assert all(lead is encoder._lead for _, lead in encoder._record_labels.values())


def test_the_leads_kept_start_over_past_their_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datadog, "LEADS_KEPT", 4)
    encoder = DatadogEncoder(CLOUDTRAIL, TRAIL, INVOKER, SETTINGS)
    for n in range(10):
        body = encoder.entry(record_event(record(recipientAccountId=f"1111222233{n:02d}"))).body
        assert where(body)[0] == f"1111222233{n:02d}"
    assert len(encoder._record_labels) <= 4


def test_a_truncated_or_moved_record_keeps_its_own_labels() -> None:
    settings = Settings(function_name="Forwarder", entry_max_bytes=1024)
    encoder = DatadogEncoder(CLOUDTRAIL, TRAIL, INVOKER, settings)
    big = encoder.entry(record_event(record(recipientAccountId="444455556666", pad="x" * 2000)))
    assert big.truncated and where(big.body)[0] == "444455556666"
    moved = encoder.entry(record_event(record(recipientAccountId="444455556666", host="spoofed")))
    assert where(moved.body) == ("444455556666", "us-east-2", "archive")
    assert orjson.loads(moved.body)["original_fields"] == {"host": "spoofed"}


def test_a_record_over_the_validator_limit_with_odd_label_types_is_still_read() -> None:
    raw = orjson.dumps(
        record(awsRegion=5, userIdentity="x", recipientAccountId="444455556666", pad="x" * VALIDATOR_MAX_BYTES)
    )
    head = read_head(raw)
    assert (head.awsRegion, head.userIdentity, head.recipientAccountId) == (None, None, "444455556666")
    assert head.eventID == "id" and not head.flagged()


@pytest.mark.parametrize(
    ("arn", "host"),
    [
        (INSTANCE_ARN, "i-0123456789abcdef0"),
        ("arn:aws:sts::111122223333:assumed-role/Role/i-01234567", "i-01234567"),
        ("arn:aws-us-gov:sts::111122223333:assumed-role/a/b/i-0123456789abcdef0", "i-0123456789abcdef0"),
        ("arn:aws:sts::111122223333:assumed-role/Role/i-0123456789abcdef0x", None),
        ("arn:aws:iam::111122223333:user/i-0123456789abcdef0", None),
        (None, None),
    ],
)
def test_only_an_instance_profile_session_names_a_host(arn: str | None, host: str | None) -> None:
    assert instance_host(arn) == host


def test_cloudtrail_from_cloudwatch_is_read_as_records_and_text_stays_text() -> None:
    records = HeadReader(datadog.RESERVED)
    one = orjson.dumps(record(eventID="ct-1", recipientAccountId="444455556666")).decode()
    events = (
        LogEvent("cw-1", 5, one),
        LogEvent("cw-2", 6, '{"eventVersion":"1.08", cut'),  # not JSON: text
        LogEvent("cw-3", 7, '{"eventVersion":"1.08"}'),  # no eventID: CloudWatch's id
        LogEvent("cw-4", 8, "[1,2]"),  # JSON, not an object: text
    )
    batch = LogBatch("111122223333", "trail", "111122223333_CloudTrail_us-east-2", (), events)
    read = list(read_log_batch(batch, records))
    assert [event.record is not None for event in read] == [True, False, True, False]
    assert [event.message for event in read] == [None, events[1].message, None, "[1,2]"]
    encoder = DatadogEncoder(CLOUDTRAIL, batch, INVOKER, SETTINGS)
    bodies = [orjson.loads(block.body) for event in read for block in encoder.entries(event)]
    assert bodies[0]["eventID"] == bodies[0]["forwarder"]["id"] == "ct-1" and "message" not in bodies[0]
    assert tags(bodies[0])[-2:] == ["aws_account:444455556666", "region:us-east-2"]
    assert bodies[0]["timestamp"] == 1733313600000  # its own eventTime
    assert bodies[1]["message"] == events[1].message and bodies[1]["forwarder"]["id"] == "cw-2"
    assert bodies[2]["forwarder"]["id"] == "cw-3" and bodies[2]["timestamp"] == 7


AUDIT = Source("kubernetes.audit", "kubernetes.audit", "/aws/eks/prod/cluster", (), AUDIT_TIME_FIELDS)


def audit_batch(messages: list[str]) -> LogBatch:
    events = tuple(LogEvent(f"cw-{n}", 1733313600000 + n, message) for n, message in enumerate(messages))
    return LogBatch("111122223333", "/aws/eks/prod/cluster", "kube-apiserver-audit-1", (), events)


def test_an_audit_event_cloudwatch_cut_is_delivered_marked_with_the_fields_read_before_the_cut() -> None:
    whole = k8s_audit_lines()[0]
    fields = orjson.loads(whole)
    cut = whole[: whole.index('"stageTimestamp"') - 7] + "[Truncated...]"
    batch = audit_batch([whole, cut])
    encoder = DatadogEncoder(AUDIT, batch, INVOKER, SETTINGS)
    run = next(iter(read_log_batch(batch)))
    entries = [orjson.loads(entry.body) for entry in encoder.entries(run)]
    assert entries[0]["message"] == whole and "source_truncated" not in entries[0]["forwarder"]
    marked = entries[1]
    assert marked["forwarder"] == {"id": "cw-1", "source_truncated": True}
    assert marked["message"] == cut  # as it came: nothing lost, never sent as if whole
    for name in ("auditID", "verb", "user", "objectRef", "requestURI"):
        assert marked[name] == fields[name]
    assert "stageTimestamp" not in marked
    assert [encoder.entry(event).body for event in run.events()] == [e.body for e in encoder.entries(run)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"a":1,"b":"x\\",\\"c\\":2","d":{"e":[1,{"f":"}"}]},"g":"cu',
            {"a": 1, "b": 'x","c":2', "d": {"e": [1, {"f": "}"}]}},
        ),
        ('{"a":"\\\\","b":2,"c', {"a": "\\", "b": 2}),
        ('{"a":[1,2,', {}),
        ("not json", {}),
        ('{"a":1,}', {"a": 1}),
    ],
)
def test_the_prefix_reader_keeps_only_whole_top_level_members(text: str, expected: dict) -> None:
    assert readable_prefix(text) == expected


def test_a_cut_message_of_another_source_is_text_as_before() -> None:
    batch = audit_batch(['{"level":"info","msg":"cut'])
    encoder = DatadogEncoder(Source("lambda", "lambda", "/aws/lambda/f"), batch, INVOKER, SETTINGS)
    body = orjson.loads(encoder.entries(next(iter(read_log_batch(batch))))[0].body)
    assert body["message"] == '{"level":"info","msg":"cut' and "source_truncated" not in body["forwarder"]


def test_a_cut_audit_event_over_the_entry_limit_stays_marked() -> None:
    whole = k8s_audit_lines()[0]
    cut = whole[:-40] + "x" * 2000
    encoder = DatadogEncoder(AUDIT, audit_batch([cut]), INVOKER, Settings(entry_max_bytes=1024))
    entry = encoder.entry(RawEvent.log_event(0, LogEvent("cw-0", 5, cut)))
    assert entry.truncated and orjson.loads(entry.body)["forwarder"]["source_truncated"] is True
