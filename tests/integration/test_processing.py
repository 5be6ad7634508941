"""End to end, a user switching from the Datadog Forwarder: EXCLUDE_AT_MATCH, REDACT_IP and
DD_MULTILINE_LOG_REGEX_PATTERN through `handle`, moto's S3 and the real local intake, on real samples."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import orjson

from bench.fixtures import k8s_audit_lines, s3_event, trail_key
from bench.inputs import cloudtrail_templates
from forwarder.devintake import LocalIntake
from forwarder.handler import handle
from forwarder.times import iso_ms

from .helpers import awslogs_event, canonical, context, put, settings_for, without_metadata

IP = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")


def redacted(value: Any) -> Any:
    """The reference: every string value with its IPs replaced, keys and the rest unchanged."""
    if isinstance(value, str):
        return IP.sub("xxx.xxx.xxx.xxx", value)
    if isinstance(value, list):
        return [redacted(item) for item in value]
    if isinstance(value, dict):
        return {key: redacted(item) for key, item in value.items()}
    return value


def test_excluded_cloudtrail_events_are_counted_and_ips_redacted_in_content_only(s3: Any, intake: LocalIntake) -> None:
    records = cloudtrail_templates()[:150]
    key = trail_key("filtered-and-scrubbed")
    put(s3, "trail-bucket", key, b'{"Records":[' + b",".join(orjson.dumps(r) for r in records) + b"]}")
    settings = settings_for(
        intake.url,
        EXCLUDE_AT_MATCH='"eventName":"DescribeInstanceInformation"',
        REDACT_IP="true",
        DD_TAGS="subnet:10.20.30.0",
    )

    summary = handle(s3_event("trail-bucket", key), context(), settings)

    kept = [record for record in records if record.get("eventName") != "DescribeInstanceInformation"]
    received = intake.entries
    assert Counter(canonical(without_metadata(entry)) for entry in received) == Counter(
        canonical(redacted(record)) for record in kept
    )
    assert summary["events_read"] == len(records)
    assert summary["events_filtered"] == len(records) - len(kept) > 0
    assert summary["events_delivered"] == len(kept)
    assert summary["events_scrubbed"] == sum(redacted(record) != record for record in kept) > 0
    by_id = {record["eventID"]: record for record in kept}
    for entry in received:
        record = by_id[entry["forwarder"]["id"]]
        assert entry["timestamp"] == iso_ms(record["eventTime"])
        assert entry["aws"]["s3"] == {"bucket": "trail-bucket", "key": key}
        assert "subnet:10.20.30.0" in entry["ddtags"].split(",")
        assert not IP.search(orjson.dumps(without_metadata(entry)).decode())


def test_eks_audit_messages_keep_valid_json_with_their_ips_redacted(intake: LocalIntake) -> None:
    lines = k8s_audit_lines()
    event = awslogs_event("/aws/eks/prod-eu/cluster", "kube-apiserver-audit-0123456789abcdef", lines)

    summary = handle(event, context(), settings_for(intake.url, REDACT_IP="true"))

    received = intake.entries
    assert [orjson.loads(entry["message"]) for entry in received] == [redacted(orjson.loads(line)) for line in lines]
    assert summary["events_delivered"] == len(lines)
    assert summary["events_scrubbed"] == sum(IP.search(line) is not None for line in lines) > 0


def test_multiline_text_in_s3_arrives_as_whole_events(s3: Any, intake: LocalIntake) -> None:
    log = (
        "2024-12-04 12:00:00 INFO service started\n"
        "2024-12-04 12:00:01 ERROR request failed\n"
        "java.lang.IllegalStateException: boom\n"
        "\tat com.example.Handler.handle(Handler.java:42)\n"
        "2024-12-04 12:00:02 INFO recovered\n"
    )
    put(s3, "app-logs", "app/2024/12/04/app.log.gz", log.encode())
    settings = settings_for(intake.url, DD_MULTILINE_LOG_REGEX_PATTERN=r"\d{4}-\d{2}-\d{2} ")

    summary = handle(s3_event("app-logs", "app/2024/12/04/app.log.gz"), context(), settings)

    assert sorted(entry["message"] for entry in intake.entries) == [
        "2024-12-04 12:00:00 INFO service started",
        "2024-12-04 12:00:01 ERROR request failed\njava.lang.IllegalStateException: boom\n"
        "\tat com.example.Handler.handle(Handler.java:42)",
        "2024-12-04 12:00:02 INFO recovered",
    ]
    assert summary["events_read"] == summary["events_delivered"] == 3
