"""Readers: CloudTrail records streamed out of `{"Records":[...]}`, lines, and log batches."""

from __future__ import annotations

import gzip
import itertools
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.errors import InputError
from forwarder.formats import SNIFF_LIMIT, Format, each_event, sniff
from forwarder.formats import records as cutter
from forwarder.formats.lines import read_lines
from forwarder.formats.logbatch import MESSAGE_RUN_EVENTS, read_log_batch
from forwarder.formats.outline import PAST, Outline, outline
from forwarder.formats.run import RecordRun
from forwarder.model import Gap, LogBatch, LogEvent, RawEvent
from tests.support import read_head, split_object, split_records

FIXTURES = Path(__file__).parent.parent / "fixtures"
CLOUDTRAIL = FIXTURES / "cloudtrail"
ORIGIN = "s3://bucket/AWSLogs/1/CloudTrail/x.json.gz"


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def records(doc: bytes, size: int = 1 << 20, max_event_bytes: int = 64 << 20) -> list[RawEvent]:
    return list(split_records(chunked(doc, size), ORIGIN, max_event_bytes))


def record_error(doc: bytes, size: int = 1 << 20) -> tuple[list[RawEvent], InputError]:
    events: list[RawEvent] = []
    with pytest.raises(InputError) as caught:
        events.extend(split_records(chunked(doc, size), ORIGIN))
    return events, caught.value


def cloudtrail_fixture(name: str) -> bytes:
    """A fixture as a CloudTrail file body: stratus-red-team files are bare arrays, `.gz` ones gzipped."""
    data = (CLOUDTRAIL / name).read_bytes()
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.startswith("stratus-red-team/"):
        return b'{"Records": ' + data + b"}"
    return data


CLOUDTRAIL_FIXTURES = sorted(
    [f"stratus-red-team/{path.name}" for path in (CLOUDTRAIL / "stratus-red-team").glob("*.json")]
    + ["plaso_aws_cloudtrail.json", "streamalert_cloudtrail_insights.json"]
    + [path.name for path in CLOUDTRAIL.glob("*.json.gz")]
)


@pytest.mark.parametrize("chunk_size", [1, 1000, 1 << 20])
@pytest.mark.parametrize("name", CLOUDTRAIL_FIXTURES)
def test_cloudtrail_fixture_records_equal_parsed_document(name: str, chunk_size: int) -> None:
    doc = cloudtrail_fixture(name)
    form, items = split_object(chunked(doc, chunk_size), ORIGIN)
    expected = orjson.loads(doc)["Records"]
    got = list(each_event(items))
    assert form is Format.CLOUDTRAIL
    assert [event.parse_record() for event in got] == expected
    assert [orjson.loads(event.record or b"") for event in got] == expected
    assert [event.position for event in got] == list(range(len(expected)))
    assert all(event.record and doc[: event.end_offset].endswith(event.record) for event in got)


def test_minified_record_bytes_are_exact() -> None:
    doc = cloudtrail_fixture("plaso_aws_cloudtrail.json")
    expected = [orjson.dumps(record) for record in orjson.loads(doc)["Records"]]
    assert [event.record for event in records(doc)] == expected
    assert b"[" + b",".join(expected) + b"]" in doc


@pytest.mark.parametrize(
    "name", ["awsdocs_cloudtrail-digest_example.json", "awsdocs_cloudtrail-digest_empty-hour.json"]
)
def test_digest_files_sniff_as_digest_and_yield_nothing(name: str) -> None:
    data = (CLOUDTRAIL / name).read_bytes()
    assert sniff(data, whole=True) is Format.DIGEST
    assert sniff(data[:512]) is sniff(data.rstrip()[:-1], whole=True) is Format.LINES
    assert sniff(orjson.dumps(orjson.loads(data)), whole=True) is Format.DIGEST
    form, events = split_object(chunked(data, 3), ORIGIN)
    assert form is Format.DIGEST
    assert list(events) == []


@pytest.mark.parametrize(
    ("path", "sniffed"),
    [
        ("k8s-audit/audit2rbac_demo.log", Format.K8S_AUDIT),
        ("cloudtrail/otrf_ec2_proxy_s3_exfiltration_2020-09-14011940.ndjson", Format.LINES),
        ("cloudtrail/plaso_lookup-events_aws_cloudtrail.jsonl", Format.LINES),
    ],
)
def test_ndjson_fixtures_split_into_their_lines(path: str, sniffed: Format) -> None:
    data = (FIXTURES / path).read_bytes()
    form, events = split_object(chunked(data, 333), ORIGIN)
    expected = [line.decode() for line in data.splitlines() if line.strip()]
    assert form is sniffed
    assert [event.message for event in each_event(events)] == expected


