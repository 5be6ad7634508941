import hashlib
import json
import random
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder import times
from forwarder.formats.logbatch import MessageRun
from forwarder.formats.run import RecordRun
from forwarder.model import Invoker, LogBatch, LogEvent, RawEvent, S3Object, Source
from forwarder.outputs import datadog
from forwarder.outputs.batch import json_array
from forwarder.outputs.datadog import RESERVED, DatadogEncoder
from forwarder.settings import Settings
from forwarder.times import AUDIT_TIME_FIELDS
from tests.support import read_head, split_object

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:Forwarder"
SETTINGS = Settings(tags=("env:prod",), function_name="Forwarder")
OBJECT = S3Object("trail-bucket", "AWSLogs/123456789012/CloudTrail/eu-west-1/2024/12/04/f.json.gz")


def enricher(source: Source | None = None, settings: Settings = SETTINGS, container=OBJECT) -> DatadogEncoder:
    source = source or Source("cloudtrail", "cloudtrail", "trail-bucket")
    return DatadogEncoder(source, container, Invoker.from_arn(ARN), settings)


def named_source(name: str, host: str) -> Source:
    """The source its log group rule gives: audit events' own time is their stage's."""
    return Source(name, name, host, (), AUDIT_TIME_FIELDS if name == "kubernetes.audit" else times.TIME_FIELDS)


def record_event(record: dict, position: int = 0) -> RawEvent:
    raw = orjson.dumps(record)
    return RawEvent(position=position, record=raw, head=read_head(raw))


def test_cloudtrail_record_fields_sit_beside_the_metadata() -> None:
    record = {"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:00Z", "eventName": "GetObject"}
    entry = enricher().entry(record_event(record))
    body = orjson.loads(entry.body)
    assert not entry.truncated
    assert {key: body[key] for key in record} == record
    assert body["ddsource"] == "cloudtrail" and body["service"] == "cloudtrail"
    assert body["host"] == "trail-bucket" and body["ddsourcecategory"] == "aws"
    assert body["timestamp"] == 1733313600000
    assert body["aws"] == {
        "s3": {"bucket": "trail-bucket", "key": OBJECT.key},
        "invoked_function_arn": ARN,
    }
    assert body["ddtags"].split(",") == [
        "env:prod",
        "forwardername:forwarder",
        "forwarder_version:0.1.0",
        "aws_account:123456789012",
        "region:eu-west-1",
    ]


def test_pretty_printed_record_bytes_are_spliced_not_reserialised() -> None:
    raw = b'{\n  "eventName": "A",\n  "nested": {"x": [1, 2]}\n}'
    entry = enricher().entry(RawEvent(position=0, record=raw, head=read_head(raw)))
    assert entry.body.endswith(b'\n  "eventName": "A",\n  "nested": {"x": [1, 2]}\n}')
    assert orjson.loads(entry.body)["nested"] == {"x": [1, 2]}


@pytest.mark.parametrize("padding", ["", " \n"])
def test_record_bytes_end_the_entry_before_its_timestamp(padding: str) -> None:
    raw = (padding + '{"eventTime":"2024-12-04T12:00:00Z","eventName":"A"}' + padding).encode()
    body = enricher().entry(RawEvent(position=0, record=raw, head=read_head(raw))).body
    assert body.endswith(b'"eventName":"A","timestamp":1733313600000}')
    assert orjson.loads(body)["timestamp"] == 1733313600000


RUN_RECORDS = [
    {"eventVersion": "1.08", "eventID": "a", "eventTime": "2024-12-04T12:00:00Z"},
    {"eventVersion": "1.08", "eventID": "b", "eventTime": "2024-12-04T12:00:00Z"},  # its close is cached
    {"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:01Z"},  # no eventID: the hashed id
    {"eventVersion": "1.08", "eventID": "", "eventTime": "2024-12-04T12:00:01Z"},
    {
        "eventVersion": "1.08",
        "eventID": "c",
        "eventTime": "1970-01-01T00:00:00Z",
        "stageTimestamp": "2024-12-04T12:00:02Z",
    },
    {"eventVersion": "1.08", "eventID": "d", "eventTime": ["not", "a", "time"]},
    {"eventVersion": "1.08", "eventID": "e", "eventTime": "yesterday"},
    {"eventVersion": "1.08", "eventID": "g", "eventTime": "2024-12-04T12:00:00Z", "big": "x" * 3000},
    {"eventVersion": "1.08", "eventID": 7, "eventTime": "2024-12-04T12:00:00.5+01:00"},
]


