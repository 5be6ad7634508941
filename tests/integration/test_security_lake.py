"""Amazon Security Lake's OCSF Parquet, end to end: moto's S3 → `handle` → the real local intake."""

from __future__ import annotations

import io
import sys
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.fixtures import s3_event
from forwarder.devintake import LocalIntake
from forwarder.errors import IncompleteInvocation
from forwarder.handler import handle
from forwarder.metrics import Tally

from .faults import Clock
from .helpers import ACCOUNT, FIXTURES, context, eventbridge_event, put, settings_for, sqs_event, without_metadata
from .test_faults import (
    DEADLINE_ENV,
    DEADLINE_TIMEOUT,
    continuation_queue,
    drain_continuations,
    invoke,
    slow_intake,  # noqa: F401  (the fixture: an intake answering in 0.1 s)
)
from .test_generic_intake import Recorder

SAMPLES = FIXTURES / "securitylake"
BUCKET = "aws-security-data-lake-us-east-1-forwardertest"
PARTITION = f"region=us-east-1/accountId={ACCOUNT}/eventDay=20210907"


def lake_key(source: str, version: str, name: str = "48c42a18526e1c4409654c5587e35780.gz.parquet") -> str:
    return f"aws/{source}/{version}/{PARTITION}/{name}"


def tags(entry: dict[str, Any]) -> list[str]:
    return str(entry["ddtags"]).split(",")


def rows_of(path: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist(maps_as_pydicts="lossy")
    return rows


@pytest.fixture
def without_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a deployment without the `parquet` extra or layer: importing pyarrow fails."""
    for name in [name for name in sys.modules if name == "pyarrow" or name.startswith("pyarrow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)


@pytest.mark.usefixtures("without_pyarrow")
@pytest.mark.parametrize("key", [lake_key("EKS_AUDIT", "2.0"), "exports/renamed-without-suffix"])
def test_parquet_without_pyarrow_fails_naming_what_to_install_and_sends_no_binary_lines(
    s3: Any, intake: LocalIntake, key: str
) -> None:
    put(s3, BUCKET, key, (SAMPLES / "eks_audit-1.1.0.parquet").read_bytes(), compress=False)

    with pytest.raises(IncompleteInvocation) as raised:
        handle(s3_event(BUCKET, key), context(), settings_for(intake.url))

    assert "pip install 'security-log-forwarder[parquet]'" in str(raised.value)
    assert "EnableParquet" in str(raised.value)
    assert intake.entries == []


def test_a_security_lake_eks_audit_object_sends_each_ocsf_row_labelled_from_its_key(
    s3: Any, intake: LocalIntake
) -> None:
    """The subscriber's notification is an EventBridge `Object Created` event in the SQS message body."""
    sample = SAMPLES / "eks_audit-1.1.0.parquet"
    key = lake_key("EKS_AUDIT", "2.0", "a1b2c3.parquet")
    put(s3, BUCKET, key, sample.read_bytes(), compress=False)

    answer = handle(sqs_event(eventbridge_event(BUCKET, key)), context(), settings_for(intake.url))

    assert answer == {"batchItemFailures": []}
    (entry,) = intake.entries
    (row,) = rows_of(sample)
    assert (entry["ddsource"], entry["service"], entry["host"]) == ("kubernetes.audit", "kubernetes.audit", BUCKET)
    assert tags(entry)[-2:] == [f"aws_account:{ACCOUNT}", "region:us-east-1"]
    assert entry["timestamp"] == row["time"] == 1631047050642
    sent = without_metadata(entry)
    assert sent["class_uid"] == 6003 and sent["api"] == row["api"]
    assert sent["unmapped"]["responseObject.kind"] == "Node"
    assert sent["time_dt"] == "2021-09-07T20:37:30.642000+00:00"
    assert entry["aws"]["s3"] == {"bucket": BUCKET, "key": key}


@pytest.mark.parametrize(
    ("sample", "lake_source", "source"),
    [
        ("cloud_trail-consolelogin-1.0.0-rc.2.gz.parquet", "CLOUD_TRAIL_MGMT", "cloudtrail"),
        ("vpc_flow-1.0.0-rc.2.gz.parquet", "VPC_FLOW", "vpc"),
    ],
)
def test_security_lake_version_1_objects_are_read_and_named_by_their_source(
    s3: Any, intake: LocalIntake, sample: str, lake_source: str, source: str
) -> None:
    key = lake_key(lake_source, "1.0")
    put(s3, BUCKET, key, (SAMPLES / sample).read_bytes(), compress=False)

    summary = handle(s3_event(BUCKET, key), context(), settings_for(intake.url))

    (entry,) = intake.entries
    (row,) = rows_of(SAMPLES / sample)
    assert summary["by_source"] == {f"s3/{source}": 1}
    assert entry["ddsource"] == source and entry["timestamp"] == row["time"]
    assert without_metadata(entry)["metadata"]["product"] == orjson.loads(orjson.dumps(row["metadata"]["product"]))


@pytest.mark.parametrize(
    ("sample", "lake_source", "version", "source", "class_uid"),
    [
        ("eks_audit-1.1.0.parquet", "EKS_AUDIT", "2.0", "kubernetes.audit", 6003),
        ("cloud_trail-consolelogin-1.0.0-rc.2.gz.parquet", "CLOUD_TRAIL_MGMT", "1.0", "cloudtrail", 3002),
        ("vpc_flow-1.0.0-rc.2.gz.parquet", "VPC_FLOW", "1.0", "vpc", 4001),
    ],
)
def test_under_the_ocsf_output_security_lake_rows_pass_as_the_ocsf_events_they_are(
    s3: Any, intake: LocalIntake, sample: str, lake_source: str, version: str, source: str, class_uid: int
) -> None:
    key = lake_key(lake_source, version, f"ocsf-{sample}")
    put(s3, BUCKET, key, (SAMPLES / sample).read_bytes(), compress=False)
    tally = Tally()

    summary = handle(s3_event(BUCKET, key), context(), settings_for(intake.url, FORWARDER_OUTPUT_FORMAT="ocsf"), tally)

    (entry,) = intake.entries
    (row,) = rows_of(SAMPLES / sample)
    assert entry["ocsf"] == orjson.loads(orjson.dumps(row)) and entry["ocsf"]["class_uid"] == class_uid
    assert (entry["ddsource"], entry["timestamp"]) == (source, row["time"])
    assert {"output_format:ocsf", f"aws_account:{ACCOUNT}", "region:us-east-1"} <= set(tags(entry))
    assert (summary["events_delivered"], summary["events_unmappable"], dict(tally.unmappable)) == (1, 0, {})
    assert summary["lag_max_ms"] > 0


def test_to_a_json_intake_a_security_lake_row_is_sent_as_it_is(s3: Any) -> None:
    sample = SAMPLES / "eks_audit-1.1.0.parquet"
    key = lake_key("EKS_AUDIT", "2.0", "ocsf-json.parquet")
    put(s3, BUCKET, key, sample.read_bytes(), compress=False)

    with Recorder("json") as recorder:
        env = {"DD_API_KEY": "", "FORWARDER_INTAKE_FORMAT": "json", "FORWARDER_OUTPUT_FORMAT": "ocsf"}
        summary = handle(s3_event(BUCKET, key), context(), settings_for(recorder.url, **env))
        received = recorder.entries

    assert received == [orjson.loads(orjson.dumps(row)) for row in rows_of(sample)]
    assert summary["events_unmappable"] == 0 and summary["lag_max_ms"] > 0


def test_every_row_of_every_row_group_is_sent_once_in_order(s3: Any, intake: LocalIntake) -> None:
    rows = [
        {"time": 1700000000000 + index, "class_uid": 6003, "actor": {"user": {"name": f"u{index}"}}}
        for index in range(25)
    ]
    body = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), body, row_group_size=4)
    key = lake_key("CLOUD_TRAIL_MGMT", "2.0", "many.parquet")
    put(s3, BUCKET, key, body.getvalue(), compress=False)

    handle(s3_event(BUCKET, key), context(), settings_for(intake.url))

    assert [without_metadata(entry) for entry in intake.entries] == rows
    assert len({entry["forwarder"]["id"] for entry in intake.entries}) == len(rows)