@pytest.mark.parametrize(
    ("head", "form"),
    [
        (b'{"Records":[{"eventVersion":"1.08"', Format.CLOUDTRAIL),
        (b'\xef\xbb\xbf\n  {\n  "Records" : [\n', Format.CLOUDTRAIL),
        (b'{"Records"', Format.CLOUDTRAIL),
        (b'{"awsAccountId":"1","digestStartTime":"2015-08-17T14:01:31Z"}', Format.LINES),
        (b'{"eventVersion":"1.08","Records":[]}\n{"eventVersion":"1.08"}\n', Format.LINES),
        (b'{"foo":1,"Records":[]}', Format.CLOUDTRAIL),
        (b'{"fileVersion":"1.0","Records":[{"eventVersion":"1.08"', Format.CLOUDTRAIL),
        (b'{"meta":{"Records":[{"eventVersion":"1.08"', Format.LINES),
        (b'{"Records":[]}\n{"Records":[]}\n', Format.LINES),
        (b'{"RecordsX":[]}', Format.LINES),
        (b'["Records"]', Format.LINES),
        (b"plain text\n", Format.LINES),
        (b"", Format.LINES),
    ],
    ids=[
        "minified",
        "bom_and_pretty",
        "cut_after_key",
        "digest_but_maybe_not_all_of_it",
        "ndjson_cloudtrail",
        "records_not_first",
        "records_behind_file_version",
        "nested_records_only",
        "ndjson_of_records_documents",
        "other_key",
        "array",
        "text",
        "empty",
    ],
)
def test_sniff(head: bytes, form: Format) -> None:
    assert sniff(head) is form


def test_split_object_sniffs_past_leading_whitespace_in_tiny_chunks() -> None:
    doc = b" " * 2000 + b'{"Records":[{"a":1}]}'
    form, items = split_object(chunked(doc, 1), ORIGIN)
    assert form is Format.CLOUDTRAIL
    assert [event.parse_record() for event in each_event(items)] == [{"a": 1}]


HOSTILE_RECORDS: dict[str, list[dict[str, Any]]] = {
    "record_with_braces_inside_strings": [{"a": "},{", "b": "}, {", "c": "{[}]"}, {"a": "}]}"}],
    "escaped_quotes": [{"a": 'x\\"},{\\"y', "b": '"'}, {"c": '\\"'}],
    "backslash_before_closing_quote": [{"a": "\\"}, {"b": "\\\\"}, {"c": "},{\\"}],
    "event_version_inside_values": [
        {"eventVersion": "1", "v": '},{"eventVersion":"2"}'},
        {"eventVersion": "3", "nested": {"eventVersion": "4"}},
        {"eventVersion": "5", "list": [{"eventVersion": "6"}, {"eventVersion": "7"}]},
    ],
    "nested_arrays_of_objects": [
        {"eventVersion": "1", "items": [{"id": n} for n in range(50)]},
        {"eventVersion": "2", "items": [[{}], [{}, {"x": [{"y": {}}]}]]},
    ],
    "unicode_and_escapes": [{"ключ": "значение ☃ 🎉", "u": "\u0000\u001f\u2028\ud7ff"}, {"e": "tab\there\nnl"}],
    "empty_records": [{}, {}, {"a": {}}],
    "first_keys_differ": [{"b": 1}, {"a": 2}, {"c": 3}, {"a": 4}, {"b": 5}],
    "non_object_values": [{"n": None, "t": True, "f": 1.5e300, "i": -(2**63), "s": ""}],
}


@pytest.mark.parametrize("indent", [False, True], ids=["minified", "pretty"])
@pytest.mark.parametrize("chunk_size", [1, 2, 5, 64, 1 << 20])
@pytest.mark.parametrize("case", HOSTILE_RECORDS)
def test_hostile_records_round_trip(case: str, chunk_size: int, indent: bool) -> None:
    expected = HOSTILE_RECORDS[case]
    doc = orjson.dumps({"Records": expected}, option=orjson.OPT_INDENT_2 if indent else None)
    events = records(doc, chunk_size)
    assert [event.parse_record() for event in events] == expected
    if not indent:
        assert [event.record for event in events] == [orjson.dumps(record) for record in expected]