def test_a_run_gives_the_entries_its_records_give_one_by_one() -> None:
    doc = orjson.dumps({"Records": [{"eventVersion": "1.08"}, *RUN_RECORDS, {"eventVersion": "1.08"}]})
    runs = [item for item in split_object([doc], OBJECT.origin)[1] if isinstance(item, RecordRun)]
    assert [len(run) for run in runs] == [len(RUN_RECORDS)]
    settings = Settings(function_name="Forwarder", entry_max_bytes=2048)
    one_by_one = [enricher(settings=settings).entry(event) for event in runs[0].events()]
    assert enricher(settings=settings).entries(runs[0]) == one_by_one
    assert [entry.truncated for entry in one_by_one].count(True) == 1


def test_the_kept_closes_follow_a_long_file_past_their_limit() -> None:
    """A file spanning more seconds than the closes kept still finds its recent times kept."""
    seconds = datadog.CLOSES_KEPT + 10
    times = [datetime.fromtimestamp(1733313600 + n, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for n in range(seconds)]
    one = enricher()
    for when in times:
        one.entry(record_event({"eventVersion": "1.08", "eventID": "x", "eventTime": when}))
    assert len(one._event_time_closes) <= datadog.CLOSES_KEPT
    assert one._event_time_closes[times[-1]] == b',"timestamp":%d}' % ((1733313600 + seconds - 1) * 1000)


AUDIT_STAMP = '"stageTimestamp":"2018-10-25T13:58:26.867116Z"'
RUN_MESSAGES = [
    LogEvent("1", 5, '{"kind":"Event",' + AUDIT_STAMP + "}"),
    LogEvent("", 5, '{"kind":"Event",' + AUDIT_STAMP + "}"),  # no id: the hashed id
    LogEvent("2", 5, '{"kind":"Event","requestReceivedTimestamp":"2018-10-25T13:58:25Z"}'),  # full parse
    LogEvent("3", 5, '{"kind":"Event","stageTimestamp":"1970-01-01T00:00:00Z"}'),  # epoch zero: CloudWatch's
    LogEvent("4", 0, "plain text"),
    LogEvent("5", 7, '{"eventTime":"2018-10-25T13:58:27Z"}'),
    LogEvent("6", 5, '{"kind":"Event","pad":"' + "x" * 3000 + '",' + AUDIT_STAMP + "}"),  # truncated
    LogEvent("7", 5, '{"note":"caf\u00e9 \\"q\\" \\\\ \\n",' + AUDIT_STAMP + "}"),
    LogEvent("8", 5, 'caf\u00e9 "q" \\ \n ' + AUDIT_STAMP),
]


@pytest.mark.parametrize("ddsource", ["kubernetes.audit", "lambda"])
def test_a_message_run_gives_the_entries_its_events_give_one_by_one(ddsource: str) -> None:
    batch = LogBatch("123456789012", "/aws/eks/prod/cluster", "kube-apiserver-audit-1", (), tuple(RUN_MESSAGES))
    source = named_source(ddsource, batch.log_group)
    settings = Settings(function_name="Forwarder", entry_max_bytes=2048)
    run = MessageRun(10, batch.log_events)
    one_by_one = [enricher(source, settings, batch).entry(event) for event in run.events()]
    assert enricher(source, settings, batch).entries(run) == one_by_one
    assert [entry.truncated for entry in one_by_one].count(True) == 1
    assert [event.position for event in run.events()] == list(range(10, 10 + len(RUN_MESSAGES)))


DEEP = "[" * 300 + "]" * 300  # orjson reads up to 1024 levels but writes only 255


def test_a_record_too_deep_to_write_back_goes_as_text_when_a_field_must_move() -> None:
    raw = ('{"eventVersion":"1","eventTime":"2024-12-04T12:00:00Z","service":"x","d":' + DEEP + "}").encode()
    body = orjson.loads(enricher().entry(RawEvent(position=0, record=raw, head=read_head(raw))).body)
    assert body["message"] == raw.decode()
    assert body["service"] == "cloudtrail" and body["host"] == "trail-bucket"
    assert body["timestamp"] == 1733313600000


def test_a_record_too_deep_to_write_back_is_still_truncated() -> None:
    raw = ('{"eventVersion":"1","eventName":"Get","pad":"' + "x" * 3000 + '","d":' + DEEP + "}").encode()
    settings = Settings(function_name="Forwarder", entry_max_bytes=2048)
    entry = enricher(settings=settings).entry(RawEvent(position=0, record=raw, head=read_head(raw)))
    body = orjson.loads(entry.body)
    assert entry.truncated and len(entry.body) <= 2048
    assert body["eventName"] == "Get" and "d" not in body and body["message"].startswith(raw.decode()[:100])


def test_empty_record_gives_metadata_only() -> None:
    body = orjson.loads(enricher().entry(record_event({})).body)
    assert set(body) == {"ddsource", "ddsourcecategory", "service", "host", "ddtags", "aws", "forwarder"}


def test_clashing_event_fields_move_to_original_fields() -> None:
    record = {"host": "10.0.0.1", "aws": {"x": 1}, "original_fields": "y", "eventName": "Put"}
    body = orjson.loads(enricher().entry(record_event(record)).body)
    assert body["host"] == "trail-bucket" and body["eventName"] == "Put"
    assert body["original_fields"] == {"host": "10.0.0.1", "aws": {"x": 1}, "original_fields": "y"}
    assert body["forwarder"] == {
        "id": orjson.loads(enricher().entry(record_event({"eventName": "x"})).body)["forwarder"]["id"]
    }


def test_cloudwatch_message_kept_byte_for_byte_with_its_timestamp() -> None:
    batch = LogBatch("123456789012", "/aws/eks/prod/cluster", "kube-apiserver-audit-1", (), ())
    source = Source(
        "kubernetes.audit", "kubernetes.audit", batch.log_group, ("kube_cluster_name:prod",), AUDIT_TIME_FIELDS
    )
    message = '{"kind":"Event","stageTimestamp":"2018-10-25T13:58:26.867116Z","note":"caf\\u00e9 \\"q\\""}'
    entry = enricher(source, container=batch).entry(RawEvent(0, message=message, timestamp_ms=5))
    body = orjson.loads(entry.body)
    assert body["message"] == message
    assert body["timestamp"] == 1540475906867
    assert body["aws"]["awslogs"] == {"logGroup": batch.log_group, "logStream": batch.log_stream, "owner": batch.owner}
    assert body["ddtags"].endswith(",kube_cluster_name:prod")


def test_plain_text_uses_the_container_timestamp() -> None:
    body = orjson.loads(enricher().entry(RawEvent(0, message="START RequestId: x", timestamp_ms=1234)).body)
    assert body["timestamp"] == 1234 and body["message"] == "START RequestId: x"


@pytest.mark.parametrize("limit", [1024, 4096, 100_000])
def test_oversize_record_is_truncated_with_marker_and_small_fields_kept(limit: int) -> None:
    record = {"eventName": "CreateTrustAnchor", "eventID": "e-1", "requestParameters": {"pem": 'x"é' * 200_000}}
    raw = record_event(record)
    entry = enricher(settings=Settings(entry_max_bytes=limit)).entry(raw)
    body = orjson.loads(entry.body)
    assert entry.truncated and len(entry.body) <= limit
    assert body["forwarder"]["truncated"] is True
    assert body["forwarder"]["original_bytes"] > len(raw.record)
    assert body["eventName"] == "CreateTrustAnchor" and "requestParameters" not in body
    assert raw.record.decode().startswith(body["message"])
    assert body["ddsource"] == "cloudtrail"


def test_oversize_message_is_truncated() -> None:
    entry = enricher(settings=Settings(entry_max_bytes=2048)).entry(RawEvent(7, message="a" * 10_000))
    body = orjson.loads(entry.body)
    assert entry.truncated and len(entry.body) <= 2048
    assert body["message"] == "a" * len(body["message"]) and len(body["message"]) > 1000


def test_reserved_names_cover_every_metadata_key() -> None:
    body = orjson.loads(enricher().entry(RawEvent(0, message="m", timestamp_ms=1)).body)
    assert set(body) <= RESERVED


def test_invoker_without_arn_has_no_account_tag() -> None:
    invoker = Invoker.from_arn("", "us-east-1")
    assert invoker.account == "" and invoker.region == "us-east-1"


def test_event_ids_are_deterministic_and_prefer_the_events_own() -> None:
    with_id = enricher().entry(record_event({"eventID": "e-123", "eventName": "A"}, position=4))
    assert orjson.loads(with_id.body)["forwarder"] == {"id": "e-123"}
    first = orjson.loads(enricher().entry(record_event({"eventName": "A"}, position=4)).body)["forwarder"]["id"]
    again = orjson.loads(enricher().entry(record_event({"eventName": "A"}, position=4)).body)["forwarder"]["id"]
    other = orjson.loads(enricher().entry(record_event({"eventName": "A"}, position=5)).body)["forwarder"]["id"]
    assert first == again != other and len(first) == 32
    cloudwatch = enricher().entry(RawEvent(0, message="m", event_id="3600000000000000000000000000"))
    assert orjson.loads(cloudwatch.body)["forwarder"]["id"] == "3600000000000000000000000000"


# The time of a JSON message: a shortcut for a top-level "stageTimestamp" (EKS audit) must give
# exactly what parsing the whole message gives, whatever the message holds.

AUDIT_BATCH = LogBatch("123456789012", "/aws/eks/prod/cluster", "kube-apiserver-audit-1", (), ())
AUDIT_SOURCE = Source("kubernetes.audit", "kubernetes.audit", AUDIT_BATCH.log_group, (), AUDIT_TIME_FIELDS)
TIME_KEYS = ["eventTime", "stageTimestamp", "requestReceivedTimestamp", "timestamp"]
TIMES = [
    "2024-12-04T12:00:00.123456Z",
    "2024-12-04T12:00:01.5Z",
    "2024-12-04T12:00:02Z",
    "not a time",
    "1970-01-01T00:00:00.000Z",
]


def full_parse_time(message: str) -> int | None:
    """The reference: parse everything, then the first audit time field that is a time."""
    try:
        fields = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    return times.field_time(fields, AUDIT_TIME_FIELDS) if isinstance(fields, dict) else None


def escaped(text: str, rng: random.Random) -> str:
    """The same JSON with a letter of every time key `\\u`-escaped: the same value once parsed."""
    for key in ("eventTime", "stageTimestamp"):
        at = rng.randrange(len(key))
        text = text.replace(key, f"{key[:at]}\\u{ord(key[at]):04x}{key[at + 1 :]}")
    return text


json_leaf = st.one_of(
    st.none(),
    st.integers(-(2**53), 2**53),
    st.sampled_from(TIMES),
    st.sampled_from(['"stageTimestamp":"', '\\"', "}", "{"]),
    st.text(),
)
json_keys = st.one_of(st.sampled_from([*TIME_KEYS, 'x"stageTimestamp', "a"]), st.text(max_size=5))
json_trees = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_keys, inner, max_size=4), max_leaves=10
)


