"""End to end: objects built to fool the readers, through `handle`, moto's S3 and the local intake."""

from __future__ import annotations

from typing import Any

from bench.fixtures import s3_event
from forwarder.devintake import LocalIntake
from forwarder.handler import handle
from tests.unit.test_formats import audit_lines_with_a_digest_lookalike

from .helpers import context, put, settings_for

BUCKET = "hostile-bucket"


def test_a_configmap_with_digest_keys_does_not_hide_the_audit_file(s3: Any, intake: LocalIntake) -> None:
    lines = audit_lines_with_a_digest_lookalike()
    key = "eks/audit/2024/12/04/audit.log.gz"
    put(s3, BUCKET, key, b"\n".join(lines) + b"\n")

    summary = handle(s3_event(BUCKET, key), context(), settings_for(intake.url))

    assert summary.get("skipped", {}) == {}
    assert [entry["message"] for entry in intake.entries] == [line.decode() for line in lines]
    assert summary["events_delivered"] == len(lines)