@pytest.mark.parametrize(
    "doc",
    [b'{"Records":[]}', b'{ "Records" : [ ] }\n', b'{"Records":[]}trailing junk'],
    ids=["minified", "spaced", "junk_after"],
)
def test_empty_records_array_yields_nothing(doc: bytes) -> None:
    assert records(doc, 1) == []


def test_keys_after_the_records_array_are_ignored() -> None:
    doc = b'{"Records":[{"a":1}], "Other":[{"b":2}], "x": {"y": "}"}}'
    assert [event.parse_record() for event in records(doc, 3)] == [{"a": 1}]


def test_whitespace_between_records_in_any_style() -> None:
    doc = b'\xef\xbb\xbf {\r\n\t"Records"\n:\n[ \n{"a":1}\n\t,\r\n{"b":2} , {"c":3}\n]\n}\n'
    assert [event.parse_record() for event in records(doc, 2)] == [{"a": 1}, {"b": 2}, {"c": 3}]


@pytest.mark.parametrize(
    ("doc", "index", "offset", "reason"),
    [
        (b'{"Records":[{"a":1},{"b":2', 1, 20, "document ends inside a record"),
        (b'{"Records":[{"a":1},{"b":"}', 1, 20, "document ends inside a record"),
        (b'{"Records":[{"a":1},{"b":2}', 2, 27, "before the Records array closes"),
        (b'{"Records":[{"a":1},', 1, 20, "before the Records array closes"),
        (b'{"Records":[{"a":1}{"b":2}]}', 1, 19, "expected ',' or ']'"),
        (b'{"Records":[{"a":1},{"b":x}]}', 1, 20, "not valid JSON"),
        (b'{"Records":[{"a":1},{"b":1,}]}', 1, 20, "not valid JSON"),
        (b'{"Records":[{"a":1},[1]]}', 1, 20, "expected a record"),
        (b'{"Records":[{"a":1},,{"b":2}]}', 1, 20, "expected a record"),
    ],
    ids=[
        "truncated_mid_record",
        "truncated_mid_string",
        "truncated_before_close",
        "truncated_after_comma",
        "missing_comma",
        "bad_value",
        "trailing_comma",
        "array_element",
        "double_comma",
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 1 << 20])
def test_invalid_document_names_record_and_offset(
    doc: bytes, index: int, offset: int, reason: str, chunk_size: int
) -> None:
    events, error = record_error(doc, chunk_size)
    assert [event.parse_record() for event in events] == [{"a": 1}, {"b": 2}][:index]
    assert error.origin == ORIGIN
    assert error.position == f"record {index} (decompressed byte {offset})"
    assert reason in error.reason


def test_not_a_records_document_is_an_error() -> None:
    with pytest.raises(InputError, match="not a CloudTrail file"):
        records(b'{"Records": {"a": 1}}')


def test_invalid_utf8_inside_a_record_is_replaced() -> None:
    doc = b'{"Records":[{"eventVersion":"1","a":"caf\xe9 \xff"},{"eventVersion":"2"}]}'
    events = records(doc, 4)
    assert events[0].parse_record() == {"eventVersion": "1", "a": "caf\ufffd \ufffd"}
    assert events[0].record == '{"eventVersion":"1","a":"caf\ufffd \ufffd"}'.encode()
    assert events[1].parse_record() == {"eventVersion": "2"}


def test_record_over_the_size_cap_is_an_error() -> None:
    doc = orjson.dumps({"Records": [{"a": "small"}, {"b": "x" * 5000}, {"c": 1}]})
    events: list[RawEvent] = []
    with pytest.raises(InputError) as caught:
        events.extend(split_records(chunked(doc, 100), ORIGIN, max_event_bytes=1000))
    error = caught.value
    assert [event.parse_record() for event in events] == [{"a": "small"}]
    assert error.position.startswith("record 1 ")
    assert "longer than 1000 bytes" in error.reason


def test_the_size_cap_holds_for_records_that_could_go_in_runs() -> None:
    expected = [*trail(30), {"eventVersion": "1.08", "big": "x" * 5000}, *trail(30)]
    doc = orjson.dumps({"Records": expected})
    events: list[RawEvent] = []
    with pytest.raises(InputError, match="longer than 1000 bytes") as caught:
        events.extend(split_records([doc], ORIGIN, max_event_bytes=1000))
    assert caught.value.position.startswith("record 30 ")
    assert [event.parse_record() for event in events] == expected[:30]


