"""The generic intake's settings, framing, auth headers and Splunk HEC envelope, without a server."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forwarder.errors import ConfigError
from forwarder.model import Entry, Invoker, RawEvent, S3Object, Source
from forwarder.outputs import generic
from forwarder.outputs.batch import batches, json_array, ndjson
from forwarder.settings import IntakeAuth, IntakeFormat, OutputFormat, Settings
from tests.support import read_head

URL = "https://logs.example.com/ingest"


def settings(**env: str) -> Settings:
    return Settings.from_env({"DD_URL": URL, "FORWARDER_INTAKE_FORMAT": "ndjson", **env})


def test_the_defaults_are_the_datadog_output_to_the_datadog_intake() -> None:
    found = Settings.from_env({"DD_API_KEY": "k"})
    assert (found.output_format, found.intake_format) == (OutputFormat.DATADOG, IntakeFormat.DATADOG)
    assert found.intake_url == "https://http-intake.logs.datadoghq.com/api/v2/logs"


@pytest.mark.parametrize(
    ("name", "value"),
    [("FORWARDER_OUTPUT_FORMAT", "parquet"), ("FORWARDER_INTAKE_FORMAT", "xml"), ("FORWARDER_INTAKE_AUTH", "digest")],
)
def test_an_unknown_choice_is_a_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be one of"):
        settings(**{name: value})


def test_a_generic_intake_needs_a_full_url() -> None:
    with pytest.raises(ConfigError, match="needs DD_URL to be a full"):
        Settings.from_env({"DD_URL": "logs.example.com", "FORWARDER_INTAKE_FORMAT": "json"})
    assert settings().intake_url == URL


def test_headers_are_name_value_pairs_and_their_values_never_shown() -> None:
    found = settings(FORWARDER_INTAKE_HEADERS="X-Tenant: blue;\nX-Token: t0ken-value ; X-Empty:")
    assert found.intake_headers == (("X-Tenant", "blue"), ("X-Token", "t0ken-value"), ("X-Empty", ""))
    assert "t0ken-value" not in repr(found)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("no-colon-s3cr3t", "must be `Name: value` pairs"),
        ("Bad Name: s3cr3t", "must be `Name: value` pairs"),
        ("Content-Type: s3cr3t", "sets Content-Type itself"),
        ("X-Token: s3cr3t\x00", "the value of X-Token has characters"),
    ],
)
def test_a_bad_header_is_an_error_that_does_not_quote_its_value(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        settings(FORWARDER_INTAKE_HEADERS=raw)
    assert "s3cr3t" not in str(error.value)


def test_a_generic_intake_without_auth_needs_no_key_but_asking_for_auth_does() -> None:
    assert settings().resolve_intake_secret() == ""
    assert settings().intake_auth_kind is IntakeAuth.NONE
    with pytest.raises(ConfigError, match="no API key"):
        settings(FORWARDER_INTAKE_AUTH="bearer").resolve_intake_secret()
    with pytest.raises(ConfigError, match="no API key"):
        Settings.from_env({}).resolve_intake_secret()


@pytest.mark.parametrize(
    ("env", "header", "value"),
    [
        ({"FORWARDER_INTAKE_FORMAT": "json"}, "Authorization", "Bearer s3cr3t"),
        ({"FORWARDER_INTAKE_FORMAT": "splunk-hec"}, "Authorization", "Splunk s3cr3t"),
        ({"FORWARDER_INTAKE_AUTH": "header", "FORWARDER_INTAKE_AUTH_HEADER": "X-Api-Key"}, "X-Api-Key", "s3cr3t"),
    ],
)
def test_the_secret_goes_in_the_header_the_auth_setting_names(env: dict[str, str], header: str, value: str) -> None:
    with generic.intake_transport(settings(DD_API_KEY="s3cr3t", **env), "s3cr3t") as transport:
        assert transport._session.headers[header] == value
        assert "s3cr3t" not in repr(transport)


def test_basic_auth_needs_user_and_password() -> None:
    found = settings(DD_API_KEY="s3cr3t", FORWARDER_INTAKE_AUTH="basic")
    with pytest.raises(ConfigError, match="user:password") as error:
        generic.intake_transport(found, "s3cr3t")
    assert "s3cr3t" not in str(error.value)
    with generic.intake_transport(found, "me:s3cr3t") as transport:
        assert transport._session.headers["Authorization"] == "Basic bWU6czNjcjN0"


@pytest.mark.parametrize(
    ("status", "text", "accepted"),
    [
        (200, '{"text":"Success","code":0}', True),
        (200, '{"text":"Invalid token","code":4}', False),
        (200, "<html>login</html>", False),
        (202, '{"text":"Success","code":0}', False),
    ],
)
def test_hec_success_is_its_own_answer(status: int, text: str, accepted: bool) -> None:
    assert generic.hec_accepts(status, {}, text) is accepted


def test_ndjson_is_one_line_per_entry_even_for_a_pretty_printed_record() -> None:
    entries = [Entry(b'{\n  "a": "x\\ny"\n}'), Entry(b'{"b":2}')]
    body = ndjson(entries)
    assert body == b'{   "a": "x\\ny" }\n{"b":2}\n'
    assert [orjson.loads(line) for line in body.splitlines()] == [{"a": "x\ny"}, {"b": 2}]


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=60), st.integers(min_value=1, max_value=9))
def test_batch_sizes_bound_both_framings(lengths: list[int], max_entries: int) -> None:
    entries = [Entry(b'"' + b"x" * length + b'"') for length in lengths]
    for batch in batches(entries, max_entries, 1024):
        assert len(json_array(batch.entries)) == batch.size <= 1024
        assert len(ndjson(batch.entries)) == batch.size - 1


def test_hec_wraps_each_entry_with_its_time_and_labels() -> None:
    found = settings(FORWARDER_INTAKE_FORMAT="splunk-hec")
    source = Source("cloudtrail", "cloudtrail", "trail-bucket")
    make = generic.hec_encoders(generic._encoders(found)[0], found)
    coder = make(source, S3Object("trail-bucket", "k"), Invoker())
    record = orjson.dumps({"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:00.250Z", "eventID": "e"})
    (entry,) = coder.entries(RawEvent.structured(0, record, read_head(record)))
    envelope = orjson.loads(entry.body)
    assert envelope["time"] == 1733313600.25
    assert (envelope["host"], envelope["source"], envelope["sourcetype"]) == ("trail-bucket", "cloudtrail", "_json")
    assert envelope["event"]["eventVersion"] == "1.08" and envelope["event"]["ddsource"] == "cloudtrail"


def test_hec_leaves_room_for_its_envelope_within_the_entry_limit() -> None:
    found = settings(FORWARDER_INTAKE_FORMAT="splunk-hec", FORWARDER_ENTRY_MAX_BYTES="4096")
    make = generic.hec_encoders(generic._encoders(found)[0], found)
    coder = make(Source("s3", "s3", "b" * 200), S3Object("b" * 200, "k"), Invoker())
    (entry,) = coder.entries(RawEvent.line(1, "y" * 10_000, 10_001))
    assert entry.truncated and len(entry.body) <= 4096


class _Deep:
    """An encoder whose entry is nested deeper than orjson reads back."""

    watched: frozenset[str] = frozenset()
    unmappable = 0

    def entries(self, block: object) -> list[Entry]:
        return [Entry(b'{"a":' + b"[" * 1100 + b"]" * 1100 + b"}")]


def test_hec_sends_an_entry_it_cannot_read_back_without_a_time() -> None:
    (entry,) = generic.HecEncoder(_Deep(), b'"host":"h"').entries(RawEvent(0))
    assert entry.body.startswith(b'{"host":"h","event":{"a":[[[')


TRAIL_TIME = 1733313600250
TRAIL_RECORDS = (
    {"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:00.250Z", "eventID": "e", "eventName": "ListBuckets"},
    {"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:00.250Z", "eventID": "f", "service": "reserved"},
)
"""A record spliced as read, and one with a reserved name (re-serialised, its timestamp not last)."""


@pytest.mark.parametrize("output_format", ["datadog", "ocsf"])
@pytest.mark.parametrize("intake_format", ["datadog", "json", "ndjson", "splunk-hec"])
def test_every_output_reads_back_the_time_its_entries_carry(output_format: str, intake_format: str) -> None:
    """What the lag is measured from: each output's `entry_time` on its own entries."""
    env = {"FORWARDER_OUTPUT_FORMAT": output_format, "FORWARDER_INTAKE_FORMAT": intake_format, "DD_API_KEY": "k"}
    with generic.output(settings(**env), "k") as out:
        coder = out.encoder(Source("cloudtrail", "cloudtrail", "b"), S3Object("b", "k"), Invoker())
        for record in TRAIL_RECORDS:
            body = orjson.dumps(record)
            (entry,) = coder.entries(RawEvent.structured(0, body, read_head(body)))
            assert out.entry_time(entry.body) == TRAIL_TIME, entry.body


def test_hec_counts_the_unmappable_events_of_the_ocsf_encoder_it_wraps() -> None:
    found = settings(FORWARDER_INTAKE_FORMAT="splunk-hec", FORWARDER_OUTPUT_FORMAT="ocsf")
    coder = generic.hec_encoders(generic._encoders(found)[0], found)(
        Source("cloudtrail", "cloudtrail", "b"), S3Object("b", "k"), Invoker()
    )
    insight = orjson.dumps({"eventVersion": "1.08", "eventTime": "2024-12-04T12:00:00Z", "eventCategory": "Insight"})
    (entry,) = coder.entries(RawEvent.structured(0, insight, read_head(insight)))
    assert orjson.loads(entry.body)["event"]["unmapped"]["forwarder.ocsf"] == "unmappable"
    assert coder.unmappable == 1
