"""The fast path delivers exactly what a deliberately simple one would.

The fast path streams: it inflates in capped pieces, cuts records out of the `Records` array at
proposed ends that `read_head` confirms (decoding only the fields an entry needs), and splices the
metadata in front of each record's own bytes. The reference here does none of that: it parses the
whole document with orjson, takes `Records`, and builds each entry as a dict, the metadata (with the
record's own account, region and instance host, `own_labels`) plus the record's fields (a reserved
name moved into `original_fields`). Both are compared element for
element after `orjson.loads`, on every real CloudTrail fixture and on generated documents full of
strings that look like record boundaries.
"""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.fixtures import cloudtrail_documents
from bench.inputs import cloudtrail_records
from forwarder.formats import Format
from forwarder.formats.jsonhead import InvalidRecord
from forwarder.model import Invoker, RawEvent, S3Object, Source
from forwarder.outputs.datadog import RESERVED, DatadogEncoder
from forwarder.read.codecs import decompress
from forwarder.settings import Settings
from forwarder.times import field_time
from tests.support import read_head, split_object

OBJECT = S3Object("trail-bucket", "AWSLogs/123456789012/CloudTrail/us-east-1/2024/12/04/file.json.gz", etag="e1")
SOURCE = Source(name="cloudtrail", service="cloudtrail", host="trail-bucket")
INVOKER = Invoker.from_arn("arn:aws:lambda:us-east-1:123456789012:function:forwarder")
SETTINGS = Settings.from_env({"DD_API_KEY": "k", "DD_TAGS": "env:test,team:sec", "AWS_REGION": "us-east-1"})
HOSTILE = [
    '"',
    '\\"',
    "\\",
    "},{",
    '},{"eventVersion":"1.08"',
    '"eventVersion"',
    '{"Records":[',
    "]}",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\\u0041",
    "\\u007d,\\u007b",
    "é",
    "日本",
    "🚀",
    "\u2028",
    "\x00",
    "\n",
    "\t",
]


def fast_entries(document: bytes, chunk_bytes: int = 1 << 16) -> list[dict[str, Any]]:
    """decompress → split_object → Enricher.run_entries or .entry, the way the handler runs them, without a network."""
    compressed = gzip.compress(document)
    chunks = [compressed[start : start + chunk_bytes] for start in range(0, len(compressed), chunk_bytes)]
    form, events = split_object(decompress(chunks, OBJECT.origin), OBJECT.origin)
    assert form is Format.CLOUDTRAIL
    enricher = DatadogEncoder(SOURCE, OBJECT, INVOKER, SETTINGS)
    entries = []
    for item in events:
        entries.extend(enricher.entries(item))
    return [orjson.loads(entry.body) for entry in entries]


def static_metadata() -> dict[str, Any]:
    """The metadata every entry of the object carries: the entry of an empty record, less its own parts."""
    enricher = DatadogEncoder(SOURCE, OBJECT, INVOKER, SETTINGS)
    entry: dict[str, Any] = orjson.loads(enricher.entry(RawEvent(position=0, record=b"{}", head=read_head(b"{}"))).body)
    return {key: value for key, value in entry.items() if key not in {"timestamp", "forwarder"}}