def test_many_false_boundaries_in_one_record_stay_correct() -> None:
    hostile = {"eventVersion": "1", "items": [{"eventVersion": str(n)} for n in range(2000)]}
    expected = [hostile, {"eventVersion": "2"}, hostile]
    doc = orjson.dumps({"Records": expected})
    assert [event.parse_record() for event in records(doc, 4096)] == expected


def test_huge_record_in_small_chunks_is_linear() -> None:
    """A record far larger than a chunk must not be re-copied or re-scanned per chunk."""
    big = {"eventVersion": "1", "requestParameters": {"blob": "a},{\\" * 2_000_000}}
    doc = orjson.dumps({"Records": [big, {"eventVersion": "2"}]})
    started = time.perf_counter()
    events = records(doc, 4096)
    assert time.perf_counter() - started < 10
    assert [event.parse_record() for event in events] == [big, {"eventVersion": "2"}]


JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["},{", "}, {", '"', "\\", '\\"', '},{"eventVersion":', "]}", "{", "[", "\\u0041"])
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
RECORD = st.dictionaries(
    st.sampled_from(["eventVersion", "a", "}", '"', ""]) | st.text(max_size=8), JSON_VALUE, max_size=5
)


@settings(max_examples=200, deadline=None)
@given(expected=st.lists(RECORD, max_size=6), indent=st.booleans(), data=st.data())
def test_property_records_round_trip_at_any_chunking(expected: list[dict[str, Any]], indent: bool, data: Any) -> None:
    doc = orjson.dumps({"Records": expected}, option=orjson.OPT_INDENT_2 if indent else None)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(doc)), max_size=20))
    whole = list(split_records([doc], ORIGIN))
    assert [event.parse_record() for event in whole] == expected
    assert [event.position for event in whole] == list(range(len(expected)))
    if not indent:
        assert [event.record for event in whole] == [orjson.dumps(record) for record in expected]
    assert list(split_records(split_at(doc, cuts), ORIGIN)) == whole
    assert list(split_records(chunked(doc, 1), ORIGIN)) == whole


def trail(count: int, **extra: Any) -> list[dict[str, Any]]:
    """Records as a trail writes them: `eventVersion` first."""
    return [{"eventVersion": "1.08", "eventID": f"id-{n}", "eventName": "Get", **extra} for n in range(count)]


def cut_exactly(expected: list[dict[str, Any]], chunk_size: int = 1 << 20) -> list[Any]:
    """Split a minified document, check every record against the whole parse, and return what
    `split_object` yielded: `RecordRun`s and `RawEvent`s."""
    doc = orjson.dumps({"Records": expected})
    form, items = split_object(chunked(doc, chunk_size), ORIGIN)
    got = list(items)
    events = list(each_event(got))
    assert form is Format.CLOUDTRAIL
    assert [event.record for event in events] == [orjson.dumps(record) for record in expected]
    assert [event.position for event in events] == list(range(len(expected)))
    assert all(doc[: event.end_offset].endswith(event.record or b"-") for event in events)
    assert [event.head for event in events] == [read_head(orjson.dumps(record)) for record in expected]
    return got


def test_minified_trail_records_are_cut_in_runs_and_taken_apart_exactly() -> None:
    got = cut_exactly(trail(3000, requestParameters={"items": [{"a": "},{"}, {"b": 2}]}), chunk_size=65536)
    runs = [item for item in got if isinstance(item, RecordRun)]
    assert sum(len(run) for run in runs) > 0.9 * 3000
    assert all(run.last().end_offset == run.end_offset for run in runs)


@pytest.mark.parametrize(
    "odd",
    [
        {"eventVersion": "1", "x": [{"a": 1}, {"eventVersion": 2}]},
        {"eventVersion": "1", "x": [[{"a": 1}, {"eventVersion": 2}]], "y": [[{}], [{"eventVersion": 3}]]},
        {"eventVersion": "1", "s": 'ends in "eventVersion'},
        {"eventVersion": "1", "eventVersion ": 'key "eventVersion"'},
        {"eventName": "no eventVersion"},
        {"eventVersion": "1", "n": 1e300, "deep": [[[[{"eventVersion": "x"}]]]]},
        {"eventVersion": "1", "service": "a field the forwarder moves"},
    ],
    ids=[
        "nested_cut",
        "nested_cuts_that_stay_valid",
        "string_ending_in_the_key",
        "key_in_a_string",
        "without_the_key",
        "deep",
        "reserved_name",
    ],
)
def test_records_that_could_fool_a_cut_are_cut_exactly(odd: dict[str, Any]) -> None:
    cut_exactly([*trail(50), odd, *trail(50)])


