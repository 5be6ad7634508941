import json

import pytest

from forwarder.metrics import NAMESPACE, Tally, publish


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
