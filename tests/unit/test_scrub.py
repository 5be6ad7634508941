"""Scrubbing: the Datadog Forwarder's patterns and placeholders, on content only, JSON kept valid."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.inputs import cloudtrail_templates
from forwarder.errors import ConfigError
from forwarder.formats import Block, each_event
from forwarder.formats.logbatch import MessageRun, read_log_batch
from forwarder.formats.run import RecordRun
from forwarder.metrics import Tally
from forwarder.model import LogBatch, LogEvent, RawEvent, Source
from forwarder.process import EventList, jsontext, processors
from forwarder.process.jsontext import context_free
from forwarder.process.scrub import EMAIL, IP, Scrubber
from forwarder.settings import Settings
from tests.support import audit_run, split_object, trail_blocks

ORIGIN = "s3://bucket/AWSLogs/1/CloudTrail/x.json.gz"

SOURCE = Source("cloudtrail", "cloudtrail", "bucket")
"""Filters and scrubbing apply to every source alike."""


def scrubber(tally: Tally, **env: str) -> Scrubber:
    chosen = processors(Settings.from_env(env), tally)
    assert len(chosen) == 1 and isinstance(chosen[0], Scrubber)
    return chosen[0]


def scrub_values(value: Any, rules: list[tuple[re.Pattern[str], str]]) -> Any:
    """The reference: every string value (not key) with every rule applied, on the parsed record."""
    if isinstance(value, str):
        for pattern, replacement in rules:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, list):
        return [scrub_values(item, rules) for item in value]
    if isinstance(value, dict):
        return {key: scrub_values(item, rules) for key, item in value.items()}
    return value


def processed(scrub: Scrubber, blocks: list[Block]) -> list[RawEvent]:
    kept = []
    for block in blocks:
        result, filtered = scrub.process(block, SOURCE)
        assert filtered == 0 and result is not None
        assert (result.last().position, result.last().end_offset) == (block.last().position, block.last().end_offset)
        kept.append(result)
    return list(each_event(kept))


def scrubbed_line(scrub: Scrubber, text: str) -> str | None:
    result, _ = scrub.process(RawEvent.line(1, text, len(text) + 1), SOURCE)
    assert isinstance(result, RawEvent)
    return result.message


def test_the_datadog_forwarder_patterns_and_placeholders() -> None:
    assert IP.pattern == r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}"
    assert EMAIL.pattern == r"[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+"
    scrub = scrubber(Tally(), REDACT_IP="true", REDACT_EMAIL="true", DD_SCRUBBING_RULE="secret")
    scrubbed = scrubbed_line(scrub, "from 10.1.2.3 by jane.doe@example.com: secret!")
    assert scrubbed == "from xxx.xxx.xxx.xxx by xxxxx@xxxxx.com: !"


def test_the_replacement_is_a_template_and_deletes_by_default_as_in_the_datadog_forwarder() -> None:
    assert scrubbed_line(scrubber(Tally(), DD_SCRUBBING_RULE=r"key=\w+"), "a key=abc") == "a "
    templated = scrubber(Tally(), DD_SCRUBBING_RULE=r"(key)=\w+", DD_SCRUBBING_RULE_REPLACEMENT=r"\1=***")
    assert scrubbed_line(templated, "a key=abc") == "a key=***"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"DD_SCRUBBING_RULE": "(hunter2"}, "DD_SCRUBBING_RULE"),
        ({"INCLUDE_AT_MATCH": "[hunter2"}, "INCLUDE_AT_MATCH"),
        ({"EXCLUDE_AT_MATCH": "hunter2)"}, "EXCLUDE_AT_MATCH"),
        ({"DD_MULTILINE_LOG_REGEX_PATTERN": "hunter2{2"}, None),
        ({"DD_MULTILINE_LOG_REGEX_PATTERN": "(?<hunter2"}, "DD_MULTILINE_LOG_REGEX_PATTERN"),
        ({"DD_SCRUBBING_RULE": "(hunter)2", "DD_SCRUBBING_RULE_REPLACEMENT": r"\2"}, "DD_SCRUBBING_RULE_REPLACEMENT"),
        ({"REDACT_IP": "sure"}, "REDACT_IP"),
    ],
)
def test_an_invalid_pattern_is_a_config_error_naming_the_variable_not_the_pattern(
    env: dict[str, str], name: str | None
) -> None:
    if name is None:  # `{2` without a closing brace is a literal in Python's re: valid
        Settings.from_env(env)
        return
    with pytest.raises(ConfigError, match=name) as raised:
        Settings.from_env(env)
    assert "hunter2" not in str(raised.value) or name == "REDACT_IP"


def test_ips_in_cloudtrail_records_are_scrubbed_the_rest_kept_byte_for_byte() -> None:
    records = cloudtrail_templates()[:80]
    blocks = trail_blocks(records)
    assert any(type(block) is RecordRun for block in blocks)
    tally = Tally()

    events = processed(scrubber(tally, REDACT_IP="true"), blocks)

    expected = [scrub_values(record, [(IP, "xxx.xxx.xxx.xxx")]) for record in records]
    assert [orjson.loads(event.record or b"") for event in events] == expected
    changed = [record for record, scrubbed in zip(records, expected, strict=True) if record != scrubbed]
    assert tally.scrubbed == len(changed) > 0
    for event, record in zip(events, records, strict=True):
        if scrub_values(record, [(IP, "")]) == record:
            assert event.record == orjson.dumps(record), "a record no rule changes keeps its bytes"
        assert event.head.eventID == record.get("eventID")


@pytest.mark.parametrize(
    "rule",
    ['"', r"\\", r"[{}\[\]:,]", r'\d+"', r"e", "^AWS", r"\bRole\b", "(?<=arn:)aws", "$", "x*", r"\u0040"],
)
def test_a_record_stays_valid_json_whatever_the_rule_matches(rule: str) -> None:
    """Quotes, escapes, structure, anchors, lookarounds, empty matches: string values change, the
    keys and structure never do, and the record parses to the reference's result."""
    records = cloudtrail_templates()[:40]
    records[3]["requestParameters"] = {"comment": 'say "hi" },{"eventVersion" a\\b \u00e9 \U0001f600 \n'}
    events = processed(
        scrubber(Tally(), DD_SCRUBBING_RULE=rule, DD_SCRUBBING_RULE_REPLACEMENT="#"), trail_blocks(records)
    )
    expected = [scrub_values(record, [(re.compile(rule), "#")]) for record in records]
    assert [orjson.loads(event.record or b"") for event in events] == expected


