"""template.yaml's resource tag and Kubernetes audit parameters: each sets its variable, and its grant
appears only when it is on, on exactly what the stack names."""

from __future__ import annotations

import re
from typing import Any

import pytest
from stack_model import PSEUDO, Stack, grants, load_template, parameter_values, rules_pass

ACCOUNT, REGION = PSEUDO["AWS::AccountId"], PSEUDO["AWS::Region"]
KEY = {"DdApiKey": "0123456789abcdef0123456789abcdef"}
BUCKETS = ("org-trail-logs", "eks-audit.archive")
GROUPS = ("/aws/eks/prod/cluster", "/aws/eks/staging/cluster")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _env(stack: Stack) -> dict[str, Any]:
    return stack.resources["ForwarderFunction"]["Properties"]["Environment"]["Variables"]


def _added(template: dict[str, Any], base: dict[str, str], extra: dict[str, str]) -> set[tuple[str, str]]:
    """The grants `extra` adds to the stack `base` describes, checking it removes none."""
    before = grants(Stack(template, {**KEY, **base}))
    after = grants(Stack(template, {**KEY, **base, **extra}))
    assert before <= after, f"{extra} removed grants: {before - after}"
    return after - before


# --- resource tags (DD_FETCH_S3_TAGS, DD_FETCH_LOG_GROUP_TAGS) ------------------------------------


def test_tag_fetching_is_off_by_default_with_the_datadog_forwarder_s_ttl(template):
    env = _env(Stack(template, KEY))
    assert (env["DD_FETCH_S3_TAGS"], env["DD_FETCH_LOG_GROUP_TAGS"]) == ("false", "false")
    assert env["DD_TAGS_CACHE_TTL_SECONDS"] == "300"
    stack = Stack(template, {**KEY, "S3BucketNames": ",".join(BUCKETS), "LogGroupNames": ",".join(GROUPS)})
    assert not [a for a, _ in grants(stack) if a in {"s3:GetBucketTagging", "logs:ListTagsForResource"}]


@pytest.mark.parametrize("buckets", [(), BUCKETS[:1], BUCKETS])
def test_bucket_tags_are_granted_on_the_named_buckets_only_when_on(template, buckets):
    base = {"S3BucketNames": ",".join(buckets), "LogGroupNames": ",".join(GROUPS)}
    added = _added(template, base, {"DdFetchS3Tags": "true", "TagsCacheTTLSeconds": "900"})
    assert added == {("s3:GetBucketTagging", f"arn:aws:s3:::{bucket}") for bucket in buckets}
    env = _env(Stack(template, {**KEY, **base, "DdFetchS3Tags": "true", "TagsCacheTTLSeconds": "900"}))
    assert (env["DD_FETCH_S3_TAGS"], env["DD_TAGS_CACHE_TTL_SECONDS"]) == ("true", "900")


def test_bucket_tags_of_any_bucket_only_with_read_any_bucket(template):
    base = {"ReadAnyBucket": "true", "S3Delivery": "S3Notification"}
    assert _added(template, base, {"DdFetchS3Tags": "true"}) == {("s3:GetBucketTagging", "arn:aws:s3:::*")}


@pytest.mark.parametrize("groups", [(), GROUPS[:1], GROUPS])
def test_log_group_tags_are_granted_on_the_subscribed_groups_only_when_on(template, groups):
    base = {"LogGroupNames": ",".join(groups), "S3BucketNames": ",".join(BUCKETS)}
    added = _added(template, base, {"DdFetchLogGroupTags": "true"})
    prefix = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    assert added == {
        ("logs:ListTagsForResource", f"{prefix}{group}{suffix}") for group in groups for suffix in ("", ":*")
    }
    assert _env(Stack(template, {**KEY, **base, "DdFetchLogGroupTags": "true"}))["DD_FETCH_LOG_GROUP_TAGS"] == "true"