@settings(max_examples=400, deadline=None)
@given(
    fields=st.dictionaries(json_keys, json_trees, max_size=6),
    stage=st.one_of(st.none(), st.sampled_from(TIMES)),
    at_end=st.booleans(),
    style=st.sampled_from(["orjson", "ascii", "spaced", "escaped"]),
    seed=st.integers(0, 1000),
)
def test_stage_timestamp_shortcut_matches_a_full_parse(
    fields: dict, stage: str | None, at_end: bool, style: str, seed: int
) -> None:
    message = dict(fields)
    if stage is not None:
        message.pop("stageTimestamp", None)
        message = {**message, "stageTimestamp": stage} if at_end else {"stageTimestamp": stage, **message}
    if style == "orjson":
        text = orjson.dumps(message).decode()
    elif style == "spaced":
        text = json.dumps(message, indent=1, ensure_ascii=False)
    else:
        text = json.dumps(message)
    if style == "escaped":
        text = escaped(text, random.Random(seed))
    assert enricher(AUDIT_SOURCE, container=AUDIT_BATCH)._message_time(text) == full_parse_time(text)


@settings(max_examples=300, deadline=None)
@given(
    trees=st.lists(st.dictionaries(json_keys, json_trees, max_size=5), max_size=8),
    plain=st.lists(st.text(max_size=30), max_size=4),
    ids=st.lists(st.sampled_from(["", "1", "3702"]) | st.text(max_size=4), min_size=12, max_size=12),
    timestamps=st.lists(st.sampled_from([0, 5, 1540475906867]), min_size=12, max_size=12),
    ddsource=st.sampled_from(["kubernetes.audit", "lambda", "cloudwatch"]),
    position=st.integers(0, 20_000),
)
def test_message_runs_match_their_events_one_by_one(
    trees: list[dict], plain: list[str], ids: list[str], timestamps: list[int], ddsource: str, position: int
) -> None:
    """Whatever the messages (JSON or not, with any times), ids and CloudWatch times, and with entries
    small enough that some are truncated, a run gives the entries `entry` gives."""
    messages = [orjson.dumps(tree).decode() for tree in trees] + plain
    events = tuple(LogEvent(ids[i % 12], timestamps[i % 12], text) for i, text in enumerate(messages))
    run = MessageRun(position, events)
    settings = Settings(function_name="Forwarder", entry_max_bytes=700)
    source = named_source(ddsource, AUDIT_BATCH.log_group)
    expected = [enricher(source, settings, AUDIT_BATCH).entry(event) for event in run.events()]
    assert enricher(source, settings, AUDIT_BATCH).entries(run) == expected