def reference_entries(document: bytes, actual: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The simple path: the whole document parsed at once, each entry built as a dict.

    A record without an `eventID` gets a derived id (the enrich stage's business, tested there): it
    is taken from the actual entry, after checking it is there.
    """
    metadata = static_metadata()
    expected = []
    for index, record in enumerate(orjson.loads(document)["Records"]):
        entry = own_labels(metadata, record)
        timestamp = field_time(record, SOURCE.time_fields)
        if timestamp is not None:
            entry["timestamp"] = timestamp
        event_id = record.get("eventID")
        if not (isinstance(event_id, str) and event_id):
            event_id = actual[index]["forwarder"]["id"] if index < len(actual) else None
            assert isinstance(event_id, str) and event_id
        entry["forwarder"] = {"id": event_id}
        entry.update((key, value) for key, value in record.items() if key not in RESERVED)
        moved = {key: value for key, value in record.items() if key in RESERVED}
        if moved:
            entry["original_fields"] = moved
        expected.append(entry)
    return expected


def own_labels(metadata: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The container's metadata with the record's own account, region and instance host in place."""
    labelled = dict(metadata)
    tags = metadata["ddtags"].split(",")
    for name, field, form in (
        ("aws_account", "recipientAccountId", r"\d{12}"),
        ("region", "awsRegion", r"[a-z]{2}(-[a-z]+)+-\d{1,2}"),
    ):
        value = record.get(field)
        if isinstance(value, str) and re.fullmatch(form, value):
            tags = [f"{name}:{value}" if tag.startswith(f"{name}:") else tag for tag in tags]
    labelled["ddtags"] = ",".join(tags)
    identity = record.get("userIdentity")
    arn = identity.get("arn") if isinstance(identity, dict) else None
    session = (
        re.fullmatch(r"arn:aws[a-z-]*:sts::.*?:assumed-role/.*?/(i-([0-9a-f]{8}|[0-9a-f]{17}))", arn)
        if isinstance(arn, str)
        else None
    )
    if session:
        labelled["host"] = session[1]
    return labelled


def assert_same(document: bytes, chunk_bytes: int = 1 << 16) -> None:
    actual = fast_entries(document, chunk_bytes)
    expected = reference_entries(document, actual)
    assert len(actual) == len(expected)
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert got == want, f"record {index} differs"


DOCUMENTS = cloudtrail_documents()


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_real_cloudtrail_fixture_matches_the_simple_path(name: str) -> None:
    assert_same(DOCUMENTS[name])


@pytest.mark.parametrize("chunk_bytes", [1, 7, 4096])
def test_tiny_compressed_chunks_change_nothing(chunk_bytes: int) -> None:
    document = b'{"Records":[' + b",".join(orjson.dumps(record) for record in _fixture_records()[:40]) + b"]}"
    assert_same(document, chunk_bytes)


def test_bench_generator_records_match_the_simple_path() -> None:
    """The bench's own generated data (hostile strings in one record of 40) is forwarded faithfully."""
    records = [body for body, _ in zip(cloudtrail_records(400_000, seed=7), range(300), strict=False)]
    assert_same(b'{"Records":[' + b",".join(records) + b"]}")


def _fixture_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for document in DOCUMENTS.values():
        records.extend(orjson.loads(document)["Records"])
    return records


hostile_text = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=6).map("".join),
    st.tuples(st.text(max_size=4), st.sampled_from(HOSTILE), st.text(max_size=4)).map("".join),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
field_names = st.one_of(hostile_text, st.sampled_from(sorted(RESERVED)), st.sampled_from(["eventVersion", "eventID"]))


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {"eventVersion": "1.08"}
    record.update(draw(st.dictionaries(field_names, json_values, max_size=6)))
    if draw(st.booleans()):
        second = draw(st.integers(0, 59))
        record["eventTime"] = f"2024-12-04T12:00:{second:02d}Z"
    if draw(st.integers(0, 9)) > 0:
        record["eventID"] = draw(st.uuids()).hex
    return record


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """`{"Records": [...]}` minified as CloudTrail writes it, or with whitespace and `\\u` escapes."""
    items = draw(st.lists(records(), max_size=12))
    if draw(st.booleans()):
        return b'{"Records":[' + b",".join(orjson.dumps(item) for item in items) + b"]}"
    indent = draw(st.sampled_from([None, 1, 2]))
    separator = draw(st.sampled_from([",", ", ", ",\n", " ,\r\n  "]))
    body = separator.join(json.dumps(item, indent=indent, ensure_ascii=draw(st.booleans())) for item in items)
    return ('{ "Records" : [ ' + body + " ] }").encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents(), chunk_bytes=st.sampled_from([3, 64, 1 << 16]))