def test_log_group_tag_grant_is_the_arn_the_forwarder_asks_about(template):
    """forwarder/tags.py names the group by `arn:<partition>:logs:<region>:<account>:log-group:<name>`."""
    from forwarder.model import Invoker, LogBatch
    from forwarder.tags import log_group_arn

    batch = LogBatch(
        owner=ACCOUNT, log_group=GROUPS[0], log_stream="kube-apiserver-audit-1", subscription_filters=(), log_events=()
    )
    invoker = Invoker.from_arn(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:forwarder")
    added = _added(template, {"LogGroupNames": GROUPS[0]}, {"DdFetchLogGroupTags": "true"})
    assert ("logs:ListTagsForResource", log_group_arn(batch, invoker)) in added


def test_every_inline_policy_name_is_one_iam_takes(template):
    """IAM's PolicyName is `[\\w+=,.@-]{1,128}`: a name built from a log group ("/aws/eks/...")
    must lose its slashes, or the stack fails to create with DdFetchLogGroupTags on."""
    values = {"LogGroupNames": ",".join(GROUPS), "S3BucketNames": ",".join(BUCKETS), "DdFetchLogGroupTags": "true"}
    stack = Stack(template, {**KEY, **values, "DdFetchS3Tags": "true"})
    names = [body["Properties"]["PolicyName"] for body in stack.of_type("AWS::IAM::RolePolicy").values()]
    assert len(names) == len(GROUPS) + len(BUCKETS)
    assert all(re.fullmatch(r"[\w+=,.@-]{1,128}", name) for name in names), names
    assert len(set(names)) == len(names)


# --- the Kubernetes audit policy (FORWARDER_K8S_AUDIT_POLICY) --------------------------------------

INLINE_POLICY = '{"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}'


@pytest.mark.parametrize(
    ("overrides", "variable", "grant"),
    [
        ({}, None, set()),
        ({"K8sAuditPolicy": INLINE_POLICY}, INLINE_POLICY, set()),
        (
            {"K8sAuditPolicySsmName": "/forwarder/audit-policy"},
            "ssm:/forwarder/audit-policy",
            {("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/forwarder/audit-policy")},
        ),
        (
            {"K8sAuditPolicySsmName": "forwarder-audit-policy"},
            "ssm:forwarder-audit-policy",
            {("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/forwarder-audit-policy")},
        ),
        (
            {"K8sAuditPolicyS3Uri": "s3://config-bucket/forwarder/audit-policy.yaml"},
            "s3://config-bucket/forwarder/audit-policy.yaml",
            {("s3:GetObject", "arn:aws:s3:::config-bucket/forwarder/audit-policy.yaml")},
        ),
    ],
)
def test_the_audit_policy_variable_and_its_one_grant(template, overrides, variable, grant):
    base = {"S3BucketNames": BUCKETS[0], "LogGroupNames": GROUPS[0]}
    stack = Stack(template, {**KEY, **base, **overrides})
    assert stack.rules_pass(template)
    assert _env(stack).get("FORWARDER_K8S_AUDIT_POLICY") == variable
    assert _added(template, base, overrides) == grant


def test_the_variable_is_what_the_forwarder_reads_as_that_reference(template):
    from forwarder.settings import Settings

    for overrides, kind in (
        ({"K8sAuditPolicySsmName": "/forwarder/audit-policy"}, "ssm:"),
        ({"K8sAuditPolicyS3Uri": "s3://config-bucket/audit.yaml"}, "s3://"),
    ):
        value = _env(Stack(template, {**KEY, **overrides}))["FORWARDER_K8S_AUDIT_POLICY"]
        settings = Settings.from_env({"DD_API_KEY": "x" * 32, "FORWARDER_K8S_AUDIT_POLICY": value})
        assert settings.k8s_audit_policy_origin == f"FORWARDER_K8S_AUDIT_POLICY ({value})"
        assert settings.k8s_audit_policy.startswith(kind)


def test_at_most_one_audit_policy_source(template):
    sources = {
        "K8sAuditPolicy": INLINE_POLICY,
        "K8sAuditPolicySsmName": "/forwarder/audit-policy",
        "K8sAuditPolicyS3Uri": "s3://config-bucket/audit.yaml",
    }
    names = sorted(sources)
    for name in names:
        assert Stack(template, {**KEY, name: sources[name]}).rules_pass(template)
    for first in range(3):
        for second in range(first + 1, 3):
            pair = {names[first]: sources[names[first]], names[second]: sources[names[second]]}
            assert not Stack(template, {**KEY, **pair}).rules_pass(template), pair
    assert not Stack(template, {**KEY, **sources}).rules_pass(template)


def _allowed(template: dict[str, Any], parameter: str, value: str) -> bool:
    """Whether the parameter's AllowedPattern (Java regex; these use nothing Python reads otherwise) admits value."""
    return re.fullmatch(template["Parameters"][parameter]["AllowedPattern"], value) is not None


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("", True),
        ("s3://config-bucket/forwarder/audit-policy.yaml", True),
        ("s3://config.bucket-1/a", True),
        ("s3://config-bucket/", False),
        ("s3://config-bucket", False),
        ("s3://config-bucket/policies/*", False),
        ("s3://config-bucket/policy?.yaml", False),
        ("s3://config-bucket/s3://other/key", False),
        ("ssm:/forwarder/audit-policy", False),
        ("https://config-bucket.s3.amazonaws.com/audit.yaml", False),
    ],
)
def test_the_s3_uri_cannot_widen_its_grant(template, value, allowed):
    assert _allowed(template, "K8sAuditPolicyS3Uri", value) == allowed


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("", True), ("/forwarder/audit-policy", True), ("audit_policy.v2", True), ("/forwarder/*", False)],
)
def test_the_parameter_name_cannot_widen_its_grant(template, value, allowed):
    assert _allowed(template, "K8sAuditPolicySsmName", value) == allowed