def test_a_match_hidden_by_an_escape_is_still_found() -> None:
    """`\\u0040` is `@` in the value: the whole-text check decodes escapes before looking."""
    record = {"eventVersion": "1.08", "eventID": "e", "userIdentity": {"userName": "jane\u0040example.com"}}
    document = b'{"Records":[' + orjson.dumps(record).replace(b"@", b"\\u0040") + b"]}"
    events = processed(scrubber(Tally(), REDACT_EMAIL="true"), list(split_object([document], ORIGIN)[1]))
    assert orjson.loads(events[0].record or b"")["userIdentity"]["userName"] == "xxxxx@xxxxx.com"


def test_anchored_rules_see_each_value_on_its_own() -> None:
    assert context_free(IP) and context_free(EMAIL)
    assert not context_free(re.compile(r"^10\.")) and not context_free(re.compile(r"(?<!\d)10\."))
    record = {"eventVersion": "1.08", "eventID": "e", "sourceIPAddress": "10.0.0.1", "note": "to 10.0.0.2"}
    events = processed(scrubber(Tally(), DD_SCRUBBING_RULE=r"^10\."), trail_blocks([record]))
    fields = orjson.loads(events[0].record or b"")
    assert (fields["sourceIPAddress"], fields["note"]) == ("0.0.1", "to 10.0.0.2")


def test_a_block_no_rule_changes_is_returned_as_it_came() -> None:
    tally = Tally()
    scrub = scrubber(tally, DD_SCRUBBING_RULE="no-such-value-anywhere")
    for block in trail_blocks(cloudtrail_templates()[:30]):
        assert scrub.process(block, SOURCE) == (block, 0)
    batch = LogBatch("1", "/aws/eks/c/cluster", "kube-apiserver-audit-1", (), (LogEvent("1", 1, "{}"),))
    run = next(read_log_batch(batch))
    assert scrub.process(run, SOURCE) == (run, 0)
    assert tally.scrubbed == 0


