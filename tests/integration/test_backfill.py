"""`forwarder backfill`: a prefix of many small trail files against moto and the local intake.

Accounting is by `forwarder.id` (CloudTrail's eventID) at the intake: after an interrupted or
partly failed run and its rerun, every event was accepted exactly once.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from forwarder import cli
from forwarder.backfill import Backfill, Window, key_date, parse_day
from forwarder.devintake import Fault, LocalIntake

from .faults import event_ids, records, trail
from .helpers import API_KEY, put, settings_for

OBJECTS = 24
PER_OBJECT = 5


def _key(n: int) -> str:
    return f"AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/{1 + n % 6:02d}/trail-{n:03d}.json.gz"


@pytest.fixture
def archive(s3: Any) -> tuple[str, set[str]]:
    """A bucket of OBJECTS trail files over six days, and the eventIDs they hold."""
    bucket = f"backfill-{uuid.uuid4().hex[:8]}"
    ids: set[str] = set()
    for n in range(OBJECTS):
        recs = records(f"obj{n:03d}", PER_OBJECT)
        put(s3, bucket, _key(n), trail(recs))
        ids |= event_ids(recs)
    put(s3, bucket, "elsewhere/not-this-prefix.json.gz", trail(records("other", 3)))
    return bucket, ids


def _accepted(intake: LocalIntake) -> Counter[str]:
    return Counter(entry["forwarder"]["id"] for entry in intake.entries)


def _backfill(intake: LocalIntake, bucket: str, state: Path, **options: Any) -> tuple[Backfill, io.StringIO]:
    out = io.StringIO()
    job = Backfill(settings_for(intake.url), bucket, "AWSLogs/", state=state, out=out, progress_every=0.0, **options)
    return job, out


def test_a_prefix_is_forwarded_once_with_progress_and_a_summary(
    archive: tuple[str, set[str]], intake: LocalIntake, tmp_path: Path, s3: Any
) -> None:
    bucket, ids = archive
    job, out = _backfill(intake, bucket, tmp_path / "state.json", workers=3)

    report = job.run()

    assert _accepted(intake) == Counter(ids)
    assert report.listed == OBJECTS and report.forwarded == OBJECTS and not report.failed
    assert report.tally.events_read == OBJECTS * PER_OBJECT == report.tally.total("delivered")
    progress = out.getvalue().splitlines()
    assert progress and f"objects {OBJECTS}/{OBJECTS}" in progress[-1]
    assert all("MB/s" in line and "ETA" in line and "events" in line for line in progress)
    assert len((tmp_path / "state.json").read_text().splitlines()) == OBJECTS
    assert f"{OBJECTS} forwarded, 0 failed" in report.summary()
    # The self-metrics, filled where the data is, through the real pipeline and transport.
    sizes = [item["Size"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="AWSLogs/")["Contents"]]
    assert report.tally.bytes_in == sum(sizes)
    assert report.tally.transport.requests == OBJECTS and report.tally.transport.retries == 0
    assert report.tally.transport.bytes_out > 0 and report.tally.transport.latency_ms_max > 0
    lag = report.tally.lag["cloudtrail"]
    assert lag.events == OBJECTS * PER_OBJECT and lag.max_ms >= lag.mean_ms > 0, "2024 events: long late"


def test_an_interrupted_backfill_resumes_without_sending_again(
    archive: tuple[str, set[str]], intake: LocalIntake, tmp_path: Path
) -> None:
    bucket, ids = archive
    state = tmp_path / "state.json"
    first, _ = _backfill(intake, bucket, state, workers=2, stop_after=7)
    stopped = first.run()
    assert stopped.interrupted and 7 <= stopped.forwarded < OBJECTS
    sent_first = sum(_accepted(intake).values())
    assert sent_first == stopped.forwarded * PER_OBJECT

    again, _ = _backfill(intake, bucket, state, workers=2)
    report = again.run()

    assert report.already_done == stopped.forwarded
    assert report.forwarded == OBJECTS - stopped.forwarded and not report.interrupted
    assert _accepted(intake) == Counter(ids), "every event accepted exactly once over both runs"


def test_a_failed_object_is_named_and_only_it_is_sent_again(
    archive: tuple[str, set[str]], intake: LocalIntake, tmp_path: Path
) -> None:
    bucket, ids = archive
    state = tmp_path / "state.json"
    intake.script([400])  # the first request is refused (not retried): its object fails
    first, _ = _backfill(intake, bucket, state, workers=1)
    failed = first.run()
    assert list(failed.failed) == [f"{bucket}/{_key(0)}"]
    assert "400" in failed.failed[f"{bucket}/{_key(0)}"]
    assert f"failed: s3://{bucket}/{_key(0)}" in failed.summary()

    again, _ = _backfill(intake, bucket, state, workers=1)
    report = again.run()

    assert report.forwarded == 1 and report.already_done == OBJECTS - 1
    assert _accepted(intake) == Counter(ids)


def test_the_cli_filters_by_the_key_s_day_and_fails_naming_what_failed(
    archive: tuple[str, set[str]], intake: LocalIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    bucket, _ = archive
    for name, value in {"DD_URL": intake.url, "DD_API_KEY": API_KEY, "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    state = str(tmp_path / "state.json")
    args = ["backfill", f"s3://{bucket}/AWSLogs/", "--since", "2024-12-02", "--until", "2024-12-03", "--state", state]

    assert cli.main([*args, "--workers", "2"]) == 0
    in_window = [n for n in range(OBJECTS) if 1 + n % 6 in (2, 3)]
    assert len(_accepted(intake)) == len(in_window) * PER_OBJECT
    assert f"{len(in_window)} forwarded, 0 failed" in capsys.readouterr().err

    assert cli.main(["backfill", "s3://no-such-bucket-here/x", "--state", str(tmp_path / "none.json")]) == 1
    assert "cannot list s3://no-such-bucket-here/x" in capsys.readouterr().err

    intake.script([400])
    assert cli.main([*args[:2], "--state", str(tmp_path / "other.json"), "--workers", "1"]) == 1
    assert f"failed: s3://{bucket}/{_key(0)}" in capsys.readouterr().err


def test_days_come_from_the_key_when_it_names_one() -> None:
    assert key_date("AWSLogs/1/CloudTrail/us-east-1/2024/12/04/x.json.gz") == parse_day("2024-12-04")
    assert key_date("logs/2024/13/40/x") is None
    assert key_date("flat/x.json") is None
    assert Window(parse_day("2024-12-01"), parse_day("2024-12-01")).since == parse_day("2024-12-01")


def test_a_signal_lets_the_objects_in_flight_finish_and_saves_them(
    archive: tuple[str, set[str]], intake: LocalIntake, tmp_path: Path
) -> None:
    bucket, ids = archive
    state = tmp_path / "state.json"
    # Objects after the third are answered slowly: the signal surely comes while the run goes on.
    intake.script([Fault(), Fault(), Fault()] + [Fault(delay_seconds=0.2)] * (OBJECTS - 3))
    first, _ = _backfill(intake, bucket, state, workers=2)
    interrupt = threading.Timer(
        0.0, lambda: intake.wait_for(3 * PER_OBJECT, 30) and os.kill(os.getpid(), signal.SIGINT)
    )
    interrupt.start()
    stopped = first.run()
    interrupt.join()
    assert stopped.interrupted and not stopped.failed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the handlers are put back"
    recorded = len(state.read_text().splitlines())
    assert recorded == stopped.forwarded and sum(_accepted(intake).values()) == recorded * PER_OBJECT

    again, _ = _backfill(intake, bucket, state, workers=2)
    again.run()
    assert _accepted(intake) == Counter(ids)