@pytest.mark.parametrize(
    "message",
    [
        '{"a":{"stageTimestamp":"2024-12-04T12:00:00.1Z"},"requestReceivedTimestamp":"2024-12-04T12:00:09Z"}',
        '{"stageTimestamp":"2024-12-04T12:00:00.1Z","a":{"stageTimestamp":"2024-12-04T12:00:05Z"}}',
        '{"x\\"stageTimestamp":"2024-12-04T12:00:00.1Z","timestamp":"2024-12-04T12:00:09Z"}',
        '{"eventTime":"2024-12-04T12:00:09Z","stageTimestamp":"2024-12-04T12:00:00.1Z"}',
        '{"stageTimestamp":"2024-12-04T12:00:00.1Z","even\\u0074Time":"2024-12-04T12:00:09Z"}',
        '{"even\\u0074Time":"2024-12-04T12:00:09Z","stageTimestamp":"2024-12-04T12:00:00.1Z"}',
        '{"stageTimestamp":"2024-12-04T12:00:00.1Z","stageTimestamp":"2024-12-04T12:00:03Z"}',
        '{"stageTimestamp":"2024-12-04T12:00:00.1Z","stage\\u0054imestamp":"2024-12-04T12:00:03Z"}',
        '{"stageTimestamp":"soon","requestReceivedTimestamp":"2024-12-04T12:00:09Z"}',
        '{"stageTimestamp":["2024-12-04T12:00:00Z"]}',
        '["stageTimestamp","2024-12-04T12:00:00Z"]',
    ],
)
def test_stage_timestamp_shortcut_on_hostile_messages(message: str) -> None:
    assert enricher(AUDIT_SOURCE, container=AUDIT_BATCH)._message_time(message) == full_parse_time(message)