def test_eks_audit_messages_are_scrubbed_as_json_and_stay_a_run() -> None:
    messages = [
        orjson.dumps({"kind": "Event", "sourceIPs": ["192.168.1.10"], "user": {"username": 'a"b'}}).decode(),
        "plain text from 10.0.0.9",
        '{"not json": 10.0.0.1',
        "nothing to hide",
    ]
    run = audit_run(messages)
    tally = Tally()

    result, _ = scrubber(tally, REDACT_IP="true", DD_SCRUBBING_RULE='"', DD_SCRUBBING_RULE_REPLACEMENT="'").process(
        run, SOURCE
    )

    assert type(result) is MessageRun and result.position == run.position
    scrubbed = [event.message for event in result.log_events]
    assert orjson.loads(scrubbed[0]) == {"kind": "Event", "sourceIPs": ["xxx.xxx.xxx.xxx"], "user": {"username": "a'b"}}
    assert scrubbed[1:] == ["plain text from xxx.xxx.xxx.xxx", "{'not json': xxx.xxx.xxx.xxx", "nothing to hide"]
    assert [event.id for event in result.log_events] == [event.id for event in run.log_events]
    assert tally.scrubbed == 3


def test_lines_and_kept_lists_are_scrubbed_event_by_event() -> None:
    line = RawEvent.line(3, "login from 172.16.0.1", 120)
    kept = EventList([line, RawEvent.line(5, "quiet", 200)], RawEvent.marker(6, 210))
    scrub = scrubber(Tally(), REDACT_IP="true")

    single, _ = scrub.process(line, SOURCE)
    listed, _ = scrub.process(kept, SOURCE)

    assert isinstance(single, RawEvent) and (single.position, single.end_offset) == (3, 120)
    assert single.message == "login from xxx.xxx.xxx.xxx"
    assert listed is not None and [event.message for event in listed.events()] == [
        "login from xxx.xxx.xxx.xxx",
        "quiet",
    ]
    assert listed.last() == kept.last()


@pytest.mark.parametrize("rule", [r"\.\d{1,3}\.\d{1,3}\.\d", "@", "e", "x*", r"[a-z]+-[0-9]", '","', "Role"])
def test_the_values_a_whole_text_search_points_at_hold_every_match(rule: str) -> None:
    """Every value with a match is among those the whole text's matches overlap (`values_at`)."""
    pattern = re.compile(rule)
    for record in cloudtrail_templates()[:60]:
        text = orjson.dumps(record).decode()
        if "\\" in text:
            continue
        pointed = jsontext.values_at(text, [found.span() for found in pattern.finditer(text)])
        every = jsontext.all_values(text)
        holding = [(start, end) for start, end in every if pattern.search(text[start + 1 : end - 1])]
        assert set(holding) <= set(pointed) <= set(every)


def test_a_rule_that_matches_everywhere_costs_one_pass_not_one_per_match() -> None:
    """`x*` matches at every character: a long record is still scrubbed at once, and right."""
    record = {"eventVersion": "1.08", "eventID": "e", "items": ["ab"] * 40_000}
    started = time.process_time()
    events = processed(
        scrubber(Tally(), DD_SCRUBBING_RULE="x*", DD_SCRUBBING_RULE_REPLACEMENT="-"), trail_blocks([record])
    )
    assert time.process_time() - started < 2  # one count of the quotes per match took 16 s
    assert orjson.loads(events[0].record or b"")["items"][:2] == ["-a-b-", "-a-b-"]