def test_a_corrupt_parquet_object_fails_naming_it(s3: Any, intake: LocalIntake) -> None:
    key = lake_key("ROUTE53", "2.0", "broken.parquet")
    put(s3, BUCKET, key, b"PAR1" + b"\x00" * 64 + b"PAR1", compress=False)

    with pytest.raises(IncompleteInvocation) as raised:
        handle(s3_event(BUCKET, key), context(), settings_for(intake.url))

    assert f"s3://{BUCKET}/{key}" in str(raised.value) and "not a readable Parquet file" in str(raised.value)
    assert intake.entries == []


def test_a_parquet_object_past_the_deadline_continues_from_its_row_group_and_sends_each_row_once(
    s3: Any,
    moto_endpoint: str,
    slow_intake: LocalIntake,  # noqa: F811
) -> None:
    rows = [{"time": 1700000000000 + index, "class_uid": 6003, "n": index} for index in range(4000)]
    body = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), body, row_group_size=300)
    key = lake_key("EKS_AUDIT", "2.0", "continued.parquet")
    put(s3, BUCKET, key, body.getvalue(), compress=False)
    sqs, queue = continuation_queue(moto_endpoint)
    settings = settings_for(slow_intake.url, **DEADLINE_ENV, FORWARDER_CONTINUATION_QUEUE_URL=queue)
    clock, tally = Clock(), Tally()

    result, error, _ = invoke(clock, s3_event(BUCKET, key), settings, DEADLINE_TIMEOUT, tally)
    assert error is None and result["skipped"] == {"continued_later": 1}
    bodies = drain_continuations(sqs, queue, clock, settings, tally)

    assert sorted(without_metadata(entry)["n"] for entry in slow_intake.entries) == list(range(4000))
    checkpoints = [body["checkpoint"] for body in bodies]
    assert all(c["format"] == c["codec"] == "parquet" for c in checkpoints)
    assert all(
        c["offset"] * 300 + c.get("skip_bytes", 0) == c["position"] == body["resume_at"]
        for c, body in zip(checkpoints, bodies, strict=True)
    )
    assert max(taken / timeout for taken, timeout in clock.runs) < 1.0, clock.runs