@pytest.mark.parametrize(
    "unmarked",
    [{"eventName": "Get", "eventVersion": "1.08"}, {"eventName": "Get"}],
    ids=["key_not_first", "key_missing"],
)
@pytest.mark.parametrize(
    "nested",
    [
        {"eventVersion": "1", "x": [{"a": 1}, {"eventVersion": 2}]},
        {"eventVersion": "1", "x": [[{}, {"eventVersion": 2}]]},
    ],
    ids=["in_an_array", "in_an_array_of_arrays"],
)
def test_a_nested_cut_beside_a_record_not_starting_with_the_key_is_caught(
    nested: dict[str, Any], unmarked: dict[str, Any]
) -> None:
    """As many records as cuts, yet the cuts are wrong: the nested cut's `],[` stays inside its
    record, and the two records the missed boundary joins share a tuple."""
    cut_exactly([*trail(20), nested, unmarked, *trail(20)])


def test_a_file_that_keeps_defeating_the_proof_is_cut_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first runs each hold a record that defeats the proof; after a few, no run is tried again."""
    monkeypatch.setattr(cutter, "RUN_MAX_BYTES", 2048)
    records = [
        {**record, "service": "a field the forwarder moves"} if n < 300 and n % 10 == 5 else record
        for n, record in enumerate(trail(600))
    ]
    assert not any(isinstance(item, RecordRun) for item in cut_exactly(records))
    monkeypatch.setattr(cutter, "_RUNS_REFUSED_TOLERATED", 1000)
    assert any(isinstance(item, RecordRun) for item in cut_exactly(records))


@pytest.mark.parametrize("spelling", [b"\\u0065ventVersion", b"ev\\u0065ntV\\u0065rsion", b"\\u0065\\u0076entVersion"])
def test_a_nested_cut_beside_a_key_spelled_with_escapes_is_caught(spelling: bytes) -> None:
    """A key spelled with escapes is the same key to a parser, not to a search for the literal."""
    records = [orjson.dumps(record) for record in trail(20)]
    nested = b'{"eventVersion":"1.08","x":[{},{"eventVersion":2}]}'
    escaped = b'{"' + spelling + b'":"1.08","eventID":"e"}'
    doc = b'{"Records":[' + b",".join([*records, nested, escaped, *records]) + b"]}"
    assert orjson.loads(escaped) == {"eventVersion": "1.08", "eventID": "e"}
    got = [event.record for event in split_records(chunked(doc, 4096), ORIGIN)]
    assert got == [*records, nested, escaped, *records]


def test_a_run_does_not_reach_past_the_end_of_the_records_array() -> None:
    """After the array, `],[` and more literals could pose as the brackets a run adds (found by fuzzing)."""
    records = [orjson.dumps(record) for record in trail(3)]
    nested = b'{"eventVersion":"1.08","eventID":"v","x":[[{},{"eventVersion":2}]]}'
    doc = b'{"Records":[' + b",".join([*records, nested]) + b'\r\n],[{"eventVersion":3},{"eventVersion":4}]}'
    assert [event.record for event in split_records([doc], ORIGIN)] == [*records, nested]


RUN_RECORD = st.fixed_dictionaries({"eventVersion": JSON_LEAF}, optional={"eventID": st.text(max_size=4)}).flatmap(
    lambda head: st.dictionaries(
        st.sampled_from(["eventVersion", "a", "eventTime"]) | st.text(max_size=8), JSON_VALUE, max_size=4
    ).map(lambda rest: {**head, **rest})
)


@settings(max_examples=200, deadline=None)
@given(
    expected=st.lists(RUN_RECORD | RECORD, min_size=1, max_size=12),
    chunk_size=st.sampled_from([7, 64, 1 << 20]),
)
def test_property_runs_cut_exactly(expected: list[dict[str, Any]], chunk_size: int) -> None:
    cut_exactly(expected, chunk_size)


def test_lines_basic() -> None:
    data = b'{"a":1}\n\n   \n{"b":2}\r\nlast line without newline'
    events = list(each_event(read_lines([data], ORIGIN)))
    assert [(event.position, event.message) for event in events] == [
        (1, '{"a":1}'),
        (4, '{"b":2}'),
        (5, "last line without newline"),
    ]


def test_crlf_split_across_chunks() -> None:
    events = list(each_event(read_lines([b"one\r", b"\ntwo\r", b"\n", b"\r\n", b"three"], ORIGIN)))
    assert [event.message for event in events] == ["one", "two", "three"]
    assert [event.position for event in events] == [1, 2, 4]


def test_line_split_across_many_chunks_comes_out_whole() -> None:
    line = b"x" * 10_000
    events = list(each_event(read_lines([*chunked(line + b"\n" + line, 7), b"\n"], ORIGIN)))
    assert [event.message for event in events] == [line.decode(), line.decode()]


def test_invalid_utf8_in_a_line_is_replaced_not_fatal() -> None:
    events = list(each_event(read_lines([b"caf\xe9\n\xff\xfe\nok\n"], ORIGIN)))
    assert [event.message for event in events] == ["caf\ufffd", "\ufffd\ufffd", "ok"]


def test_bom_at_the_start_of_lines_is_dropped() -> None:
    events = list(each_event(read_lines([b"\xef\xbb", b"\xbf{}\n{}\n"], ORIGIN)))
    assert [event.message for event in events] == ["{}", "{}"]


def test_line_over_the_size_cap_names_the_line() -> None:
    chunks = [b"short\n", b"y" * 600, b"y" * 600, b"\n"]
    with pytest.raises(InputError) as caught:
        list(each_event(read_lines(chunks, ORIGIN, max_event_bytes=1000)))
    assert caught.value.position == "line 2"


def test_long_line_inside_one_chunk_over_the_cap() -> None:
    with pytest.raises(InputError) as caught:
        list(each_event(read_lines([b"ok\n" + b"z" * 2000 + b"\nok\n"], ORIGIN, max_event_bytes=1000)))
    assert caught.value.position == "line 2"


LINE_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\n\r\ufeff"), max_size=20)


def test_every_piece_of_lines_ends_with_a_gap_at_the_last_line_it_completed() -> None:
    """Blank lines yield no event, so each piece read ends with a `Gap`: the consumer looks at the
    clock and can checkpoint past them however few events there are."""
    blocks = list(read_lines([b"\n" * 1000, b'{"a":1}\n\n', b"\n" * 10], ORIGIN))
    gaps = [block for block in blocks if isinstance(block, Gap)]
    assert [(gap.last().position, gap.last().end_offset) for gap in gaps] == [(1000, 1000), (1002, 1009), (1012, 1019)]
    assert [event.message for event in each_event(blocks)] == ['{"a":1}']


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(LINE_TEXT, max_size=12),
    endings=st.lists(st.sampled_from(["\n", "\r\n"]), min_size=12),
    data=st.data(),
)
def test_property_lines_at_any_chunking(lines: list[str], endings: list[str], data: Any) -> None:
    text = "".join(line + ending for line, ending in zip(lines, endings, strict=False))
    if data.draw(st.booleans()):
        text = text.rstrip("\r\n")
    raw = text.encode()
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=20))
    expected = [(number, line) for number, line in enumerate(lines, 1) if line and not line.encode().isspace()]
    whole = list(each_event(read_lines([raw], ORIGIN)))
    assert [(event.position, event.message) for event in whole] == expected
    assert list(each_event(read_lines(split_at(raw, cuts), ORIGIN))) == whole
    assert list(each_event(read_lines(chunked(raw, 1), ORIGIN))) == whole


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200), data=st.data())
def test_property_lines_of_arbitrary_bytes_never_fail_or_depend_on_chunking(raw: bytes, data: Any) -> None:
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=20))
    whole = list(each_event(read_lines([raw], ORIGIN)))
    assert list(each_event(read_lines(split_at(raw, cuts), ORIGIN))) == whole
    assert len(whole) <= raw.count(b"\n") + 1


def test_read_log_batch_keeps_messages_and_ids() -> None:
    batch = LogBatch(
        owner="1",
        log_group="/aws/eks/c/cluster",
        log_stream="kube-apiserver-audit-1",
        subscription_filters=(),
        log_events=(LogEvent("e1", 1700000000000, ' {"kind":"Event"} \r\n'), LogEvent("e2", 1700000000001, "")),
    )
    assert list(each_event(read_log_batch(batch))) == [
        RawEvent(position=0, message=' {"kind":"Event"} \r\n', timestamp_ms=1700000000000, event_id="e1"),
        RawEvent(position=1, message="", timestamp_ms=1700000000001, event_id="e2"),
    ]


def test_read_log_batch_gives_runs_of_bounded_length_in_order() -> None:
    events = tuple(LogEvent(str(index), index, f"line {index}") for index in range(2 * MESSAGE_RUN_EVENTS + 3))
    batch = LogBatch("1", "/aws/lambda/f", "s", (), events)
    runs = list(read_log_batch(batch))
    assert [len(run) for run in runs] == [MESSAGE_RUN_EVENTS, MESSAGE_RUN_EVENTS, 3]
    assert [run.last().position for run in runs] == [
        MESSAGE_RUN_EVENTS - 1,
        2 * MESSAGE_RUN_EVENTS - 1,
        len(events) - 1,
    ]
    flat = list(each_event(runs))
    assert [event.position for event in flat] == list(range(len(events)))
    assert [event.event_id for event in flat] == [event.id for event in events]
    assert list(read_log_batch(LogBatch("1", "/aws/lambda/f", "s", (), ()))) == []


def audit_lines_with_a_digest_lookalike() -> list[bytes]:
    """The audit fixture, its first event creating a ConfigMap whose data keys are a digest's."""
    lines = (FIXTURES / "k8s-audit" / "audit2rbac_demo.log").read_bytes().splitlines()
    first = orjson.loads(lines[0])
    first["requestObject"] = {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "innocent", "namespace": "default"},
        "data": {"awsAccountId": "123456789012", "digestStartTime": "2024-12-04T11:00:00Z"},
    }
    return [orjson.dumps(first), *lines[1:]]


