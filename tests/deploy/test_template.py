"""template.yaml: it lints before and after the SAM transform, and for every combination of the
parameters that shape it, the stack holds exactly the wiring asked for and the role exactly the
grants that wiring needs."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import itertools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.persistence.dynamodb import DynamoDBPersistenceLayer
from cfnlint.api import lint
from cfnlint.config import ManualArgs
from cfnlint.context.parameters import ParameterSet
from samtranslator.translator.transform import transform
from stack_model import (
    PSEUDO,
    ROOT,
    TEMPLATE_PATH,
    Stack,
    cfn_parameter_strings,
    expand_foreach,
    grants,
    load_template,
    parameter_values,
)

from forwarder.metrics import Outcome

DOCS = ROOT / "docs" / "deploy.md"
# What the table must be keyed and expire on: whatever Powertools' persistence layer defaults to.
_LAYER_DEFAULTS = inspect.signature(DynamoDBPersistenceLayer.__init__).parameters
POWERTOOLS_KEY_ATTRIBUTE = _LAYER_DEFAULTS["key_attr"].default
POWERTOOLS_EXPIRY_ATTRIBUTE = _LAYER_DEFAULTS["expiry_attr"].default
ACCOUNT, REGION = PSEUDO["AWS::AccountId"], PSEUDO["AWS::Region"]
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:datadog/api-key-AbCdEf"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0c2d57c6-6a4f-4f8e-9a3b-1b2c3d4e5f60"
STORE_BUCKET = "failed-events-archive"
KEY_SOURCES = {
    "value": {"DdApiKey": "0123456789abcdef0123456789abcdef"},
    "secret": {"DdApiKeySecretArn": SECRET_ARN},
    "ssm": {"DdApiKeySsmName": "/datadog/api-key"},
}
BASE_RESOURCES = {
    "ForwarderFunction",
    "ForwarderLogGroup",
    "ForwarderRole",
    "DeadLetterQueue",
    "DeadLetterQueuePolicy",
    "ErrorsAlarm",
    "ThrottlesAlarm",
    "DeadLetterQueueAlarm",
    "EventsFailedAlarm",
    "InputErrorsAlarm",
    "NothingDeliveredAlarm",
    "LagAlarm",
    "Dashboard",
}
STACK = PSEUDO["AWS::StackName"]
ORG_ID = "o-a1b2c3d4e5"
LOG_ARCHIVE = "210987654321"
EXISTING_QUEUE = f"arn:aws:sqs:{REGION}:{LOG_ARCHIVE}:org-trail-notifications"
TRAIL_TOPIC = f"arn:aws:sns:eu-west-1:{LOG_ARCHIVE}:org-trail"
SECURITY_LAKE_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:AmazonSecurityLake-0f1e2d3c-Main-Queue"
CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility")
# KMS keys decrypt only on behalf of the services the forwarder reads through.
VIA_SERVICES = [f"{service}.{REGION}.amazonaws.com" for service in ("s3", "secretsmanager", "ssm", "sqs")]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _errors(matches: list[Any]) -> list[str]:
    return [str(m) for m in matches if m.rule.id.startswith("E")]


# --- cfn-lint, before and after the transforms ---------------------------------------------------


def test_cfn_lint_finds_no_error_in_the_template():
    assert _errors(lint(TEMPLATE_PATH.read_text())) == []


def sam_transform(template: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation deploys: Fn::ForEach expanded, then the SAM transform, as `sam package` left it."""
    values = parameter_values(template, overrides)
    expanded = expand_foreach(copy.deepcopy(template), values)
    remaining = [t for t in expanded["Transform"] if t != "AWS::LanguageExtensions"]
    expanded["Transform"] = remaining[0] if len(remaining) == 1 else remaining
    # `sam package` uploads CodeUri and puts its S3 location in its place.
    expanded["Resources"]["ForwarderFunction"]["Properties"]["CodeUri"] = "s3://artifacts/forwarder.zip"
    expanded["Resources"]["ParquetLayer"]["Properties"]["ContentUri"] = "s3://artifacts/parquet-layer.zip"

    class NoManagedPolicies:  # the template names none; never ask IAM
        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return transform(expanded, cfn_parameter_strings(values), NoManagedPolicies())


TRANSFORM_CASES = {
    "defaults-with-key": {**KEY_SOURCES["value"]},
    "everything": {
        **KEY_SOURCES["ssm"],
        "S3BucketNames": "org-trail-logs,eks-audit.archive",
        "LogGroupNames": "/aws/eks/prod/cluster,/aws/eks/staging/cluster",
        "LogGroupEksAuditOnly": "true",
        "KmsKeyArns": KMS_KEY,
        # Four queues (the stack's, continuation, Security Lake's... ) of 10: the Rules ask for 40 at least.
        "ReservedConcurrency": "40",
        "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts",
        "Architecture": "x86_64",
        "Timeout": "900",
        "DdUrl": "intake.example.com",
        "DdPort": "8443",
        "MaxAttempts": "3",
        "StoreFailedEvents": "true",
        "FailedEventsBucketName": STORE_BUCKET,
        "ReplaySchedule": "cron(15 * * * ? *)",
        "IdempotencyExpirySeconds": "3600",
        "VpcSubnetIds": "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788",
        "VpcSecurityGroupIds": "sg-0a1b2c3d4e5f60718",
        "HttpsProxy": "http://proxy.internal:3128",
        "NoProxy": ".amazonaws.com",
        "GuardDutyFindings": "true",
        "GuardDutyMinSeverity": "7",
        "SecurityLakeQueueArn": SECURITY_LAKE_QUEUE,
        "EnableParquet": "true",
    },
    "store-in-a-new-bucket": {
        **KEY_SOURCES["value"],
        "S3BucketNames": "org-trail-logs",
        "StoreFailedEvents": "true",
        "FailedEventsExpirationDays": "7",
        "Timeout": "60",
    },
    "reliability-off": {
        **KEY_SOURCES["secret"],
        "EnableContinuation": "false",
        "EnableIdempotency": "false",
        "ReplaySchedule": "",
    },
    "notification-no-queue": {
        **KEY_SOURCES["secret"],
        "S3BucketNames": "org-trail-logs",
        "S3Delivery": "S3Notification",
        "UseQueue": "false",
    },
    "rule-no-queue": {
        **KEY_SOURCES["secret"],
        "S3BucketNames": "org-trail-logs",
        "UseQueue": "false",
        "GuardDutyFindings": "true",
    },
    "organization": {
        **KEY_SOURCES["secret"],
        "S3BucketNames": "org-trail-logs,eks-audit.archive",
        "S3Delivery": "S3Notification",
        "S3KeyPrefix": "o-a1b2c3d4e5/AWSLogs/",
        "SourceOrganizationId": ORG_ID,
        "ExistingQueueArn": EXISTING_QUEUE,
        "CloudTrailTopicArn": TRAIL_TOPIC,
        "FunctionName": "org-forwarder",
        "KmsKeyArns": KMS_KEY,
        "LogGroupNames": "/aws/eks/prod/cluster",
        "StoreFailedEvents": "true",
    },
    "read-any-bucket-from-accounts": {
        **KEY_SOURCES["value"],
        "ReadAnyBucket": "true",
        "S3Delivery": "S3Notification",
        "UseQueue": "false",
        "SourceAccountIds": f"{LOG_ARCHIVE},333344445555",
        "CloudTrailTopicArn": TRAIL_TOPIC,
        "QueueMaximumConcurrency": "50",
        "NoDeliveryAlarmSeconds": "3600",
    },
}