@example(document=b'{"Records":[{"eventVersion":"1.08","timestamp":1}]}', chunk_bytes=3)
def test_hostile_generated_documents_match_the_simple_path(document: bytes, chunk_bytes: int) -> None:
    assert_same(document, chunk_bytes)


@st.composite
def damaged_records(draw: st.DrawFn) -> bytes:
    """A generated record's JSON with one byte replaced, removed or added: mostly invalid JSON."""
    text = orjson.dumps(draw(records()))
    at = draw(st.integers(0, len(text)))
    byte = bytes([draw(st.sampled_from(b'{}[]",:\\ e0-.tfn\xff\xc3\x80'))])
    how = draw(st.sampled_from(["replace", "remove", "add"]))
    if how == "add":
        return text[:at] + byte + text[at:]
    return text[:at] + (byte if how == "replace" else b"") + text[at + 1 :]


def full_parse(record: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(record)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def assert_judged_as_a_full_parse_judges(record: bytes) -> None:
    """`read_head` refuses exactly what orjson refuses, and reads the head orjson would."""
    parsed = full_parse(record)
    try:
        head = read_head(record)
    except InvalidRecord:
        assert parsed is None
        return
    assert parsed is not None
    assert (head.eventID, head.eventTime) == (parsed.get("eventID"), parsed.get("eventTime"))
    assert head.flagged() == (not parsed.keys().isdisjoint(RESERVED))


@settings(max_examples=600, deadline=None)
@given(record=st.one_of(damaged_records(), records().map(orjson.dumps)))
def test_the_record_check_accepts_exactly_what_a_full_parse_does(record: bytes) -> None:
    """`read_head` skips most of a record unbuilt; it must still accept and reject as orjson does."""
    assert_judged_as_a_full_parse_judges(record)


@pytest.mark.parametrize(
    "record",
    [
        b'{"eventID":"e","size":1e400}',
        b'{"eventID":"e","size":-1E+400}',
        b'{"eventID":"e","size":1' + b"0" * 400 + b"}",
        b'{"eventID":"e","size":123456789012345678901234567890}',
        b'{"eventID":"e","deep":' + b"[" * 1022 + b"]" * 1022 + b"}",
        b'{"eventID":"e","deep":' + b"[" * 1023 + b"]" * 1023 + b"}",
        b'{"eventID":"e","deep":' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"eventID":"e","host":"h","deep":' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"eventID":"e","s":"\\ud800"}',
        b'{"eventID":"e","s":"\xed\xa0\x80"}',
        b'{"eventID":"e","s":"caf\xc3\xa9"}',
        b'{"eventID":"e","big":"' + b"x" * (2 << 20) + b'"}',
        b'\xef\xbb\xbf{"eventID":"e"}',
        b"[1]",
        b'"x"',
        b"null",
    ],
)
def test_numbers_nesting_and_encodings_are_judged_as_a_full_parse_judges_them(record: bytes) -> None:
    """Where msgspec alone is wider than orjson (numbers past the double range, nesting beyond 1024
    on Python 3.13) or narrower (its recursion limit on 3.11), `read_head` still agrees with orjson:
    the intake refuses a whole batch over one entry a full parse refuses."""
    assert_judged_as_a_full_parse_judges(record)
    assert read_head(b"{}") is not None, "the validator is still usable after the record"


def test_a_record_over_any_entry_limit_is_checked_without_building_its_values() -> None:
    """Its bytes are never sent as they are (it is truncated), so a number only a full parse refuses
    does not refuse it: only the small fields the truncated entry keeps are parsed."""
    record = b'{"eventID":"e","eventName":"Put","big":"' + b"x" * (2 << 20) + b'","n":1e400}'
    head = read_head(record)
    entry = DatadogEncoder(SOURCE, OBJECT, INVOKER, SETTINGS).entry(RawEvent.structured(0, record, head))
    body = orjson.loads(entry.body)
    assert entry.truncated and body["eventName"] == "Put" and "n" not in body and body["forwarder"]["id"] == "e"