@pytest.mark.parametrize("chunk_size", [1 << 20, 333, 7])
def test_a_configmap_with_digest_keys_does_not_hide_the_audit_file(chunk_size: int) -> None:
    lines = audit_lines_with_a_digest_lookalike()
    data = b"\n".join(lines) + b"\n"
    form, blocks = split_object(chunked(data, chunk_size), ORIGIN)
    assert form is Format.K8S_AUDIT  # read as lines, never as a digest
    assert [event.message for event in each_event(blocks)] == [line.decode() for line in lines]


@pytest.mark.parametrize(
    "data",
    [
        b'{"awsAccountId":"1","digestStartTime":"2024-12-04T11:00:00Z"}\n{"b":2}\n',
        b'{"awsAccountId":"1","digestStartTime":"2024-12-04T11:00:00Z"}{"b":2}',
        b'{"awsAccountId":"1","digestStartTime":"2024-12-04T11:00:00Z"}\n' + b'{"b":"' + b"x" * 100_000 + b'"}\n',
        b'{"awsAccountId":"1","digestStartTime":"2024-12-04T11:00:00Z","pad":"' + b"x" * 100_000 + b'"}',
        b'{"a":{"awsAccountId":"1","digestStartTime":"2024-12-04T11:00:00Z"}}',
    ],
    ids=["ndjson", "concatenated", "ndjson_long_second_line", "longer_than_the_head", "nested"],
)
def test_digest_keys_in_an_ndjson_line_or_nested_never_make_a_digest(data: bytes) -> None:
    form, _ = split_object(chunked(data, 64), ORIGIN)
    assert form is Format.LINES


