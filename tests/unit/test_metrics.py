import json
import threading
import time
from typing import Any

import pytest

from forwarder.metrics import NAMESPACE, Lag, Outcome, Tally, TransportStats, entry_time_ms, member_time, publish
from forwarder.model import Deadline, Entry, SkipReason
from forwarder.outputs.http import Answer, HttpTransport
from forwarder.outputs.retry import RetryPolicy
from forwarder.settings import Settings


def test_tally_balances_only_when_every_event_has_an_outcome() -> None:
    tally = Tally()
    tally.count_read(("s3", "cloudtrail"), 5)
    tally.count_outcome(("s3", "cloudtrail"), "delivered", 3)
    tally.count_outcome(("s3", "cloudtrail"), "stored", 1)
    assert not tally.balanced()
    tally.count_outcome(("s3", "cloudtrail"), "failed", 1)
    assert tally.balanced()
    assert tally.summary()["by_source"] == {"s3/cloudtrail": 5}


def test_problems_keep_only_the_first_few() -> None:
    tally = Tally()
    for index in range(10):
        tally.note_problem(f"problem {index}")
    assert tally.problems == ["problem 0", "problem 1", "problem 2"]


def test_publish_emits_emf_with_every_outcome(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    tally = Tally()
    tally.count_read(("sqs", "cloudtrail"), 7)
    tally.count_outcome(("sqs", "cloudtrail"), "delivered", 4)
    tally.count_outcome(("sqs", "cloudtrail"), "failed", 3)
    tally.count_skip("cloudtrail_digest")

    publish(tally, "forwarder-test")

    emf = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = emf["_aws"]["CloudWatchMetrics"][0]
    assert metrics["Namespace"] == NAMESPACE and metrics["Dimensions"] == [["service"]]
    assert emf["service"] == "forwarder-test"
    values = {name: emf[name] for name in ("EventsRead", "EventsDelivered", "EventsFailed", "ItemsSkipped")}
    assert values == {"EventsRead": [7], "EventsDelivered": [4], "EventsFailed": [3], "ItemsSkipped": [1]}
    assert emf["EventsStored"] == emf["EventsTruncated"] == emf["InputErrors"] == [0]


def _emf_lines(capsys: pytest.CaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.strip().splitlines() if line.startswith("{")]


def test_publish_emits_bytes_requests_latency_lag_skips_and_replays(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    tally = Tally()
    tally.count_read(("s3", "cloudtrail"), 7)
    tally.count_outcome(("s3", "cloudtrail"), Outcome.DELIVERED, 6)
    tally.count_outcome(("s3", "cloudtrail"), Outcome.FAILED, 1)
    tally.count_read(("replay", "stored"), 2)
    tally.count_outcome(("replay", "stored"), Outcome.DELIVERED, 2)
    tally.count_skip(SkipReason.CLOUDTRAIL_DIGEST, 2)
    tally.count_skip(SkipReason.S3_TEST_EVENT)
    tally.bytes_in = 1234
    tally.transport.count_request(100, 20.0, retry=False)
    tally.transport.count_request(300, 40.0, retry=True)
    tally.lag["cloudtrail"] = Lag()
    tally.lag["cloudtrail"].add(max_ms=90_000, mean_ms=60_000, events=6)

    publish(tally, "forwarder-test")

    lines = _emf_lines(capsys)
    main = next(line for line in lines if "source" not in line)
    expected = {
        "EventsRead": 9,
        "EventsDelivered": 8,
        "EventsFailed": 1,
        "EventsReplayed": 2,
        "ItemsSkipped": 3,
        "Skipped_cloudtrail_digest": 2,
        "Skipped_s3_test_event": 1,
        "BytesIn": 1234,
        "BytesOut": 400,
        "Requests": 2,
        "Retries": 1,
        "DeliveryLatencyMax": 40.0,
        "DeliveryLatencyAvg": 30.0,
        "LagMax": 90.0,
        "LagAvg": 60.0,
    }
    assert {name: main[name] for name in expected} == {name: [value] for name, value in expected.items()}
    units = {m["Name"]: m["Unit"] for m in main["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert (units["LagMax"], units["DeliveryLatencyAvg"], units["BytesIn"]) == ("Seconds", "Milliseconds", "Bytes")
    by_source = {line["source"]: line for line in lines if "source" in line}
    assert set(by_source) == {"cloudtrail", "stored"}
    cloudtrail = by_source["cloudtrail"]
    assert sorted(cloudtrail["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == ["service", "source"]
    assert lines[-1] is main, "the invocation's own line comes last"
    assert (cloudtrail["EventsRead"], cloudtrail["EventsDelivered"], cloudtrail["EventsFailed"]) == ([7], [6], [1])
    assert cloudtrail["LagMax"] == [90.0]


def test_lag_is_read_from_a_batch_s_first_and_last_entries() -> None:
    now = int(time.time() * 1000)
    entries = [Entry(b'{"message":"a","timestamp":%d}' % (now - 120_000)), Entry(b'{"message":"b"}')]
    entries.append(Entry(b'{"message":"c","timestamp":%d}' % (now - 60_000)))
    tally = Tally()
    tally.count_lag("cloudtrail", entries)
    tally.count_lag("ocsf", [Entry(b'{"time":1}')])
    lag = tally.lag["cloudtrail"]
    assert set(tally.lag) == {"cloudtrail"}, "a Datadog entry's time is its `timestamp`, not `time`"
    assert lag.events == 3 and 120_000 <= lag.max_ms < 125_000 and 90_000 <= lag.mean_ms < 95_000
    assert entry_time_ms(b'{"timestamp":"x"}') is None


def test_lag_is_read_with_the_output_s_own_reader() -> None:
    now = int(time.time() * 1000)
    tally = Tally()
    tally.count_lag("vpc", [Entry(b'{"class_uid":4001,"time":%d,"metadata":{}}' % (now - 30_000))], member_time("time"))
    assert tally.lag["vpc"].events == 1 and 30_000 <= tally.lag["vpc"].max_ms < 35_000


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (b'{"ddsource":"s3","message":"x","timestamp":1733313600000}', 1733313600000),
        (b'{"ddsource":"s3","timestamp":1733313600000,"forwarder":{"id":"a"},"host":"h","message":"' + b"x" * 64, None),
        (b'{"ddsource":"s3","timestamp":1733313600000,"forwarder":{"id":"a"},"ocsf":{"time":1}}', 1733313600000),
        (b'{"message":"x","timestamp":true}', None),
        (b'{"message":"x","nested":{"timestamp":1733313600000}}', None),
        (b"[1733313600000]", None),
    ],
)
def test_a_datadog_entry_s_timestamp_is_found_wherever_it_is_written(body: bytes, found: int | None) -> None:
    """Most entries end with it; one written whole (reserved names moved, a cut audit event, OCSF)
    has it before other members. A member of a nested object is not the entry's."""
    assert entry_time_ms(body) == found


def test_a_time_member_in_seconds_or_ms_is_read_and_anything_else_is_none() -> None:
    seconds, ms = member_time("time", ms_per_unit=1000), member_time("time")
    assert seconds(b'{"time":1733313600.25,"event":{"time":1}}') == 1733313600250
    assert ms(b'{"class_uid":6003,"time":1733313600000}') == 1733313600000
    deep = b'{"a":' + b"[" * 1100 + b"]" * 1100 + b',"time":1733313600000}'
    assert [ms(body) for body in (b'{"time":"1733313600000"}', b'{"time":0}', b"not json", deep)] == [None] * 4


def test_unmappable_events_are_counted_apart_from_the_outcomes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    tally = Tally()
    for label, events in ((("s3", "cloudtrail"), 5), (("s3", "vpc"), 2)):
        tally.count_read(label, events)
        tally.count_outcome(label, Outcome.DELIVERED, events)
    other = Tally()
    other.count_unmappable(("s3", "cloudtrail"), 2)
    other.count_unmappable(("s3", "vpc"), 0)
    tally.merge(other)

    assert tally.balanced(), "an unmappable event is delivered: an extra count, not an outcome"
    assert tally.summary()["events_unmappable"] == 2 and set(tally.unmappable) == {("s3", "cloudtrail")}
    publish(tally, "forwarder-test")

    lines = _emf_lines(capsys)
    main = next(line for line in lines if "source" not in line)
    by_source = {line["source"]: line for line in lines if "source" in line}
    assert main["EventsUnmappable"] == [2] and by_source["cloudtrail"]["EventsUnmappable"] == [2]
    assert "EventsUnmappable" not in by_source["vpc"], "per source only where there were some"


def test_the_transport_counts_each_attempt_from_several_threads() -> None:
    stats = TransportStats()
    payload = b"x" * 10

    def exchange(body: bytes, seconds: float) -> Answer:
        return Answer(503, {}) if exchange.calls.pop() else Answer(202, {})  # type: ignore[attr-defined]

    exchange.calls = [False, True] * 8  # type: ignore[attr-defined]
    settings = Settings(url="https://intake.invalid/api/v2/logs", use_compression=False)
    transport = HttpTransport(
        settings,
        settings.intake_url,
        {},
        secret="k",
        policy=RetryPolicy(max_attempts=3),
        exchange=exchange,
        sleep=lambda seconds: None,
    )
    deadline = Deadline(lambda: 60_000, margin_seconds=0.0)
    threads = [threading.Thread(target=transport.send, args=(payload, deadline, stats)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = TransportStats()
    total.merge(stats)
    assert (total.requests, total.retries, total.bytes_out) == (8, 4, 80)
