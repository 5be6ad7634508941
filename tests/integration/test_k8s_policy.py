"""End to end: EKS audit events through `handle` with FORWARDER_K8S_AUDIT_POLICY, to the real local intake.

The policy comes inline, from an SSM parameter (moto) or from an S3 object (moto); events the policy
drops are counted as `filtered`, events it reduces arrive reduced, the rest arrive as read.
"""

from __future__ import annotations

import re
from typing import Any

import boto3
import orjson
import pytest

from bench.fixtures import k8s_audit_lines
from forwarder.devintake import LocalIntake
from forwarder.errors import ConfigError
from forwarder.handler import handle
from forwarder.metrics import Tally

from .helpers import FIXTURES, awslogs_event, context, put, settings_for

SEED_POLICY = (FIXTURES / "k8s-audit" / "policies" / "seed-example_audit-policy.yaml").read_text()
WRITTEN = (FIXTURES / "k8s-audit" / "written_eks-noise-and-secrets.jsonl").read_text().splitlines()
GROUP = "/aws/eks/prod-eu/cluster"
AUDIT_STREAM = "kube-apiserver-audit-0123456789abcdef"


def audit_event(lines: list[str], stream: str = AUDIT_STREAM) -> dict[str, Any]:
    return awslogs_event(GROUP, stream, lines)


def test_the_seed_policy_filters_noise_and_reduces_secrets_end_to_end(intake: LocalIntake) -> None:
    lines = WRITTEN + k8s_audit_lines()
    tally = Tally()

    summary = handle(
        audit_event(lines), context(), settings_for(intake.url, FORWARDER_K8S_AUDIT_POLICY=SEED_POLICY), tally
    )

    messages = [entry["message"] for entry in intake.entries]
    assert summary["events_read"] == len(lines)
    assert summary["events_filtered"] == len(lines) - len(messages) >= 5
    assert summary["events_delivered"] == len(messages) and tally.balanced()
    assert not any("NOT-A-REAL-TOKEN" in message or '"/healthz' in message for message in messages)
    levels = {orjson.loads(message).get("level") for message in messages if message.startswith("{")}
    assert levels <= {"Metadata", "RequestResponse", "Request"}
    unchanged = [message for message in messages if message in lines]
    assert unchanged and len(unchanged) < len(messages)  # the untouched arrive as read, the reduced re-serialised
    assert {entry["ddsource"] for entry in intake.entries} == {"kubernetes.audit"}
    assert all("kube_cluster_name:prod-eu" in entry["ddtags"] for entry in intake.entries)


def test_the_policy_leaves_other_eks_streams_alone(intake: LocalIntake) -> None:
    event = audit_event(WRITTEN, stream="kube-apiserver-0123456789abcdef")

    summary = handle(event, context(), settings_for(intake.url, FORWARDER_K8S_AUDIT_POLICY=SEED_POLICY))

    assert [entry["message"] for entry in intake.entries] == WRITTEN
    assert summary["events_filtered"] == 0


def test_a_policy_from_an_ssm_parameter(moto_endpoint: str, intake: LocalIntake) -> None:
    boto3.client("ssm").put_parameter(Name="/forwarder/k8s-audit-policy", Value=SEED_POLICY, Type="String")
    settings = settings_for(intake.url, FORWARDER_K8S_AUDIT_POLICY="ssm:/forwarder/k8s-audit-policy")

    summary = handle(audit_event(WRITTEN), context(), settings)

    assert (summary["events_filtered"], summary["events_delivered"]) == (5, 3)


def test_a_policy_from_an_s3_object(s3: Any, intake: LocalIntake) -> None:
    put(s3, "policy-bucket", "k8s/audit-policy.yaml", SEED_POLICY.encode(), compress=False)
    settings = settings_for(intake.url, FORWARDER_K8S_AUDIT_POLICY="s3://policy-bucket/k8s/audit-policy.yaml")

    summary = handle(audit_event(WRITTEN), context(), settings)

    assert (summary["events_filtered"], summary["events_delivered"]) == (5, 3)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("ssm:/forwarder/broken-policy", "FORWARDER_K8S_AUDIT_POLICY (ssm:/forwarder/broken-policy): rules[0].level"),
        ("ssm:/forwarder/no-such-policy", "could not read parameter /forwarder/no-such-policy"),
        ("s3://policy-bucket/no-such-policy.yaml", "could not read s3://policy-bucket/no-such-policy.yaml"),
    ],
)
def test_a_stored_policy_that_cannot_be_used_fails_before_anything_is_sent(
    s3: Any, intake: LocalIntake, reference: str, message: str
) -> None:
    boto3.client("ssm").put_parameter(
        Name="/forwarder/broken-policy", Value="apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Most}]",
        Type="String", Overwrite=True,
    )  # fmt: skip
    put(s3, "policy-bucket", "present.yaml", b"", compress=False)
    settings = settings_for(intake.url, FORWARDER_K8S_AUDIT_POLICY=reference)

    with pytest.raises(ConfigError, match=re.escape(message)):
        handle(audit_event(WRITTEN), context(), settings)

    assert intake.entries == []
