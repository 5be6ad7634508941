"""AWS services' logs end to end: each README "Sources" row's sample through `handle`, moto's S3 and
the real local intake, labelled with the Datadog Forwarder's source name and at the log's own time."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import orjson
import pytest

from bench.fixtures import s3_event
from forwarder.devintake import LocalIntake
from forwarder.handler import handle
from forwarder.times import iso_ms

from .helpers import ACCOUNT, FIXTURES, awslogs_event, context, put, settings_for

AWS = FIXTURES / "aws"
K8S = FIXTURES / "k8s-audit"
STEM = f"AWSLogs/{ACCOUNT}"


def lines(path: Any) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def s3_case(s3: Any, intake: LocalIntake, key: str, body: bytes, **env: str) -> list[dict[str, Any]]:
    put(s3, "logs-bucket", key, body)
    summary = handle(s3_event("logs-bucket", key), context(), settings_for(intake.url, **env))
    assert summary["events_failed"] == 0
    return intake.entries


@pytest.mark.parametrize(
    ("sample", "key", "ddsource", "times"),
    [
        ("alb/otel_alb_al_valid_logs.log",
         f"{STEM}/elasticloadbalancing/us-east-2/2018/07/02/{ACCOUNT}_elasticloadbalancing_us-east-2_app.my-loadbalancer"
         ".50dc6c495c0c9188_20180702T2225Z_192.168.131.39_2et2e1mx.log.gz",
         "elb", [iso_ms("2018-07-02T22:23:00.186641Z")] * 2),
        ("clb/otel_clb_al_valid_logs.log",
         f"{STEM}/elasticloadbalancing/us-east-1/2015/05/13/{ACCOUNT}_elasticloadbalancing_us-east-1_my-loadbalancer"
         "_20150513T2340Z_192.168.131.39_a1b2c3d4.log",
         "elb", [iso_ms("2015-05-13T23:39:43.945958Z")] * 2),
        ("nlb/otel_nlb_al_valid_logs.log",
         f"{STEM}/elasticloadbalancing/us-east-2/2020/04/01/{ACCOUNT}_elasticloadbalancing_us-east-2_net.my-network-"
         "loadbalancer.c6e77e28c25b2234_20200401T0855Z_1a2b3c4d.log.gz",
         "elb", [iso_ms("2020-04-01T08:51:42Z")]),
        ("vpc-flow-logs/otel_valid_vpc_flow_log_multi.log",
         f"{STEM}/vpcflowlogs/us-east-1/2014/12/14/{ACCOUNT}_vpcflowlogs_us-east-1_fl-1234abcd_20141214T0425Z_1a2b3c4d.log.gz",
         "vpc", [1418530010000] * 2),
        ("vpc-flow-logs/otel_vpc_flow_custom_v5_ecs.log",
         f"{STEM}/vpcflowlogs/us-east-1/2023/11/14/{ACCOUNT}_vpcflowlogs_us-east-1_fl-5678efgh_20231114T2215Z_9e8d7c6b.log.gz",
         "vpc", [1700000000000]),
        ("s3-access-logs/otel_valid_s3_access_log.log", "s3-access/2019-02-06-00-01-12-A211246203787B7F",
         "s3", [iso_ms("2019-02-06T00:00:38Z")]),
        ("cloudfront/written_E1A2B3C4EXAMPLE.2026-12-06-10.3f9a1c2d.log",
         "cdn-logs/E1A2B3C4EXAMPLE.2026-12-06-10.3f9a1c2d.gz",
         "cloudfront", [iso_ms("2026-12-06T10:15:01Z"), iso_ms("2026-12-06T10:15:07Z")]),
        ("waf/otel_valid_log.json",
         f"{STEM}/WAFLogs/cloudfront/my-acl/2025/05/25/21/30/{ACCOUNT}_waflogs_cloudfront_my-acl_20250525T2130Z_8e0a6094.log.gz",
         "waf", [1748208718574]),
        ("network-firewall/dynatrace_alert_log_aws_docs_example.jsonl",
         f"{STEM}/network-firewall/alert/us-east-1/test-firewall/2020/10/13/22/{ACCOUNT}_network-firewall_alert_us-east-1"
         "_test-firewall_202010132210_e5c84094.log.gz",
         "network-firewall", [1602627001000]),
        ("route53-resolver/awsdocs_resolver-query-logs-example.jsonl",
         f"{STEM}/vpcdnsquerylogs/vpc-7example/2021/02/04/vpc-7example_vpcdnsquerylogs_{ACCOUNT}_20210204T1750Z_213be99c.log.gz",
         "route53", [iso_ms("2021-02-04T17:51:55Z")]),
        ("guardduty/derived_findings-export.jsonl",
         f"{STEM}/GuardDuty/us-east-1/2023/03/22/5b1b29c3-7d3f-3b5a-9a43-39ca6e5a1d51.jsonl.gz",
         "guardduty", [iso_ms("2023-03-22T21:28:07.748Z"), iso_ms("2020-02-14T18:12:22.316Z")]),
    ],
)  # fmt: skip
def test_an_aws_log_in_s3_arrives_labelled_at_its_own_time(
    s3: Any, intake: LocalIntake, sample: str, key: str, ddsource: str, times: list[int | None]
) -> None:
    path = AWS / sample
    expected = [line for line in lines(path) if not line.startswith("#")]
    if ddsource == "vpc":
        expected = expected[1:]  # the header names the fields: not an event

    entries = s3_case(s3, intake, key, path.read_bytes())

    assert [entry["message"] for entry in entries] == expected
    assert {entry["ddsource"] for entry in entries} == {ddsource}
    assert [entry.get("timestamp") for entry in entries] == times


def test_a_kubernetes_audit_file_under_any_key_is_named_by_its_content(s3: Any, intake: LocalIntake) -> None:
    path = K8S / "written_eks-noise-and-secrets.jsonl"
    pattern = r"^k8s-audit/(?P<cluster>[^/]+)/"

    entries = s3_case(
        s3, intake, "k8s-audit/prod-eu/kube-apiserver/audit-2024-12-04T12-00-00.000.log.gz", path.read_bytes(),
        FORWARDER_K8S_CLUSTER_KEY_PATTERN=pattern,
    )  # fmt: skip

    events = [json.loads(line) for line in lines(path)]
    assert [entry["message"] for entry in entries] == lines(path)
    assert {entry["ddsource"] for entry in entries} == {"kubernetes.audit"}
    assert all("kube_cluster_name:prod-eu" in entry["ddtags"].split(",") for entry in entries)
    assert [entry["timestamp"] for entry in entries] == [iso_ms(event["stageTimestamp"]) for event in events]


def test_the_audit_policy_applies_to_an_audit_file_in_s3(s3: Any, intake: LocalIntake) -> None:
    path = K8S / "written_eks-noise-and-secrets.jsonl"
    policy = (K8S / "policies" / "seed-example_audit-policy.yaml").read_text()
    put(s3, "logs-bucket", "k8s/audit.log.gz", path.read_bytes())

    summary = handle(
        s3_event("logs-bucket", "k8s/audit.log.gz"), context(),
        settings_for(intake.url, FORWARDER_K8S_AUDIT_POLICY=policy),
    )  # fmt: skip

    messages = [entry["message"] for entry in intake.entries]
    assert summary["events_read"] == len(lines(path)) > summary["events_delivered"] == len(messages)
    assert summary["events_filtered"] == len(lines(path)) - len(messages)
    assert not any("NOT-A-REAL-TOKEN" in message or '"/healthz' in message for message in messages)


def test_a_v1beta1_audit_file_takes_its_cluster_from_dd_tags(s3: Any, intake: LocalIntake) -> None:
    path = K8S / "audit2rbac_demo_original-2017.log"
    data = "\n".join(lines(path)[:20]).encode() + b"\n"

    entries = s3_case(s3, intake, "shipped/node-1/audit.log.1.gz", data, DD_TAGS="kube_cluster_name:lab")

    assert len(entries) == 20 and {entry["ddsource"] for entry in entries} == {"kubernetes.audit"}
    assert all("kube_cluster_name:lab" in entry["ddtags"].split(",") for entry in entries)
    first = json.loads(lines(path)[0])
    assert entries[0]["timestamp"] == iso_ms(first["timestamp"])


def payload_event(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = orjson.dumps({"messageType": "DATA_MESSAGE", "subscriptionFilters": [], **payload, **changes})
    return {"awslogs": {"data": base64.b64encode(gzip.compress(data)).decode()}}


@pytest.mark.parametrize(
    ("sample", "ddsource", "tags"),
    [
        ("rds/datadog_rds_postgresql_payload.json", "postgresql", ["logname:postgresql"]),
        ("stepfunctions/datadog_step_functions_log.json", "stepfunction", []),
        ("apigateway/written_access-log_payload.json", "apigateway", []),
    ],
)
def test_an_aws_log_group_arrives_labelled(intake: LocalIntake, sample: str, ddsource: str, tags: list[str]) -> None:
    payload = json.loads((AWS / sample).read_text())

    summary = handle(payload_event(payload), context(), settings_for(intake.url))

    assert summary["events_delivered"] == len(payload["logEvents"])
    assert [entry["message"] for entry in intake.entries] == [event["message"] for event in payload["logEvents"]]
    assert {entry["ddsource"] for entry in intake.entries} == {ddsource}
    assert all(set(tags) <= set(entry["ddtags"].split(",")) for entry in intake.entries)


def test_cloudtrail_records_in_any_log_group_are_named_cloudtrail(intake: LocalIntake) -> None:
    """LookupEvents' `CloudTrailEvent` is the record as CloudTrail writes it to CloudWatch Logs."""
    looked_up = lines(FIXTURES / "cloudtrail" / "plaso_lookup-events_aws_cloudtrail.jsonl")
    messages = [json.loads(line)["CloudTrailEvent"] for line in looked_up]

    handle(awslogs_event("security/audit-stream", "anything", messages), context(), settings_for(intake.url))

    assert len(intake.entries) == len(messages)
    assert {entry["ddsource"] for entry in intake.entries} == {"cloudtrail"}


def test_flow_logs_in_cloudwatch_have_start_when_their_format_shows_it(intake: LocalIntake) -> None:
    default = lines(AWS / "vpc-flow-logs/otel_valid_vpc_flow_log_multi.log")[1:]
    custom = lines(AWS / "vpc-flow-logs/otel_vpc_flow_custom_v5_ecs.log")[1:]
    event = awslogs_event("/vpc/flow-logs", "eni-1235b8ca123456789-all", default + custom)

    handle(event, context(), settings_for(intake.url))

    assert {entry["ddsource"] for entry in intake.entries} == {"vpc"}
    cloudwatch_time = 1733313600000 + len(default)  # the custom line's, as awslogs_event numbers them
    assert [entry["timestamp"] for entry in intake.entries] == [1418530010000, 1418530010000, cloudwatch_time]