@pytest.mark.parametrize(
    "rule",
    [r"\bAKIA[A-Z0-9]{16}\b", r"^arn:", r"(?<![\d.])10\.", r"\d+$", r"\bRole\b", r"(?=Role)R", r"e\B", r"^$"],
)
def test_a_rule_with_anchors_or_lookarounds_scrubs_each_value_as_the_rule_alone_would(rule: str) -> None:
    """Its finder drops the zero-width parts to search the whole text once; the rule itself, with
    them, still decides each value, so every value ends as `re.sub` on it alone leaves it."""
    pattern = re.compile(rule)
    assert jsontext.context_free_finder(pattern) is not None
    records = [*cloudtrail_templates()[:60], {"eventVersion": "1.08", "eventID": "k", "key": "AKIAABCDEFGHIJKLMNOP"}]
    documents = [b'{"Records":[' + orjson.dumps(record) + b"]}" for record in records]
    documents.append(documents[-1].replace(b"AKIA", b"\\u0041KIA"))
    scrub = scrubber(Tally(), DD_SCRUBBING_RULE=rule, DD_SCRUBBING_RULE_REPLACEMENT="[x]")
    for document in documents:
        (event,) = processed(scrub, list(split_object([document], ORIGIN)[1]))
        expected = scrub_values(orjson.loads(document)["Records"][0], [(pattern, "[x]")])
        assert orjson.loads(event.record or b"") == expected


ESCAPED_TRAPS = {
    "a": 'say "10.0.0.1" here',
    "b": "10.0.0.2",
    "c": "\\u0031\\u0030.0.0.3",
    "d": 'quiet " 10.0.0.4 "',
    "e": 'a"b',
    "quiet": ["nothing", "here", 'only "quotes"'],
    'key "10.0.0.5"': "kept",
}


def test_escaped_quotes_never_shift_which_values_a_match_points_at() -> None:
    """In a document with escapes, the values tried are those a match overlaps and those holding an
    escape (their decoded text may match where the raw does not): escaped quotes must not make a
    match point at the wrong value, and a key is never scrubbed."""
    document = orjson.dumps(ESCAPED_TRAPS).decode().replace("\\\\u", "\\u")
    record = orjson.loads(document)
    (event,) = processed(scrubber(Tally(), REDACT_IP="true"), trail_blocks([{"eventVersion": "1.08", **record}]))

    expected = scrub_values({"eventVersion": "1.08", **record}, [(IP, "xxx.xxx.xxx.xxx")])
    assert orjson.loads(event.record or b"") == expected
    assert expected["c"] == "xxx.xxx.xxx.xxx" and expected['key "10.0.0.5"'] == "kept"


def test_in_an_escaped_document_only_values_with_a_match_or_an_escape_are_tried() -> None:
    values = {f"v{index}": f"value {index}" for index in range(40)}
    document = orjson.dumps({**values, "ip": "10.0.0.1", "said": 'a "quote"'}).decode()
    spans = [found.span() for found in IP.finditer(document)]

    tried = [document[start:end] for start, end in jsontext.values_escaped_or_at(document, spans)]

    assert tried == ['"10.0.0.1"', '"a \\"quote\\""']


SCRUB_TEXT = st.text(alphabet=st.sampled_from(list('0123456789.@ab"\\/ é\u2028\U0001f600')), max_size=24)
SCRUB_VALUES = st.recursive(
    st.one_of(SCRUB_TEXT, st.integers(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(SCRUB_TEXT, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(SCRUB_TEXT, SCRUB_VALUES, max_size=6), ascii_only=st.booleans())
def test_any_record_is_scrubbed_as_each_value_alone_would_be(fields: dict[str, Any], ascii_only: bool) -> None:
    """Whatever the escapes (quotes, backslashes, \\u spellings of any character), every value ends as
    the rules leave it alone, and nothing else changes."""
    record = {"eventVersion": "1.08", "eventID": "e", **fields}
    text = json.dumps(record, ensure_ascii=ascii_only, separators=(",", ":")).encode()
    blocks = list(split_object([b'{"Records":[' + text + b"]}"], ORIGIN)[1])
    (event,) = processed(scrubber(Tally(), REDACT_IP="true", REDACT_EMAIL="true", DD_SCRUBBING_RULE=r"\bab\b"), blocks)

    rules = [(IP, "xxx.xxx.xxx.xxx"), (EMAIL, "xxxxx@xxxxx.com"), (re.compile(r"\bab\b"), "")]
    assert orjson.loads(event.record or b"") == scrub_values(orjson.loads(text), rules)