def test_a_message_that_is_not_json_before_its_top_level_stage_timestamp_still_gets_it() -> None:
    """The one place the shortcut differs from a full parse, on purpose: it does not validate the head."""
    message = '{"user": oops, "stageTimestamp":"2024-12-04T12:00:00.250Z"}'
    assert full_parse_time(message) is None
    assert enricher(AUDIT_SOURCE, container=AUDIT_BATCH)._message_time(message) == 1733313600250


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    digits=st.sampled_from([0, 1, 3, 6]),
    suffix=st.sampled_from(["Z", "+00:00", ""]),
)
def test_iso_ms_shortcut_matches_datetime(moment: datetime, digits: int, suffix: str) -> None:
    text = (
        moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}"[: digits + 1] if digits else "") + suffix
    )
    parsed = datetime.fromisoformat(text)
    expected = int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
    assert times.iso_ms(text) == expected


def test_a_record_whose_id_fills_the_entry_does_not_empty_it_and_poison_its_batch() -> None:
    """A 1.1 MB `eventID` left no room for even the metadata and the marker: the entry came out as
    b"", the batch as `[...,,...]`, which the intake refuses whole."""
    huge_id = "i" * 1_100_000
    events = [record_event({"eventVersion": "1.08", "eventID": f"e-{n}", "eventName": "Get"}, n) for n in range(299)]
    events.insert(150, record_event({"eventVersion": "1.08", "eventID": huge_id, "eventName": "Put"}, 299))
    encoder = enricher()
    entries = [encoder.entry(event) for event in events]
    body = orjson.loads(json_array(entries))
    cut = body[150]
    assert len(body) == 300 and entries[150].truncated and 0 < len(entries[150].body) <= 1_000_000
    assert cut["forwarder"]["truncated"] is True and cut["forwarder"]["id_hashed"] is True
    assert cut["forwarder"]["id"] == hashlib.blake2b(huge_id.encode(), digest_size=16).hexdigest()
    assert cut["eventName"] == "Put" and cut["ddsource"] == "cloudtrail"