def lint_with_values(text: str, template: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """cfn-lint's errors for these parameter values, less those inside resources they leave out.

    cfn-lint checks the properties of a resource whatever its condition; CloudFormation never
    looks at a resource whose condition is false. An empty list is [""] to CloudFormation, so
    Fn::ForEach yields one item with empty names, which the template's conditions drop.
    """
    stack = Stack(template, overrides)
    left_out = set(stack.expanded["Resources"]) - set(stack.resources)
    config = ManualArgs(regions=[REGION], parameters=[ParameterSet(parameters=stack.values)])
    return [
        str(m)
        for m in lint(text, config=config)
        if m.rule.id.startswith("E") and not (m.path[:1] == ["Resources"] and m.path[1] in left_out)
    ]


@pytest.mark.parametrize("case", sorted(TRANSFORM_CASES))
def test_template_lints_for_these_values(template, case):
    assert Stack(template, TRANSFORM_CASES[case]).rules_pass(template), "the Rules would refuse these values"
    assert lint_with_values(TEMPLATE_PATH.read_text(), template, TRANSFORM_CASES[case]) == []


@pytest.mark.parametrize("case", sorted(TRANSFORM_CASES))
def test_transformed_template_lints_and_keeps_the_explicit_role(template, case):
    output = sam_transform(template, TRANSFORM_CASES[case])
    assert lint_with_values(json.dumps(output), template, TRANSFORM_CASES[case]) == []
    resources = output["Resources"]
    function = resources["ForwarderFunction"]
    assert function["Type"] == "AWS::Lambda::Function"
    props = function["Properties"]
    assert props["Runtime"] == "python3.13"
    assert props["Handler"] == "forwarder.handler.lambda_handler"
    assert props["Role"] == {"Fn::GetAtt": ["ForwarderRole", "Arn"]}
    # SAM adds grants of its own only to a role it generates: there must be none.
    roles = {name for name, body in resources.items() if body["Type"] == "AWS::IAM::Role"}
    assert roles == {"ForwarderRole"}
    # Every resource of the template survives the transform under its own name (conditions are
    # CloudFormation's to apply), and SAM adds none of its own: no permission, no policy, no queue.
    # A layer is the exception SAM makes: its name gains a hash of its content, a new version per change.
    kept = {re.sub(r"^ParquetLayer[0-9a-f]{10}$", "ParquetLayer", name) for name in resources}
    assert kept == set(Stack(template, TRANSFORM_CASES[case]).expanded["Resources"])
    layers = [name for name in resources if name.startswith("ParquetLayer")]
    assert props.get("Layers", {"Fn::If": ["ParquetEnabled", [{"Ref": layers[0]}], {"Ref": "AWS::NoValue"}]}) == {
        "Fn::If": ["ParquetEnabled", [{"Ref": layers[0]}], {"Ref": "AWS::NoValue"}]
    }


SAM_CLI = os.environ.get("SAM_CLI") or shutil.which("sam")
"""`make test` installs the SAM CLI in a venv of its own (its pins are not ours) and names it in SAM_CLI."""


@pytest.mark.skipif(SAM_CLI is None, reason="no SAM CLI: `make test` installs one, or pip install aws-sam-cli")
def test_sam_validate_lint():
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": REGION}
    result = subprocess.run(
        [str(SAM_CLI), "validate", "--lint", "--template", str(TEMPLATE_PATH)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the wiring and grants matrix ---------------------------------------------------------------


@dataclass(frozen=True)
class Reliability:
    """The reliability parameters. store: off, off-named (off, a bucket named anyway), created, existing."""

    store: str = "off"
    schedule: str = "rate(1 hour)"
    continuation: bool = True
    idempotency: bool = True

    @property
    def store_on(self) -> bool:
        return self.store in {"created", "existing"}

    @property
    def scheduled(self) -> bool:
        return self.store_on and bool(self.schedule)

    def overrides(self) -> dict[str, Any]:
        return {
            "StoreFailedEvents": str(self.store_on).lower(),
            "FailedEventsBucketName": STORE_BUCKET if self.store in {"existing", "off-named"} else "",
            "ReplaySchedule": self.schedule,
            "EnableContinuation": str(self.continuation).lower(),
            "EnableIdempotency": str(self.idempotency).lower(),
        }


# What the template's defaults give: the base matrix runs with them, not with explicit values.
DEFAULT_RELIABILITY = Reliability()


@dataclass(frozen=True)
class Inputs:
    """Who may send, what else is read, and the function's name: the options beyond the base matrix."""

    read_any: bool = False
    accounts: tuple[str, ...] = ()
    org: str = ""
    existing_queue: str = ""
    topic: str = ""
    prefix: str = ""
    function_name: str = ""
    guardduty_severity: str = ""
    """The GuardDutyMinSeverity of a stack with GuardDutyFindings on; "" for off."""
    security_lake_queue: str = ""
    parquet: bool = False

    @property
    def only_this_account(self) -> bool:
        return not self.accounts and not self.org

    @property
    def name(self) -> str:
        return self.function_name or STACK

    def overrides(self) -> dict[str, Any]:
        return {
            "ReadAnyBucket": str(self.read_any).lower(),
            "SourceAccountIds": ",".join(self.accounts),
            "SourceOrganizationId": self.org,
            "ExistingQueueArn": self.existing_queue,
            "CloudTrailTopicArn": self.topic,
            "S3KeyPrefix": self.prefix,
            "FunctionName": self.function_name,
            "GuardDutyFindings": str(bool(self.guardduty_severity)).lower(),
            "GuardDutyMinSeverity": self.guardduty_severity or "4",
            "SecurityLakeQueueArn": self.security_lake_queue,
            "EnableParquet": str(self.parquet).lower(),
        }


DEFAULT_INPUTS = Inputs()


@dataclass(frozen=True)
class Combo:
    buckets: tuple[str, ...]
    delivery: str
    queue: bool
    log_groups: tuple[str, ...]
    audit_only: bool
    key: str
    kms: tuple[str, ...]
    rel: Reliability | None = field(default=None)
    ins: Inputs | None = field(default=None)

    @property
    def reliability(self) -> Reliability:
        return self.rel or DEFAULT_RELIABILITY

    @property
    def inputs(self) -> Inputs:
        return self.ins or DEFAULT_INPUTS

    @property
    def queued(self) -> bool:
        """UseQueue makes a queue only when something sends to it: the rule, notifications, the topic."""
        rule = self.delivery == "EventBridge" and bool(self.buckets)
        return self.queue and (rule or self.delivery == "S3Notification" or bool(self.inputs.topic))

    def overrides(self) -> dict[str, Any]:
        return {
            "S3BucketNames": ",".join(self.buckets),
            "S3Delivery": self.delivery,
            "UseQueue": str(self.queue).lower(),
            "LogGroupNames": ",".join(self.log_groups),
            "LogGroupEksAuditOnly": str(self.audit_only).lower(),
            "KmsKeyArns": ",".join(self.kms),
            **KEY_SOURCES[self.key],
            **(self.rel.overrides() if self.rel else {}),
            **(self.ins.overrides() if self.ins else {}),
        }


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text)


def _getatt(resource: str, attribute: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [resource, attribute]}


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def expected_resources(c: Combo) -> set[str]:
    rule = c.delivery == "EventBridge" and bool(c.buckets)
    i = c.inputs
    names = set(BASE_RESOURCES)
    names |= {"ApiKeySecret"} if c.key == "value" else set()
    names |= {f"ReadBucket{_alnum(b)}" for b in c.buckets}
    names |= {"Queue", "QueuePolicy", "QueueEventSource", "QueueAgeAlarm"} if c.queued else set()
    names |= {"ObjectCreatedRule", "RuleFailedInvocationsAlarm"} if rule else set()
    names |= {"ObjectCreatedRulePermission"} if rule and not c.queued else set()
    notified = c.delivery == "S3Notification" and not c.queued
    names |= {f"S3NotificationFrom{_alnum(b)}" for b in c.buckets} if notified else set()
    names |= {"S3NotificationPermission"} if notified and i.read_any else set()
    names |= {f"LogsPermission{_alnum(g)}" for g in c.log_groups}
    names |= {f"Subscription{_alnum(g)}" for g in c.log_groups}
    names |= {"ExistingQueueEventSource", "ExistingQueueAgeAlarm"} if i.existing_queue else set()
    names |= {"CloudTrailTopicSubscription"} if i.topic else set()
    names |= {"CloudTrailTopicPermission"} if i.topic and not c.queued else set()
    names |= {"GuardDutyFindingsRule"} if i.guardduty_severity else set()
    names |= {"GuardDutyFindingsRulePermission"} if i.guardduty_severity and not c.queued else set()
    names |= {"SecurityLakeQueueEventSource"} if i.security_lake_queue else set()
    names |= {"ParquetLayer"} if i.parquet else set()
    r = c.reliability
    names |= {"EventsStoredAlarm"} if r.store_on else set()
    names |= {"FailedEventsBucket", "FailedEventsBucketPolicy"} if r.store == "created" else set()
    names |= {"ReplayScheduleRule", "ReplaySchedulePermission"} if r.scheduled else set()
    continuation = {"ContinuationQueue", "ContinuationQueuePolicy", "ContinuationEventSource"}
    names |= continuation | {"ContinuationQueueAgeAlarm"} if r.continuation else set()
    names |= {"IdempotencyTable"} if r.idempotency else set()
    return names


def store_bucket_ref(r: Reliability) -> Any:
    """The store's bucket name as the template gives it to the function."""
    return {"Ref": "FailedEventsBucket"} if r.store == "created" else STORE_BUCKET


def store_grants(c: Combo) -> set[tuple[str, str]]:
    """Objects under failed-events/<stack name>/ only, and listing only that prefix."""
    r = c.reliability
    if not r.store_on:
        return set()
    # The prefix follows the stack, whatever the function is named: a new stack finds old batches.
    pattern = f"arn:aws:s3:::${{Bucket}}/failed-events/{STACK}/*"
    if r.store == "created":
        objects: Any = {"Fn::Sub": [pattern, {"Bucket": {"Ref": "FailedEventsBucket"}}]}
        bucket: Any = _getatt("FailedEventsBucket")
    else:
        objects = pattern.replace("${Bucket}", STORE_BUCKET)
        bucket = f"arn:aws:s3:::{STORE_BUCKET}"
    prefix = {"StringLike": {"s3:prefix": f"failed-events/{STACK}/*"}}
    pairs = {(action, _json(objects)) for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")}
    pairs.add(("s3:ListBucket", f"{_json(bucket)} when {json.dumps(prefix, sort_keys=True)}"))
    if r.store == "existing":
        via_s3 = {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
        pairs |= {("kms:GenerateDataKey", f"{key} when {json.dumps(via_s3, sort_keys=True)}") for key in c.kms}
    return pairs


def expected_grants(c: Combo) -> set[tuple[str, str]]:
    pairs = {(a, _json(_getatt("ForwarderLogGroup"))) for a in ("logs:CreateLogStream", "logs:PutLogEvents")}
    pairs.add(("sqs:SendMessage", _json(_getatt("DeadLetterQueue"))))
    if c.queued:
        consume = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility")
        pairs |= {(a, _json(_getatt("Queue"))) for a in consume}
    if c.key == "value":
        pairs.add(("secretsmanager:GetSecretValue", _json({"Ref": "ApiKeySecret"})))
    elif c.key == "secret":
        pairs.add(("secretsmanager:GetSecretValue", SECRET_ARN))
        pairs.add(("secretsmanager:GetSecretValue", f"{SECRET_ARN}-??????"))
    else:
        prefix = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
        pairs |= {("ssm:GetParameter", f"{prefix}/datadog/api-key"), ("ssm:GetParameter", f"{prefix}//datadog/api-key")}
    via = json.dumps({"StringEquals": {"kms:ViaService": VIA_SERVICES}}, sort_keys=True)
    pairs |= {("kms:Decrypt", f"{key} when {via}") for key in c.kms}
    # No bucket named and no ReadAnyBucket (an EKS-only stack): no S3 read at all.
    objects = [f"arn:aws:s3:::{b}/*" for b in c.buckets] or (["arn:aws:s3:::*/*"] if c.inputs.read_any else [])
    pairs |= {(action, arn) for action in ("s3:GetObject", "s3:GetObjectVersion") for arn in objects}
    for queue in (c.inputs.existing_queue, c.inputs.security_lake_queue):
        pairs |= {(a, queue) for a in CONSUME if queue}
    pairs |= store_grants(c)
    if c.reliability.continuation:
        send_and_consume = ("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
        pairs |= {(a, _json(_getatt("ContinuationQueue"))) for a in send_and_consume}
    if c.reliability.idempotency:
        records = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
        pairs |= {(a, _json(_getatt("IdempotencyTable"))) for a in records}
    return pairs


def check_wiring(stack: Stack, c: Combo) -> None:
    resources = stack.resources
    assert set(resources) == expected_resources(c)
    assert grants(stack) == expected_grants(c)

    env = resources["ForwarderFunction"]["Properties"]["Environment"]["Variables"]
    secret_env = {"value": {"Ref": "ApiKeySecret"}, "secret": SECRET_ARN, "ssm": None}[c.key]
    assert env.get("DD_API_KEY_SECRET_ARN") == secret_env
    assert env.get("DD_API_KEY_SSM_NAME") == ("/datadog/api-key" if c.key == "ssm" else None)
    assert "DD_API_KEY" not in env, "the key never travels in plain text"

    i = c.inputs
    function = resources["ForwarderFunction"]["Properties"]
    assert function["FunctionName"] == i.name
    assert resources["ForwarderLogGroup"]["Properties"]["LogGroupName"] == f"/aws/lambda/{i.name}"
    if "ObjectCreatedRule" in resources:
        rule = resources["ObjectCreatedRule"]["Properties"]
        detail: dict[str, Any] = {"bucket": {"name": list(c.buckets)}}
        if i.prefix:
            detail["object"] = {"key": [{"prefix": i.prefix}]}
        assert rule["EventPattern"] == {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail}
        target = _getatt("Queue") if c.queued else _getatt("ForwarderFunction")
        assert [t["Arn"] for t in rule["Targets"]] == [target]
        # Undeliverable events are retried for a day, then kept in the dead-letter queue.
        (spec,) = rule["Targets"]
        assert spec["DeadLetterConfig"] == {"Arn": _getatt("DeadLetterQueue")}
        assert spec["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    check_guardduty(stack, c)
    dlq_senders = resources["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allowed = [s for s in dlq_senders if s["Effect"] == "Allow"]
    rules = [name for name in ("ObjectCreatedRule", "GuardDutyFindingsRule") if name in resources]
    assert [s["Condition"] for s in allowed] == [{"ArnEquals": {"aws:SourceArn": _getatt(rule)}} for rule in rules]
    assert all(s["Principal"] == {"Service": "events.amazonaws.com"} for s in allowed)
    assert resources["DeadLetterQueue"]["DeletionPolicy"] == "Retain"
    assert resources["DeadLetterQueue"]["UpdateReplacePolicy"] == "Retain"
    if "ObjectCreatedRulePermission" in resources:
        permission = resources["ObjectCreatedRulePermission"]["Properties"]
        assert permission["Principal"] == "events.amazonaws.com"
        assert permission["SourceArn"] == _getatt("ObjectCreatedRule")
    for bucket in c.buckets:
        if f"S3NotificationFrom{_alnum(bucket)}" in resources:
            permission = resources[f"S3NotificationFrom{_alnum(bucket)}"]["Properties"]
            assert permission["Principal"] == "s3.amazonaws.com"
            assert permission["SourceArn"] == f"arn:aws:s3:::{bucket}"
            assert permission.get("SourceAccount") == (ACCOUNT if i.only_this_account else None)
    if "S3NotificationPermission" in resources:
        permission = resources["S3NotificationPermission"]["Properties"]
        assert (permission["Principal"], permission["SourceAccount"]) == ("s3.amazonaws.com", ACCOUNT)
        assert "SourceArn" not in permission

    if c.queued:
        queue = resources["Queue"]["Properties"]
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == _getatt("DeadLetterQueue")
        mapping = resources["QueueEventSource"]["Properties"]
        assert mapping["EventSourceArn"] == _getatt("Queue")
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        statements = resources["QueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
        others = [s for s in statements if s["Effect"] == "Allow" and s.get("Sid") != "GuardDutyFindingsRule"]
        senders = {s["Principal"]["Service"]: s for s in others}
        want = {"s3.amazonaws.com"} if c.delivery == "S3Notification" else set()
        want |= {"events.amazonaws.com"} if "ObjectCreatedRule" in resources else set()
        want |= {"sns.amazonaws.com"} if i.topic else set()
        assert set(senders) == want
        rules = [s["Condition"] for s in statements if s.get("Sid") == "GuardDutyFindingsRule"]
        assert rules == (
            [{"ArnEquals": {"aws:SourceArn": _getatt("GuardDutyFindingsRule")}}] if i.guardduty_severity else []
        )
        if "s3.amazonaws.com" in senders:
            if i.org:
                who: dict[str, Any] = {"aws:SourceOrgID": i.org}
            else:
                who = {"aws:SourceAccount": [ACCOUNT, *i.accounts] if i.accounts else ACCOUNT}
            condition: dict[str, Any] = {"StringEquals": who}
            if c.buckets:
                condition["ArnLike"] = {"aws:SourceArn": [f"arn:*:s3:::{b}" for b in c.buckets]}
            assert senders["s3.amazonaws.com"]["Condition"] == condition
        if "events.amazonaws.com" in senders:
            condition = {"ArnEquals": {"aws:SourceArn": _getatt("ObjectCreatedRule")}}
            assert senders["events.amazonaws.com"]["Condition"] == condition
        if "sns.amazonaws.com" in senders:
            assert senders["sns.amazonaws.com"]["Condition"] == {"ArnEquals": {"aws:SourceArn": i.topic}}

    for group in c.log_groups:
        # Each group may invoke the function; no other group of the account can.
        permission = resources[f"LogsPermission{_alnum(group)}"]["Properties"]
        assert permission["Principal"] == "logs.amazonaws.com"
        assert permission["SourceAccount"] == ACCOUNT
        assert permission["SourceArn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
        subscription = resources[f"Subscription{_alnum(group)}"]
        assert subscription["DependsOn"] == f"LogsPermission{_alnum(group)}"
        props = subscription["Properties"]
        assert props["LogGroupName"] == group
        assert props["DestinationArn"] == _getatt("ForwarderFunction")
        assert props["FilterPattern"] == ('{ $.kind = "Event" }' if c.audit_only else "")

    mappings = [resources[n]["Properties"] for n in resources if n.endswith("EventSource")]
    assert all(m["ScalingConfig"] == {"MaximumConcurrency": "10"} for m in mappings)
    if i.existing_queue:
        mapping = resources["ExistingQueueEventSource"]["Properties"]
        assert mapping["EventSourceArn"] == i.existing_queue
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    if i.security_lake_queue:
        mapping = resources["SecurityLakeQueueEventSource"]["Properties"]
        assert mapping["EventSourceArn"] == i.security_lake_queue
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    layers = {"Ref": "ParquetLayer"}
    assert function.get("Layers") == ([layers] if i.parquet else None)
    if i.parquet:
        layer = resources["ParquetLayer"]["Properties"]
        assert layer["ContentUri"] == "dist/parquet-layer-arm64.zip"
        assert (layer["CompatibleRuntimes"], layer["CompatibleArchitectures"]) == ([function["Runtime"]], ["arm64"])
    if i.topic:
        subscription = resources["CloudTrailTopicSubscription"]["Properties"]
        assert (subscription["TopicArn"], subscription["Region"]) == (i.topic, i.topic.split(":")[3])
        endpoint = _getatt("Queue") if c.queued else _getatt("ForwarderFunction")
        assert (subscription["Protocol"], subscription["Endpoint"]) == ("sqs" if c.queued else "lambda", endpoint)
        if not c.queued:
            permission = resources["CloudTrailTopicPermission"]["Properties"]
            assert (permission["Principal"], permission["SourceArn"]) == ("sns.amazonaws.com", i.topic)

    outputs = set(stack.outputs)
    assert ("QueueUrl" in outputs) == c.queued
    assert ("ApiKeySecretArn" in outputs) == (c.key == "value")
    assert {"FunctionArn", "FunctionName", "DeadLetterQueueUrl", "RoleArn"} <= outputs
    check_reliability(stack, c)


def check_guardduty(stack: Stack, c: Combo) -> None:
    """The findings rule: its severity floor a number in the pattern, delivered as new objects are."""
    resources = stack.resources
    if not c.inputs.guardduty_severity:
        return
    rule = resources["GuardDutyFindingsRule"]["Properties"]
    pattern = json.loads(rule["EventPattern"])
    assert pattern == {
        "source": ["aws.guardduty"],
        "detail-type": ["GuardDuty Finding"],
        "detail": {"severity": [{"numeric": [">=", float(c.inputs.guardduty_severity)]}]},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == (_getatt("Queue") if c.queued else _getatt("ForwarderFunction"))
    assert target["DeadLetterConfig"] == {"Arn": _getatt("DeadLetterQueue")}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    if not c.queued:
        permission = resources["GuardDutyFindingsRulePermission"]["Properties"]
        assert (permission["Principal"], permission["SourceArn"]) == (
            "events.amazonaws.com",
            _getatt("GuardDutyFindingsRule"),
        )


def check_reliability(stack: Stack, c: Combo) -> None:
    r = c.reliability
    resources, outputs = stack.resources, stack.outputs
    env = resources["ForwarderFunction"]["Properties"]["Environment"]["Variables"]
    assert env["DD_STORE_FAILED_EVENTS"] == str(r.store_on).lower()
    assert env.get("DD_S3_BUCKET_NAME") == (store_bucket_ref(r) if r.store_on else None)
    queue_url = {"Ref": "ContinuationQueue"} if r.continuation else None
    assert env.get("FORWARDER_CONTINUATION_QUEUE_URL") == queue_url
    assert env.get("FORWARDER_IDEMPOTENCY_TABLE") == ({"Ref": "IdempotencyTable"} if r.idempotency else None)
    assert ("FORWARDER_IDEMPOTENCY_EXPIRY_SECONDS" in env) == r.idempotency
    assert env.get("FORWARDER_STORE_PREFIX") == (f"failed-events/{STACK}/" if r.store_on else None)

    if r.store_on:
        assert outputs["FailedEventsStoreBucket"]["Value"] == store_bucket_ref(r)
    else:
        assert "FailedEventsStoreBucket" not in outputs
    if r.store == "created":
        bucket = resources["FailedEventsBucket"]
        assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
        )
        encryption = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert encryption == [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        (rule,) = props["LifecycleConfiguration"]["Rules"]
        assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", "30")
        assert "Prefix" not in rule and "Filter" not in rule, "the whole bucket expires"
        policy = resources["FailedEventsBucketPolicy"]["Properties"]
        assert policy["Bucket"] == {"Ref": "FailedEventsBucket"}
        (deny,) = policy["PolicyDocument"]["Statement"]
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
        assert deny["Resource"] == [_getatt("FailedEventsBucket"), {"Fn::Sub": "${FailedEventsBucket.Arn}/*"}]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    if r.scheduled:
        rule = resources["ReplayScheduleRule"]
        assert rule["Properties"]["ScheduleExpression"] == r.schedule
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == _getatt("ForwarderFunction")
        assert json.loads(target["Input"]) == {"retry": True}
        permission = resources["ReplaySchedulePermission"]["Properties"]
        assert (permission["Principal"], permission["SourceArn"]) == (
            "events.amazonaws.com",
            _getatt("ReplayScheduleRule"),
        )
        assert permission["FunctionName"] == {"Ref": "ForwarderFunction"}

    if r.continuation:
        queue = resources["ContinuationQueue"]["Properties"]
        assert queue["RedrivePolicy"] == {"deadLetterTargetArn": _getatt("DeadLetterQueue"), "maxReceiveCount": 5}
        assert queue["VisibilityTimeout"] == {"Fn::FindInMap": ["QueueVisibility", "300", "Seconds"]}
        assert queue["SqsManagedSseEnabled"] is True
        mapping = resources["ContinuationEventSource"]["Properties"]
        assert mapping["EventSourceArn"] == _getatt("ContinuationQueue")
        assert mapping["FunctionName"] == {"Ref": "ForwarderFunction"}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BatchSize"] == 1
        (deny,) = resources["ContinuationQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
        assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
        assert outputs["ContinuationQueueUrl"]["Value"] == {"Ref": "ContinuationQueue"}
    else:
        assert "ContinuationQueueUrl" not in outputs

    if r.idempotency:
        table = resources["IdempotencyTable"]["Properties"]
        assert table["KeySchema"] == [{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "KeyType": "HASH"}]
        assert table["AttributeDefinitions"] == [{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "AttributeType": "S"}]
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["TimeToLiveSpecification"] == {"AttributeName": POWERTOOLS_EXPIRY_ATTRIBUTE, "Enabled": True}
        assert table["SSESpecification"] == {"SSEEnabled": True}
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": False}
        assert outputs["IdempotencyTableName"]["Value"] == {"Ref": "IdempotencyTable"}
    else:
        assert "IdempotencyTableName" not in outputs


BASE_COMBOS = [
    Combo(*values)
    for values in itertools.product(
        [(), ("org-trail-logs",), ("org-trail-logs", "eks-audit.archive")],
        ["EventBridge", "S3Notification", "None"],
        [True, False],
        [(), ("/aws/eks/prod/cluster",), ("/aws/eks/prod/cluster", "/aws/eks/staging/cluster")],
        [True, False],
        sorted(KEY_SOURCES),
        [(), (KMS_KEY,)],
    )
]
RELIABILITY = [
    Reliability(*values)
    for values in itertools.product(
        ["off", "off-named", "created", "existing"], ["", "rate(1 hour)"], [True, False], [True, False]
    )
]
# The reliability options touch the role, the function's environment and their own resources,
# never the sources' wiring: each of their combinations is crossed with a few bases that differ
# in everything they could meet (queue or not, KMS keys or not, each key source, buckets or not).
REPRESENTATIVE_BASES = [
    Combo((), "None", False, (), False, "value", ()),
    Combo(("org-trail-logs",), "EventBridge", True, (), False, "secret", (KMS_KEY,)),
    Combo(
        ("org-trail-logs", "eks-audit.archive"), "S3Notification", False, ("/aws/eks/prod/cluster",), True, "ssm", ()
    ),
    Combo(("org-trail-logs",), "EventBridge", False, ("/aws/eks/prod/cluster",), False, "value", (KMS_KEY,)),
    Combo((), "S3Notification", True, (), False, "ssm", (KMS_KEY,)),
]
INPUTS = [
    Inputs(read_any=True),
    Inputs(accounts=(LOG_ARCHIVE,), prefix="AWSLogs/"),
    Inputs(accounts=(LOG_ARCHIVE, "333344445555"), topic=TRAIL_TOPIC),
    Inputs(org=ORG_ID, existing_queue=EXISTING_QUEUE, topic=TRAIL_TOPIC, function_name="org-forwarder"),
    Inputs(guardduty_severity="7"),
    Inputs(guardduty_severity="0", security_lake_queue=SECURITY_LAKE_QUEUE, parquet=True),
    Inputs(existing_queue=EXISTING_QUEUE, security_lake_queue=SECURITY_LAKE_QUEUE, guardduty_severity="8.5"),
]
# The input options meet the sources' wiring and the store's prefix: each is crossed with every
# representative base (reading any bucket only where no bucket is named: the Rules refuse both).
INPUT_COMBOS = [
    dataclasses.replace(base, rel=rel, ins=ins)
    for base in REPRESENTATIVE_BASES
    for ins in INPUTS
    for rel in (None, Reliability("created"), Reliability("existing"))
    if not (ins.read_any and base.buckets)
]
COMBOS = (
    BASE_COMBOS
    + [dataclasses.replace(base, rel=rel) for base in REPRESENTATIVE_BASES for rel in RELIABILITY]
    + INPUT_COMBOS
)


def test_each_combination_gets_exactly_its_wiring_and_grants(template):
    failures = []
    for combo in COMBOS:
        try:
            check_wiring(Stack(template, combo.overrides()), combo)
        except AssertionError as exc:
            failures.append(f"{combo}: {exc}")
    assert not failures, f"{len(failures)} of {len(COMBOS)} combinations wrong, first:\n" + "\n".join(failures[:3])


def test_no_grant_uses_a_wildcard_action_or_a_bare_star(template):
    for combo in BASE_COMBOS[:: len(BASE_COMBOS) // 20] + COMBOS[len(BASE_COMBOS) :]:
        for action, resource in grants(Stack(template, combo.overrides())):
            assert "*" not in action
            assert resource != "*", f"{combo}: {action} on *"


def test_the_reliability_defaults(template):
    """Continuation and idempotency on, the store off (with an hourly replay once it is turned on)."""
    assert Reliability().overrides() == {
        name: template["Parameters"][name]["Default"] for name in Reliability().overrides()
    }
    assert Stack(template, KEY_SOURCES["value"]).values["FailedEventsExpirationDays"] == "30"


def test_the_store_bucket_cannot_be_a_source(template):
    def passes(buckets: str, store: str) -> bool:
        overrides = {**KEY_SOURCES["value"], "S3BucketNames": buckets, "FailedEventsBucketName": store}
        return Stack(template, {**overrides, "StoreFailedEvents": "true"}).rules_pass(template)

    assert passes("", "")
    assert passes("org-trail-logs", "")
    assert passes("org-trail-logs", STORE_BUCKET)
    assert not passes(f"org-trail-logs,{STORE_BUCKET}", STORE_BUCKET)
    assert not passes(STORE_BUCKET, STORE_BUCKET)


@pytest.mark.parametrize(("days", "expiry"), [("7", "3600"), ("365", "")])
def test_store_expiration_and_idempotency_expiry_come_from_their_parameters(template, days, expiry):
    overrides = {"StoreFailedEvents": "true", "FailedEventsExpirationDays": days, "IdempotencyExpirySeconds": expiry}
    stack = Stack(template, {**KEY_SOURCES["value"], **overrides})
    (rule,) = stack.resources["FailedEventsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == days
    env = stack.resources["ForwarderFunction"]["Properties"]["Environment"]["Variables"]
    assert env["FORWARDER_IDEMPOTENCY_EXPIRY_SECONDS"] == expiry


@pytest.mark.parametrize("timeout", ["60", "900"])
def test_continuation_visibility_follows_the_timeout(template, timeout):
    stack = Stack(template, {**KEY_SOURCES["value"], "Timeout": timeout})
    visibility = stack.resources["ContinuationQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility == {"Fn::FindInMap": ["QueueVisibility", timeout, "Seconds"]}
    assert template["Mappings"]["QueueVisibility"][timeout]["Seconds"] == 6 * int(timeout)


def test_reading_any_bucket_is_an_opt_in_apart_from_named_buckets(template):
    def passes(buckets: str, read_any: str) -> bool:
        overrides = {**KEY_SOURCES["value"], "S3BucketNames": buckets, "ReadAnyBucket": read_any}
        return Stack(template, overrides).rules_pass(template)

    assert template["Parameters"]["ReadAnyBucket"]["Default"] == "false"
    assert passes("", "false") and passes("", "true") and passes("org-trail-logs", "false")
    assert not passes("org-trail-logs", "true")


def test_the_api_key_source_must_be_exactly_one(template):
    assert not Stack(template, {}).rules_pass(template)
    for name, overrides in KEY_SOURCES.items():
        assert Stack(template, overrides).rules_pass(template), name
    for a, b in itertools.combinations(KEY_SOURCES.values(), 2):
        assert not Stack(template, {**a, **b}).rules_pass(template)


@pytest.mark.parametrize("timeout", [60, 120, 180, 300, 600, 900])
def test_queue_visibility_is_six_times_the_timeout(template, timeout):
    allowed = template["Parameters"]["Timeout"]["AllowedValues"]
    # Strings, as CloudFormation passes every value: SAM CLI's local Fn::FindInMap needs str keys.
    assert str(timeout) in allowed
    assert isinstance(template["Parameters"]["Timeout"]["Default"], str)
    mapping = template["Mappings"]["QueueVisibility"]
    assert sorted(mapping, key=int) == sorted(allowed, key=int)
    assert mapping[str(timeout)]["Seconds"] == 6 * timeout


@pytest.mark.parametrize(("reserved", "expected"), [("-1", None), ("0", "0"), ("25", "25")])
def test_reserved_concurrency_only_when_asked(template, reserved, expected):
    stack = Stack(template, {**KEY_SOURCES["value"], "ReservedConcurrency": reserved})
    assert stack.resources["ForwarderFunction"]["Properties"].get("ReservedConcurrentExecutions") == expected


def _alarms(stack: Stack) -> dict[str, dict[str, Any]]:
    return {name: body["Properties"] for name, body in stack.of_type("AWS::CloudWatch::Alarm").items()}


def _metric_stats(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A metric math alarm's inputs by id."""
    return {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}


@pytest.mark.parametrize("topic", ["", f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts"])
def test_alarms_watch_the_function_the_queues_and_the_outcomes(template, topic):
    overrides = {"S3BucketNames": "org-trail-logs", "StoreFailedEvents": "true", "ExistingQueueArn": EXISTING_QUEUE}
    stack = Stack(template, {**KEY_SOURCES["value"], **overrides, "AlarmTopicArn": topic})
    alarms = _alarms(stack)
    assert set(alarms) == {
        *("ErrorsAlarm", "ThrottlesAlarm", "DeadLetterQueueAlarm", "EventsFailedAlarm", "InputErrorsAlarm"),
        *("EventsStoredAlarm", "NothingDeliveredAlarm", "RuleFailedInvocationsAlarm"),
        *("QueueAgeAlarm", "ContinuationQueueAgeAlarm", "ExistingQueueAgeAlarm", "LagAlarm"),
    }
    function = {"Ref": "ForwarderFunction"}
    lag = alarms["LagAlarm"]
    assert (lag["Namespace"], lag["MetricName"], lag["Statistic"]) == ("SecurityLogForwarder", "LagMax", "Maximum")
    assert lag["Dimensions"] == [{"Name": "service", "Value": function}]
    assert (lag["Threshold"], lag["ComparisonOperator"]) == ("3600", "GreaterThanThreshold")
    assert alarms["ErrorsAlarm"]["Dimensions"] == [{"Name": "FunctionName", "Value": function}]
    assert alarms["ThrottlesAlarm"]["Dimensions"] == [{"Name": "FunctionName", "Value": function}]
    dlq = alarms["DeadLetterQueueAlarm"]
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": _getatt("DeadLetterQueue", "QueueName")}]
    # Powertools Metrics (forwarder/metrics.py) publishes with service = the function's name.
    for metric in ("EventsFailed", "InputErrors", "EventsStored"):
        alarm = alarms[f"{metric}Alarm"]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("SecurityLogForwarder", metric)
        assert alarm["Dimensions"] == [{"Name": "service", "Value": function}]
        assert (alarm["Statistic"], alarm["Threshold"]) == ("Sum", 1)
    queues = {
        "QueueAgeAlarm": _getatt("Queue", "QueueName"),
        "ContinuationQueueAgeAlarm": _getatt("ContinuationQueue", "QueueName"),
        "ExistingQueueAgeAlarm": "org-trail-notifications",
    }
    for name, queue in queues.items():
        alarm = alarms[name]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue}]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == ("900", "GreaterThanThreshold")
    stuck = alarms["NothingDeliveredAlarm"]
    inputs = _metric_stats(stuck)
    assert {stat["Metric"]["MetricName"] for stat in inputs.values()} == {
        "EventsRead",
        "EventsDelivered",
        "EventsTruncated",
        "EventsFiltered",
    }
    for stat in inputs.values():
        assert stat["Metric"]["Namespace"] == "SecurityLogForwarder"
        assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": function}]
        assert (stat["Period"], stat["Stat"]) == ("1800", "Sum")
    rule = _metric_stats(alarms["RuleFailedInvocationsAlarm"])
    assert {stat["Metric"]["MetricName"] for stat in rule.values()} == {
        "FailedInvocations",
        "InvocationsSentToDlq",
        "InvocationsFailedToBeSentToDlq",
    }
    rule_name = [{"Name": "RuleName", "Value": {"Ref": "ObjectCreatedRule"}}]
    assert all(stat["Metric"]["Dimensions"] == rule_name for stat in rule.values())
    for alarm in alarms.values():
        assert alarm.get("AlarmActions") == ([topic] if topic else None)
        assert alarm["TreatMissingData"] == "notBreaching"


# (read, delivered, truncated, filtered) sums in one period -> whether NothingDelivered fires.
NOTHING_DELIVERED_CASES = [
    ((0, 0, 0, 0), False),
    ((None, None, None, None), False),
    ((120, 0, 0, 0), True),
    ((120, 119, 1, 0), False),
    ((120, 0, 2, 0), False),
    ((120, 0, 0, 120), False),
    ((5, None, None, None), True),
]


def _metric_math(expression: str, values: dict[str, float | None]) -> float:
    """CloudWatch's metric math for the few functions NothingDelivered uses: FILL, IF, AND, ==, >, +."""
    text = re.sub(r"FILL\((\w+), 0\)", lambda m: f"({values[m.group(1)] or 0})", expression)
    text = re.sub(r"\bAND\b", " and ", text)
    match = re.fullmatch(r"IF\(([0-9()+=> and]+), 1, 0\)", text)
    assert match, f"not the expression this evaluator knows: {expression}"
    # Only digits, parentheses, +, ==, > and `and` are left: Python reads them as metric math does.
    return 1.0 if eval(match.group(1), {"__builtins__": {}}) else 0.0


@pytest.mark.parametrize(("sums", "fires"), NOTHING_DELIVERED_CASES)
def test_nothing_delivered_fires_only_when_events_were_read_and_none_got_through(template, sums, fires):
    alarm = _alarms(Stack(template, KEY_SOURCES["value"]))["NothingDeliveredAlarm"]
    (expression,) = [m["Expression"] for m in alarm["Metrics"] if m.get("ReturnData")]
    ids = {stat["Metric"]["MetricName"]: mid for mid, stat in _metric_stats(alarm).items()}
    names = ("EventsRead", "EventsDelivered", "EventsTruncated", "EventsFiltered")
    values = {ids[name]: value for name, value in zip(names, sums, strict=True)}
    assert (_metric_math(expression, values) >= alarm["Threshold"]) == fires


@pytest.mark.parametrize(
    ("overrides", "path", "boundary", "level"),
    [
        ({}, "/", None, "INFO"),
        (
            {
                "RolePath": "/security/forwarders/",
                "PermissionsBoundaryArn": f"arn:aws:iam::{ACCOUNT}:policy/boundary",
                "LogLevel": "WARNING",
            },
            "/security/forwarders/",
            f"arn:aws:iam::{ACCOUNT}:policy/boundary",
            "WARNING",
        ),
    ],
)
def test_role_path_boundary_and_log_level_are_the_organisation_s(template, overrides, path, boundary, level):
    stack = Stack(template, {**KEY_SOURCES["value"], **overrides})
    role = stack.resources["ForwarderRole"]["Properties"]
    assert (role["Path"], role.get("PermissionsBoundary")) == (path, boundary)
    env = stack.resources["ForwarderFunction"]["Properties"]["Environment"]["Variables"]
    assert env["POWERTOOLS_LOG_LEVEL"] == level


VPC = {"VpcSubnetIds": "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788", "VpcSecurityGroupIds": "sg-0a1b2c3d"}
NETWORK_INTERFACES = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


def test_in_a_vpc_the_role_may_manage_network_interfaces_and_nothing_more(template):
    outside = Stack(template, KEY_SOURCES["value"])
    inside = Stack(template, {**KEY_SOURCES["value"], **VPC})
    assert "VpcConfig" not in outside.resources["ForwarderFunction"]["Properties"]
    assert inside.resources["ForwarderFunction"]["Properties"]["VpcConfig"] == {
        "SubnetIds": ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"],
        "SecurityGroupIds": ["sg-0a1b2c3d"],
    }
    # EC2 has no narrower resource for these; they are the only grants on "*", and only in a VPC.
    assert grants(inside) - grants(outside) == {(action, "*") for action in NETWORK_INTERFACES}


def test_a_vpc_needs_subnets_and_security_groups_together(template):
    def passes(overrides: dict[str, str]) -> bool:
        return Stack(template, {**KEY_SOURCES["value"], **overrides}).rules_pass(template)

    assert passes({}) and passes(VPC)
    assert not passes({"VpcSubnetIds": VPC["VpcSubnetIds"]})
    assert not passes({"VpcSecurityGroupIds": VPC["VpcSecurityGroupIds"]})


PROXY = "http://proxy.internal:3128"


@pytest.mark.parametrize(("proxy", "no_proxy"), [("", ""), (PROXY, ""), (PROXY, ".amazonaws.com")])
def test_the_proxy_is_set_only_when_given(template, proxy, no_proxy):
    stack = Stack(template, {**KEY_SOURCES["value"], "HttpsProxy": proxy, "NoProxy": no_proxy})
    env = stack.resources["ForwarderFunction"]["Properties"]["Environment"]["Variables"]
    assert (env.get("HTTPS_PROXY"), env.get("NO_PROXY")) == (proxy or None, no_proxy or None)


def test_an_eks_only_stack_has_no_queue_and_reads_no_bucket(template):
    stack = Stack(template, {**KEY_SOURCES["value"], "S3Delivery": "None", "LogGroupNames": "/aws/eks/prod/cluster"})
    assert not {"Queue", "QueueEventSource", "QueueAgeAlarm", "ObjectCreatedRule"} & set(stack.resources)
    assert not [action for action, _ in grants(stack) if action.startswith("s3:")]


def test_function_defaults(template):
    props = Stack(template, KEY_SOURCES["value"]).resources["ForwarderFunction"]["Properties"]
    assert props["Architectures"] == ["arm64"]
    assert (props["MemorySize"], props["Timeout"]) == ("512", "300")
    assert props["CodeUri"] == "dist/forwarder-arm64.zip"
    assert props["FunctionName"] == STACK
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "ForwarderLogGroup"}}
    assert props["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": _getatt("DeadLetterQueue")}


# --- every setting the code reads is wired or documented -----------------------------------------

_ENV_READS = (
    r'\benv(?:iron)?\.get\(\s*"([A-Z][A-Z0-9_]+)"',
    r'\benviron\[\s*"([A-Z][A-Z0-9_]+)"\s*\]',
    r'\bgetenv\(\s*"([A-Z][A-Z0-9_]+)"',
    r'\b_?(?:flag|number|integer|pattern|choice)\(\s*env\s*,\s*"([A-Z][A-Z0-9_]+)"',
)


def variables_the_code_reads() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "forwarder").rglob("*.py"):
        text = path.read_text()
        for pattern in _ENV_READS:
            names |= set(re.findall(pattern, text))
    return names


def documented(section: str) -> set[str]:
    """Backticked names in the docs/deploy.md section whose heading is `section`."""
    text = DOCS.read_text()
    match = re.search(rf"^#+ {re.escape(section)}\n(.*?)(?=^#)", text + "\n#", re.M | re.S)
    assert match, f"docs/deploy.md has no section {section!r}"
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", match.group(1)))


def test_every_variable_the_code_reads_is_wired_or_documented(template):
    read = variables_the_code_reads()
    assert {"DD_SITE", "DD_API_KEY_SECRET_ARN", "FORWARDER_READ_CHUNK_BYTES"} <= read, "the regexes still match"
    wired = set(template["Resources"]["ForwarderFunction"]["Properties"]["Environment"]["Variables"])
    internal = documented("Internal variables")
    missing = read - wired - internal
    assert not missing, f"read by forwarder/ but neither in template.yaml nor in docs/deploy.md: {sorted(missing)}"
    assert not (wired & internal), "a wired variable is also listed as internal"
    assert "Not wired yet" not in DOCS.read_text(), "every variable is wired or internal: no third list"


def test_every_parameter_is_documented(template):
    text = DOCS.read_text()
    undocumented = [name for name in template["Parameters"] if f"`{name}`" not in text]
    assert not undocumented, f"docs/deploy.md does not mention: {undocumented}"


def parameters_behind(node: Any, conditions: dict[str, Any]) -> set[str]:
    """Names a value refers to: its Refs and those of the conditions its Fn::If depend on."""
    names: set[str] = set()
    if isinstance(node, list):
        for item in node:
            names |= parameters_behind(item, conditions)
    elif isinstance(node, dict):
        for key, child in node.items():
            if key == "Ref":
                names.add(child)
            elif key == "Condition" and isinstance(child, str):
                names |= parameters_behind(conditions[child], conditions)
            elif key == "Fn::If":
                names |= parameters_behind(conditions[child[0]], conditions)
                names |= parameters_behind(child[1:], conditions)
            else:
                names |= parameters_behind(child, conditions)
    return names


def test_the_environment_table_matches_the_template(template):
    """docs/deploy.md's variable/parameter table says what the template does."""
    variables = template["Resources"]["ForwarderFunction"]["Properties"]["Environment"]["Variables"]
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| `([A-Za-z0-9]+)`", DOCS.read_text(), re.M)
    assert rows, "no `VARIABLE` | `Parameter` rows found"
    for variable, parameter in rows:
        assert parameter in template["Parameters"], f"{parameter} is not a parameter"
        behind = parameters_behind(variables[variable], template["Conditions"])
        assert parameter in behind, f"{variable} is not set from {parameter} (only from {sorted(behind)})"
    assert {v for v, _ in rows} >= {v for v, body in variables.items() if isinstance(body, dict)}


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_the_code_uri_is_the_zip_built_for_the_architecture(template, arch):
    """`make package` writes dist/forwarder-<arch>.zip for each; the function takes its own."""
    makefile = (ROOT / "Makefile").read_text()
    assert "ARCHS ?= arm64 x86_64" in makefile
    assert "--arch $$arch --output dist/forwarder-$$arch.zip" in makefile
    assert template["Parameters"]["Architecture"]["AllowedValues"] == ["arm64", "x86_64"]
    props = Stack(template, {**KEY_SOURCES["value"], "Architecture": arch}).resources["ForwarderFunction"]["Properties"]
    assert (props["CodeUri"], props["Architectures"]) == (f"dist/forwarder-{arch}.zip", [arch])


PUBLISHED = {
    *re.findall(r'add_metric\(name="(\w+)"', (TEMPLATE_PATH.parent / "forwarder" / "metrics.py").read_text()),
    *(f"Events{outcome.value.title()}" for outcome in Outcome),
}
"""Metric names forwarder/metrics.py `publish` emits: those it names, and one per outcome."""


def test_the_dashboard_shows_only_metrics_the_forwarder_emits_and_can_be_left_out(template):
    stack = Stack(template, KEY_SOURCES["value"])
    body = stack.resources["Dashboard"]["Properties"]["DashboardBody"]
    text = body["Fn::Sub"][0]
    assert body["Fn::Sub"][1] == {"Service": {"Ref": "ForwarderFunction"}}
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "0", text))["widgets"]
    named = {row[1] for widget in widgets for row in widget["properties"]["metrics"] if isinstance(row[0], str)}
    assert named - {"Invocations", "Errors", "Throttles", "Duration"} <= PUBLISHED
    assert {"LagMax", "EventsDelivered", "Requests", "BytesIn", "EventsScrubbed", "EventsUnmappable"} <= named
    assert {"EventsRead", "EventsFailed", "InputErrors"} <= PUBLISHED, "the pattern still finds them"
    assert "Dashboard" not in Stack(template, {**KEY_SOURCES["value"], "CreateDashboard": "false"}).resources
