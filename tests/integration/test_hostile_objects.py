"""End to end: objects built to fool the readers, through `handle`, moto's S3 and the local intake."""

from __future__ import annotations

from typing import Any

import orjson

from bench.fixtures import s3_event, trail_key
from forwarder.devintake import LocalIntake
from forwarder.handler import handle
from tests.unit.test_formats import audit_lines_with_a_digest_lookalike, trail_records

from .helpers import context, put, settings_for, without_metadata

BUCKET = "hostile-bucket"


def test_a_configmap_with_digest_keys_does_not_hide_the_audit_file(s3: Any, intake: LocalIntake) -> None:
    lines = audit_lines_with_a_digest_lookalike()
    key = "eks/audit/2024/12/04/audit.log.gz"
    put(s3, BUCKET, key, b"\n".join(lines) + b"\n")

    summary = handle(s3_event(BUCKET, key), context(), settings_for(intake.url))

    assert summary.get("skipped", {}) == {}
    assert [entry["message"] for entry in intake.entries] == [line.decode() for line in lines]
    assert summary["events_delivered"] == len(lines)


def test_records_behind_a_file_version_under_a_trail_key_arrive_as_events(s3: Any, intake: LocalIntake) -> None:
    records = trail_records(2000)
    key = trail_key("file-version-first")
    put(s3, BUCKET, key, orjson.dumps({"fileVersion": "1.0", "Records": records}))

    summary = handle(s3_event(BUCKET, key), context(), settings_for(intake.url))

    by_id = sorted(intake.entries, key=lambda entry: int(entry["eventID"].removeprefix("id-")))
    assert [without_metadata(entry) for entry in by_id] == records  # batches arrive in any order
    assert summary["events_delivered"] == 2000 and summary["events_truncated"] == 0