def test_the_cluster_key_pattern_is_passed_as_given(template):
    pattern = "^k8s-audit/(?P<cluster>[^/]+)/"
    env = _env(Stack(template, {**KEY, "K8sClusterKeyPattern": pattern}))
    assert env["FORWARDER_K8S_CLUSTER_KEY_PATTERN"] == pattern
    assert _env(Stack(template, KEY))["FORWARDER_K8S_CLUSTER_KEY_PATTERN"] == ""


# --- reserved concurrency covers the queues' event sources (issue 15) --------------------------------

QUEUE = f"arn:aws:sqs:{REGION}:210987654321:org-trail-notifications"
LAKE_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:AmazonSecurityLake-0f1e2d3c-Main-Queue"
TOPIC = f"arn:aws:sns:{REGION}:210987654321:org-trail"
QUEUE_SHAPES = [
    {
        "UseQueue": use_queue,
        "S3Delivery": delivery,
        "S3BucketNames": buckets,
        "CloudTrailTopicArn": topic,
        "EnableContinuation": continuation,
        "ExistingQueueArn": existing,
        "SecurityLakeQueueArn": lake,
    }
    for use_queue in ("true", "false")
    for delivery in ("EventBridge", "S3Notification", "None")
    for buckets in ("", BUCKETS[0])
    for topic in ("", TOPIC)
    for continuation in ("true", "false")
    for existing in ("", QUEUE)
    for lake in ("", LAKE_QUEUE)
]


def _queues_the_rule_counts(shape: dict[str, str]) -> int:
    """The stack's queue whenever UseQueue and S3Delivery is not None or a topic is given, and the others."""
    main = shape["UseQueue"] == "true" and (shape["S3Delivery"] != "None" or bool(shape["CloudTrailTopicArn"]))
    others = (
        shape["EnableContinuation"] == "true",
        bool(shape["ExistingQueueArn"]),
        bool(shape["SecurityLakeQueueArn"]),
    )
    return int(main) + sum(others)


def test_the_rule_counts_every_queue_event_source_the_stack_makes(template):
    """Never fewer than the stack's event source mappings; more only for an EventBridge rule with no bucket."""
    for shape in QUEUE_SHAPES:
        stack = Stack(template, {**KEY, **shape})
        mappings = stack.of_type("AWS::Lambda::EventSourceMapping")
        assert all(m["Properties"]["ScalingConfig"] == {"MaximumConcurrency": "10"} for m in mappings.values())
        counted = _queues_the_rule_counts(shape)
        no_rule_target = shape["S3Delivery"] == "EventBridge" and not shape["S3BucketNames"]
        over = shape["UseQueue"] == "true" and no_rule_target and not shape["CloudTrailTopicArn"]
        assert counted == len(mappings) + int(over), shape


def test_reserved_concurrency_below_the_queues_maxima_is_refused(template):
    """Exhaustively over both ladders: accepted exactly when -1, 0, or at least queues x maximum."""
    reserved_ladder = template["Parameters"]["ReservedConcurrency"]["AllowedValues"]
    maximum_ladder = template["Parameters"]["QueueMaximumConcurrency"]["AllowedValues"]
    wrong = []
    for shape in QUEUE_SHAPES:
        queues = _queues_the_rule_counts(shape)
        for maximum in maximum_ladder:
            for reserved in reserved_ladder:
                overrides = {**KEY, **shape, "QueueMaximumConcurrency": maximum, "ReservedConcurrency": reserved}
                safe = int(reserved) in (-1, 0) or int(reserved) >= queues * int(maximum)
                if rules_pass(template, parameter_values(template, overrides)) != safe:
                    wrong.append((shape, maximum, reserved))
    assert not wrong, f"{len(wrong)} wrong, first: {wrong[:3]}"


def test_a_default_stack_with_reserved_concurrency_of_one_queue_s_worth_is_refused(template):
    """The stack's queue and the continuation queue, 10 each: 10 reserved would throttle them."""
    base = {**KEY, "S3BucketNames": BUCKETS[0]}
    assert not Stack(template, {**base, "ReservedConcurrency": "10"}).rules_pass(template)
    assert Stack(template, {**base, "ReservedConcurrency": "20"}).rules_pass(template)
    assert Stack(template, {**base, "ReservedConcurrency": "0"}).rules_pass(template)
    assert not Stack(template, {**base, "ReservedConcurrency": "40", "QueueMaximumConcurrency": "50"}).rules_pass(
        template
    )


def test_the_ladders_hold_every_multiple_the_rule_compares(template):
    """Each k x m (k queues, m a maximum) is itself a reserved value, so the safe minimum can be chosen."""
    reserved = {int(v) for v in template["Parameters"]["ReservedConcurrency"]["AllowedValues"]}
    maxima = [int(v) for v in template["Parameters"]["QueueMaximumConcurrency"]["AllowedValues"]]
    assert {k * m for k in range(1, 5) for m in maxima} <= reserved
    assert (min(maxima), max(maxima)) == (2, 1000), "Lambda's bounds for an SQS event source's MaximumConcurrency"