def test_metadata_too_large_for_the_limit_still_gives_a_valid_marked_entry() -> None:
    container = S3Object("trail-bucket", "k" * 1024)
    settings = Settings(tags=tuple(f"team:{n:04}" for n in range(200)), function_name="F", entry_max_bytes=1024)
    entry = enricher(settings=settings, container=container).entry(RawEvent(3, message="m" * 5000))
    body = orjson.loads(entry.body)
    assert entry.truncated and len(entry.body) <= 1024
    assert body["forwarder"]["truncated"] is True and body["ddsource"] == "cloudtrail"


SIZED = st.builds(
    lambda char, count: char * count,
    st.sampled_from(['"', "é", "\\", "x", "\n", "🎉"]),
    st.integers(0, 40_000),
)
"""Text of one repeated character (escaped, multi-byte or plain), up to well past any limit."""


@settings(max_examples=150, deadline=None)
@given(
    event_id=SIZED,
    message=SIZED,
    field_name=SIZED,
    field_value=SIZED,
    small_fields=st.integers(0, 40),
    key_length=st.integers(1, 1024),
    limit=st.sampled_from([1024, 1500, 4096, 20_000]),
    structured=st.booleans(),
)
def test_property_an_entry_is_never_empty_invalid_or_over_the_limit(
    event_id: str,
    message: str,
    field_name: str,
    field_value: str,
    small_fields: int,
    key_length: int,
    limit: int,
    structured: bool,
) -> None:
    encoder = enricher(settings=Settings(entry_max_bytes=limit), container=S3Object("b", "k" * key_length))
    if structured:
        record = {"eventID": event_id, field_name: field_value, "message": message}
        record.update({f"f{n}": "v" * 900 for n in range(small_fields)})
        raw = record_event(record)
    else:
        raw = RawEvent(0, message=message, event_id=event_id)
    entry = encoder.entry(raw)
    body = orjson.loads(entry.body)
    assert isinstance(body, dict) and 0 < len(entry.body) <= limit
    assert body["forwarder"].get("truncated", False) is entry.truncated
