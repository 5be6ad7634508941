"""What every output reports of its events: the lag from each event's own time to its delivery, and
under OCSF the records that could not be mapped. moto's S3 → `handle` → the local intake (Datadog's)
or the recording generic intake, with the EMF metrics read from what `publish` prints."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from bench.fixtures import cloudtrail_documents, records_of, s3_event, trail_key
from forwarder.devintake import LocalIntake
from forwarder.handler import handle
from forwarder.metrics import Tally
from forwarder.times import iso_ms

from .helpers import API_KEY, context, put, settings_for
from .test_generic_intake import Recorder

BUCKET = "output-metrics-bucket"
OUTPUTS = [(output, intake) for output in ("datadog", "ocsf") for intake in ("datadog", "json", "ndjson", "splunk-hec")]


@pytest.fixture
def emf(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Reads the EMF lines `publish` printed: (the invocation's line, the lines by source)."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)

    def lines() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        metrics = [line for line in printed if "_aws" in line]
        main = next(line for line in metrics if "source" not in line)
        return main, {line["source"]: line for line in metrics if "source" in line}

    yield lines


@contextlib.contextmanager
def receiving(intake_format: str) -> Iterator[tuple[str, dict[str, str], Any]]:
    """An intake of `intake_format` on 127.0.0.1: its URL, the settings it needs, and its entries."""
    if intake_format == "datadog":
        with LocalIntake(api_key=API_KEY) as intake:
            yield intake.url, {}, lambda: intake.entries
        return
    key = {"DD_API_KEY": "hec-token-not-a-secret" if intake_format == "splunk-hec" else ""}
    with Recorder("json" if intake_format == "json" else "ndjson") as recorder:
        yield recorder.url, {"FORWARDER_INTAKE_FORMAT": intake_format, **key}, lambda: recorder.entries


@pytest.mark.parametrize(("output_format", "intake_format"), OUTPUTS)
def test_every_output_reports_the_lag_from_each_event_s_own_time(
    s3: Any, emf: Any, output_format: str, intake_format: str
) -> None:
    document = cloudtrail_documents()["aws.discovery.ec2-download-user-data"]
    records = records_of(document)
    key = trail_key(f"lag-{uuid.uuid4().hex}")
    put(s3, BUCKET, key, document)
    oldest = min(iso_ms(records[0]["eventTime"]) or 0, iso_ms(records[-1]["eventTime"]) or 0)

    with receiving(intake_format) as (url, env, entries):
        before = int(time.time() * 1000)
        summary = handle(
            s3_event(BUCKET, key), context(), settings_for(url, FORWARDER_OUTPUT_FORMAT=output_format, **env)
        )
        after = int(time.time() * 1000)
        assert len(entries()) == summary["events_delivered"] == len(records)

    assert before - oldest <= summary["lag_max_ms"] <= after - oldest, "one batch: from its first and last entries"
    main, by_source = emf()
    assert main["LagMax"] == by_source["cloudtrail"]["LagMax"] == [summary["lag_max_ms"] / 1000]
    assert main["LagAvg"][0] > 0


def test_ocsf_delivers_a_mixed_object_whole_and_counts_what_it_could_not_map(
    s3: Any, intake: LocalIntake, emf: Any
) -> None:
    records = records_of(cloudtrail_documents()["aws.discovery.ec2-download-user-data"])
    nameless = {key: value for key, value in records[0].items() if key != "eventName"}
    addressless = {key: value for key, value in records[1].items() if key != "sourceIPAddress"}
    unmappable = [
        {**nameless, "eventID": "unmappable-no-event-name"},
        {**addressless, "eventID": "unmappable-no-source-ip"},
        {"note": "neither a CloudTrail record nor an audit event", "eventID": "unmappable-neither"},
    ]
    mixed = [*records[:3], unmappable[0], *records[3:6], unmappable[1], *records[6:], unmappable[2]]
    key = trail_key(f"mixed-{uuid.uuid4().hex}")
    put(s3, BUCKET, key, orjson.dumps({"Records": mixed}))
    tally = Tally()

    summary = handle(s3_event(BUCKET, key), context(), settings_for(intake.url, FORWARDER_OUTPUT_FORMAT="ocsf"), tally)

    assert summary["events_delivered"] == len(mixed) == len(intake.entries), "every event is delivered"
    assert summary["events_unmappable"] == 3 and tally.balanced()
    assert dict(tally.unmappable) == {("s3", "cloudtrail"): 3}
    marked = [entry["ocsf"] for entry in intake.entries if entry["ocsf"]["class_uid"] == 0]
    assert [orjson.loads(event["raw_data"]) for event in marked] == unmappable
    assert [event["unmapped"]["forwarder.ocsf_reason"] for event in marked] == [
        "no eventName (api.operation)",
        "no sourceIPAddress (src_endpoint)",
        "not a CloudTrail record or audit event",
    ]
    assert {event["unmapped"]["forwarder.ocsf"] for event in marked} == {"unmappable"}
    main, by_source = emf()
    assert main["EventsUnmappable"] == by_source["cloudtrail"]["EventsUnmappable"] == [3]
    assert main["EventsDelivered"] == [len(mixed)]
