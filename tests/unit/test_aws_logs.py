"""AWS logs' own times (`times.line_time`, `times.value_ms`), their header lines (`formats.delimited`)
and Kubernetes audit files recognised by content, on the real samples in tests/fixtures/aws."""

from __future__ import annotations

from pathlib import Path

import pytest

from forwarder.errors import ConfigError
from forwarder.formats import Format, delimited, each_event, read_lines, sniff
from forwarder.model import Checkpoint, Gap
from forwarder.settings import Settings
from forwarder.times import TimeFormat, iso_ms, line_time, value_ms

AWS = Path(__file__).parent.parent / "fixtures" / "aws"
ORIGIN = "s3://bucket/key"


def first_line(sample: str) -> str:
    return next(line for line in (AWS / sample).read_text().splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize(
    ("layout", "sample", "expected"),
    [
        (TimeFormat.ELB, "alb/otel_alb_al_valid_logs.log", "2018-07-02T22:23:00.186641Z"),
        (TimeFormat.ELB, "clb/otel_clb_al_valid_logs.log", "2015-05-13T23:39:43.945958Z"),
        (TimeFormat.ELB, "nlb/otel_nlb_al_valid_logs.log", "2020-04-01T08:51:42Z"),
        (TimeFormat.S3_ACCESS, "s3-access-logs/otel_valid_s3_access_log.log", "2019-02-06T00:00:38Z"),
        (
            TimeFormat.CLOUDFRONT,
            "cloudfront/written_E1A2B3C4EXAMPLE.2026-12-06-10.3f9a1c2d.log",
            "2026-12-06T10:15:01Z",
        ),
    ],
)
def test_a_text_line_has_the_time_its_layout_shows(layout: TimeFormat, sample: str, expected: str) -> None:
    assert line_time(layout)(first_line(sample)) == iso_ms(expected)


def test_a_default_flow_log_line_has_its_start_and_a_custom_one_none() -> None:
    read = line_time(TimeFormat.VPC_FLOW)
    default = (AWS / "vpc-flow-logs/otel_valid_vpc_flow_log_multi.log").read_text().splitlines()
    custom = (AWS / "vpc-flow-logs/otel_vpc_flow_custom_v5_ecs.log").read_text().splitlines()
    assert [read(line) for line in default] == [None, 1418530010000, 1418530010000]
    assert read(custom[1]) is None, "a custom layout's start is where its header says, never guessed"
    assert read("2 123456789010 eni-1 - - - - - - - - - - NODATA") is None


@pytest.mark.parametrize(
    "line",
    ["", "-", "garbage", "https", "s3 owner bucket [31/Foo/2019:00:00:38 +0000] x", "2019-13-45\t25:00:00\tX"],
)
@pytest.mark.parametrize("layout", list(TimeFormat))
def test_a_line_that_shows_no_time_has_none(layout: TimeFormat, line: str) -> None:
    assert line_time(layout)(line) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1748208718574, 1748208718574),  # WAF: epoch milliseconds
        ("1602627001", 1602627001000),  # Network Firewall: epoch seconds as text
        ("1668095539607", 1668095539607),  # Step Functions: epoch milliseconds as text
        ("2021-02-04T17:51:55Z", 1612461115000),
        (True, None),
        (-5, None),
        ("12", None),
        ("9" * 40, None),
        (1748208718574000, None),  # microseconds: no time before 2100 in either unit
        (None, None),
    ],
)
def test_json_times_may_be_epoch_numbers(value: object, expected: int | None) -> None:
    assert value_ms(value) == expected


def flow_blocks(data: bytes, start: Checkpoint | None = None) -> list[object]:
    return list(delimited.headed(read_lines([data], ORIGIN), TimeFormat.VPC_FLOW, start))


def test_a_flow_log_header_is_not_an_event_and_places_start() -> None:
    data = (AWS / "vpc-flow-logs/otel_vpc_flow_custom_v5_ecs.log").read_bytes()
    blocks = flow_blocks(data)
    events = list(each_event(blocks))  # type: ignore[arg-type]
    assert isinstance(blocks[0], Gap) and blocks[0].last().end_offset == data.index(b"\n") + 1
    assert [(event.position, event.timestamp_ms) for event in events] == [(2, 1700000000000)]


def test_a_flow_log_without_a_header_and_a_continuation_are_read_as_they_are() -> None:
    body = b"2 123456789010 eni-1 1.1.1.1 2.2.2.2 1 2 6 1 1 1418530010 1418530070 ACCEPT OK\n"
    for start in (None, Checkpoint(0, 0, 0, 1, "lines", "plain")):
        events = list(each_event(flow_blocks(body, start)))  # type: ignore[arg-type]
        assert [event.message for event in events] == [body.decode().strip()]
        assert events[0].timestamp_ms is None, "the encoder reads the default layout's time itself"


def test_cloudfront_directives_are_not_events() -> None:
    data = (AWS / "cloudfront/written_E1A2B3C4EXAMPLE.2026-12-06-10.3f9a1c2d.log").read_bytes()
    blocks = list(delimited.headed(read_lines([data], ORIGIN), TimeFormat.CLOUDFRONT, None))
    messages = [event.message or "" for event in each_event(blocks)]  # type: ignore[arg-type]
    assert len(messages) == 2 and not any(message.startswith("#") for message in messages)


@pytest.mark.parametrize(
    ("head", "form"),
    [
        (b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete"}\n{"kind":"Event"}\n',
         Format.K8S_AUDIT),
        (b'{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1"}', Format.K8S_AUDIT),
        (b'{"kind":"Event","apiVersion":"v1"}\n{"a":1}\n', Format.LINES),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}\n{"a":1}\n', Format.LINES),
        (b'["kind","Event"]\n[1]\n', Format.LINES),
        (b"plain text\n", Format.LINES),
    ],
)  # fmt: skip
def test_kubernetes_audit_files_are_recognised_by_their_first_line(head: bytes, form: Format) -> None:
    assert sniff(head, whole=True) is form


@pytest.mark.parametrize("pattern", ["^k8s/(?P<name>[^/]+)/", "^k8s/("])
def test_a_cluster_key_pattern_needs_a_cluster_group(pattern: str) -> None:
    with pytest.raises(ConfigError, match="FORWARDER_K8S_CLUSTER_KEY_PATTERN"):
        Settings.from_env({"FORWARDER_K8S_CLUSTER_KEY_PATTERN": pattern})