def trail_records(count: int) -> list[dict[str, Any]]:
    return [
        {
            "eventVersion": "1.08",
            "eventID": f"id-{n}",
            "eventTime": "2024-12-04T12:00:00Z",
            "eventName": "GetObject",
            "requestParameters": {"key": f"k{n}", "Records": [n]},
        }
        for n in range(count)
    ]


@pytest.mark.parametrize("chunk_size", [1 << 20, 4096, 7])
def test_records_behind_a_file_version_are_all_read_as_records(chunk_size: int) -> None:
    expected = trail_records(2000)
    doc = orjson.dumps({"fileVersion": "1.0", "Records": expected})
    form, blocks = split_object(chunked(doc, chunk_size), ORIGIN)
    assert form is Format.CLOUDTRAIL
    assert [event.parse_record() for event in each_event(blocks)] == orjson.loads(doc)["Records"]


LEADING_MEMBERS = {
    "scalars": b'"s": "a \\"quoted\\" }], {\\"Records\\": [", "n": -1.5e3, "t": true, "f": false, "z": null',
    "nested_records": b'"meta": {"Records": [{"decoy": 1}], "x": [[], {}, "]}"]}',
    "array_of_records_objects": b'"Old": [{"Records": [{"decoy": 2}]}]',
    "escaped_name": b'"Rec\\u006fRds": 1, "a\\u0022b": {"c": [1, 2, {"d": "}"}]}',
    "pretty": b'\n  "fileVersion" : "1.0" ,\n  "deliveredAt" : { "when" : [ 1 , 2 ] }\n',
}


