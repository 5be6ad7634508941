"""INCLUDE_AT_MATCH / EXCLUDE_AT_MATCH: the message, else the record's JSON; exclude wins; counted."""

from __future__ import annotations

import orjson

from bench.fixtures import k8s_audit_lines
from bench.inputs import cloudtrail_templates
from forwarder.formats import each_event
from forwarder.formats.run import RecordRun
from forwarder.metrics import Tally
from forwarder.model import RawEvent
from forwarder.process import EventList, apply, processors
from forwarder.process.filter import Filter
from forwarder.settings import Settings
from tests.support import audit_run, trail_blocks


def filtering(**env: str) -> Filter:
    chosen = processors(Settings.from_env(env), Tally())
    assert len(chosen) == 1 and isinstance(chosen[0], Filter)
    return chosen[0]


def test_nothing_set_means_no_processor() -> None:
    assert processors(Settings.from_env({}), Tally()) == []
    assert processors(Settings.from_env({"INCLUDE_AT_MATCH": " ", "REDACT_IP": "false"}), Tally()) == []


def test_exclude_wins_over_include() -> None:
    only = filtering(INCLUDE_AT_MATCH="login", EXCLUDE_AT_MATCH="test")
    assert only.keeps("login ok") and not only.keeps("login test") and not only.keeps("logout")


def test_cloudtrail_records_are_matched_on_their_json_as_written() -> None:
    records = cloudtrail_templates()[:120]
    blocks = trail_blocks(records)
    assert any(type(block) is RecordRun for block in blocks)
    drop = filtering(EXCLUDE_AT_MATCH='"eventName":"(DescribeInstanceInformation|AssumeRole)"')

    kept_blocks = []
    filtered = 0
    for block in blocks:
        kept, dropped = apply([drop], block)
        filtered += dropped
        if kept is not None:
            assert (kept.last().position, kept.last().end_offset) == (block.last().position, block.last().end_offset)
            kept_blocks.append(kept)

    expected = [r for r in records if r.get("eventName") not in {"DescribeInstanceInformation", "AssumeRole"}]
    assert [orjson.loads(event.record or b"") for event in each_event(kept_blocks)] == expected
    assert filtered == len(records) - len(expected) > 0


def test_a_block_kept_whole_is_returned_as_it_came() -> None:
    keep = filtering(EXCLUDE_AT_MATCH="no-such-event-name")
    for block in trail_blocks(cloudtrail_templates()[:30]):
        assert keep.process(block) == (block, 0)


def test_cloudwatch_messages_are_matched_on_the_message() -> None:
    lines = k8s_audit_lines()[:40]
    run = audit_run(lines)
    keep = filtering(INCLUDE_AT_MATCH='"verb":"(create|delete)"')

    kept, filtered = keep.process(run)

    expected = [line for line in lines if orjson.loads(line).get("verb") in {"create", "delete"}]
    assert isinstance(kept, EventList) and kept.last() == run.last()
    assert [event.message for event in kept.events()] == expected
    assert filtered == len(lines) - len(expected) > 0


def test_a_single_event_filtered_leaves_nothing() -> None:
    drop = filtering(EXCLUDE_AT_MATCH="healthcheck")
    assert drop.process(RawEvent.line(1, "GET /healthcheck 200", 21)) == (None, 1)
    line = RawEvent.line(2, "GET /login 200", 36)
    assert drop.process(line) == (line, 0)