@pytest.mark.parametrize("indent", [False, True], ids=["minified", "pretty"])
@pytest.mark.parametrize("chunk_size", [1, 3, 1 << 20])
@pytest.mark.parametrize("case", LEADING_MEMBERS)
def test_members_before_records_are_skipped_and_nested_records_do_not_count(
    case: str, chunk_size: int, indent: bool
) -> None:
    expected = trail_records(3)
    array = orjson.dumps(expected, option=orjson.OPT_INDENT_2 if indent else None)
    doc = b"{" + LEADING_MEMBERS[case] + b', "Records": ' + array + b', "after": {"Records": [{"decoy": 3}]}}'
    assert orjson.loads(doc)["Records"] == expected
    form, blocks = split_object(chunked(doc, chunk_size), ORIGIN)
    assert form is Format.CLOUDTRAIL
    assert [event.parse_record() for event in each_event(blocks)] == expected


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b'{"fileVersion": "1.0"}', 'no "Records"'),
        (b'{"fileVersion": "1.0", "other": [1, 2]}', 'no "Records"'),
        (b'{"fileVersion": tru, "Records": []}', "not valid JSON"),
        (b'{"fileVersion": "1.0" "Records": []}', "expected ','"),
        (b'{"fileVersion": {"a": 1, "Records": []}', "ends"),
        (b'{"fileVersion": "1.0", "Records": {"a": 1}}', "not an array"),
        (b'{"fileVersion": ' + b'"' + b"x" * 5000 + b'", "Records": []}', "longer than"),
    ],
    ids=["no_records", "no_records_after_two", "bad_value", "missing_comma", "unclosed", "not_array", "too_long"],
)
def test_a_document_whose_records_cannot_be_reached_is_an_error(doc: bytes, reason: str) -> None:
    with pytest.raises(InputError, match="not a CloudTrail file") as caught:
        list(split_records(chunked(doc, 5), ORIGIN, max_event_bytes=4096))
    assert reason in caught.value.reason


def test_records_behind_a_member_longer_than_the_sniff_limit_are_read_as_one_line() -> None:
    """The sniffer looks `SNIFF_LIMIT` ahead: past that, a document goes as one line, never silently
    lost (truncated and counted so, or an error when over the size cap)."""
    doc = orjson.dumps({"padding": "x" * SNIFF_LIMIT, "Records": trail_records(2)})
    form, blocks = split_object(chunked(doc, 4096), ORIGIN)
    assert form is Format.LINES
    assert [event.message for event in each_event(blocks)] == [doc.decode()]


@settings(max_examples=200, deadline=None)
@given(
    before=st.dictionaries(st.text(max_size=8).filter(lambda name: name != "Records"), JSON_VALUE, max_size=4),
    after=st.dictionaries(st.text(max_size=8).filter(lambda name: name != "Records"), JSON_VALUE, max_size=2),
    expected=st.lists(RECORD, min_size=1, max_size=4),
    indent=st.booleans(),
    data=st.data(),
)
def test_property_any_members_before_records_are_skipped(
    before: dict[str, Any], after: dict[str, Any], expected: list[dict[str, Any]], indent: bool, data: Any
) -> None:
    document = {**before, "Records": expected, **{name: value for name, value in after.items() if name not in before}}
    doc = orjson.dumps(document, option=orjson.OPT_INDENT_2 if indent else None)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(doc)), max_size=20))
    form, blocks = split_object(split_at(doc, cuts), ORIGIN)
    assert form is Format.CLOUDTRAIL
    assert [event.parse_record() for event in each_event(blocks)] == expected


def test_a_single_object_with_only_two_digest_fields_is_not_a_digest() -> None:
    data = b'{"awsAccountId":"1","digestStartTime":"2024-12-04T11:00:00Z","message":"hello"}\n'
    assert sniff(data, whole=True) is Format.LINES


def test_the_sniffer_stops_at_records_and_never_walks_the_array() -> None:
    """The array is megabytes on the CloudTrail path: walking it in the head cost 18 ms an object."""
    assert outline(b'{"fileVersion":"1.0","Records":[{"a":' + b"[" * 100_000) == Outline(True, PAST)
    assert outline(b'{"fileVersion":{"Records":[]},"x":1}') == Outline(False, 36)
