"""Which source a container's events belong to: one ordered table of rules, the first match decides.

A rule looks at what is known of a container (an S3 key and bucket, or a log group and stream, and
the content: an S3 object's sniffed format, whether a log batch's first message is a CloudTrail
record) and names the source (name, tags, time fields, the layout of its text lines) or a skip with
its reason. Adding a source is a row here and a fixture test.

A CloudTrail file is recognised by its key (`AWSLogs/<account>/CloudTrail/...`) or by its content
(a `{"Records": [...]}` document), so re-prefixed or copied trail objects are labelled right too.
EKS control-plane log groups are told apart by log-stream prefix, audit first because
`kube-apiserver-audit-` also starts with `kube-apiserver-`. A CloudWatch group is a trail's when its
streams are named `<account>_CloudTrail_<region>`, the console named it `aws-cloudtrail-logs-*`, or
its messages are CloudTrail records: a word in a group's name proves nothing. A Kubernetes audit
file in S3 is recognised by its content, whatever its key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from forwarder.formats import Format
from forwarder.formats.inline import ENVELOPE_TIME, Shape, TimePath
from forwarder.model import EventBridgeEvent, LogBatch, S3Object, Skip, SkipReason, Source
from forwarder.regex import Regex
from forwarder.settings import Settings
from forwarder.times import AUDIT_TIME_FIELDS, TIME_FIELDS, TimeFormat

CLOUDTRAIL = "cloudtrail"


_EKS_GROUP = Regex(r"^/aws/eks/(?P<cluster>[^/]+)/cluster$")
_EKS_TAGS = ("kube_cluster_name:{cluster}",)


class Seen(msgspec.Struct, frozen=True):
    """What is known of a container when its source is chosen. `content` is None until sniffed."""

    bucket: str = ""
    key: str = ""
    log_group: str = ""
    log_stream: str = ""
    content: Format | None = None

    @classmethod
    def of_object(cls, obj: S3Object, content: Format | None = None) -> Seen:
        return cls(bucket=obj.bucket, key=obj.key, content=content)

    @classmethod
    def of_log_batch(cls, batch: LogBatch) -> Seen:
        """A batch's content is CLOUDTRAIL when its first message is a CloudTrail record, else LINES."""
        first = batch.log_events[0].message if batch.log_events else ""
        content = Format.CLOUDTRAIL if _cloudtrail_record(first) else Format.LINES
        return cls(log_group=batch.log_group, log_stream=batch.log_stream, content=content)

    @property
    def host(self) -> str:
        return self.bucket or self.log_group


class Rule(msgspec.Struct, frozen=True):
    """One row: every matcher given must hold. Regex matchers' named groups fill the `tags` templates."""

    name: str
    key: Regex | None = None
    content: Format | None = None
    group: Regex | None = None
    stream: Regex | None = None
    skip: SkipReason | None = None
    tags: tuple[str, ...] = ()
    time_fields: tuple[str, ...] = TIME_FIELDS
    line_format: TimeFormat | None = None
    cluster_from_key: bool = False
    """Whether FORWARDER_K8S_CLUSTER_KEY_PATTERN names the cluster (`kube_cluster_name`) from the key."""

    def needs_content(self, seen: Seen) -> bool:
        return self.content is not None and seen.content is None

    def match(self, seen: Seen) -> dict[str, str] | None:
        """The named groups the matchers captured, or None when the rule does not apply."""
        captured: dict[str, str] = {}
        if self.content is not None and seen.content is not self.content:
            return None
        for pattern, text in ((self.key, seen.key), (self.group, seen.log_group), (self.stream, seen.log_stream)):
            if pattern is None:
                continue
            found = pattern.search(text)
            if found is None:
                return None
            captured.update(found.groupdict())
        return captured


def _prefix(text: str) -> Regex:
    return Regex("^" + re.escape(text))


def _within(*words: str) -> Regex:
    """Any of `words` anywhere, in any case: the Datadog Forwarder's test on a lower-cased key or group."""
    return Regex("|".join(re.escape(word) for word in words), re.IGNORECASE)


def _cloudtrail_record(message: str) -> bool:
    """A CloudWatch message that is a CloudTrail record (CloudTrail writes `eventVersion` first); one
    look per batch, whatever its group or stream is called."""
    if not message.startswith('{"eventVersion"'):
        return False
    try:
        record = orjson.loads(message)
    except orjson.JSONDecodeError:
        return False
    return isinstance(record, dict) and all(name in record for name in ("eventSource", "eventName", "eventTime"))


# AWS services' logs, under the Datadog Forwarder's source names (its last full table, 3.133.0) so
# Datadog's integration pipelines apply; README "Sources" has a row and a tested sample for each.
_WAF_TIMES = ("timestamp",)
_FIREWALL_TIMES = ("event_timestamp",)
_RESOLVER_TIMES = ("query_timestamp",)
_FINDING_TIMES = ("updatedAt", "createdAt")
_STATES_TIMES = ("event_timestamp",)
_RDS_GROUP = r"^/aws/rds/(?:instance|cluster)/[^/]+/(?P<logname>[^/]+)"

AWS_S3_RULES = (
    Rule("waf", key=_within("aws-waf-logs", "waflogs"), time_fields=_WAF_TIMES),
    Rule("guardduty", key=Regex(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]+/)?\d{12}/GuardDuty/"), time_fields=_FINDING_TIMES),
    Rule("cloudfront", key=_within("cloudfront"), line_format=TimeFormat.CLOUDFRONT),
    Rule("cloudfront", key=Regex(r"(?:^|/)E[A-Z0-9]{5,}\.\d{4}-\d\d-\d\d-\d\d\.[0-9a-f]+(?:\.gz)?$"),
         line_format=TimeFormat.CLOUDFRONT),
    Rule("elb", key=_within("elasticloadbalancing"), line_format=TimeFormat.ELB),
    Rule("network-firewall", key=_within("network-firewall"), time_fields=_FIREWALL_TIMES),
    Rule("route53", key=_within("vpcdnsquerylogs"), time_fields=_RESOLVER_TIMES),
    Rule("vpc", key=_within("vpcflowlogs"), line_format=TimeFormat.VPC_FLOW),
    Rule("s3", key=Regex(r"(?:^|/)\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-[0-9A-F]{16}$"),
         line_format=TimeFormat.S3_ACCESS),
)  # fmt: skip
"""S3 objects by key (the Datadog Forwarder's keywords, in its order), but GuardDuty exports, which it
labelled `s3`, and S3 server access logs, recognised by their key's time and 16-hex suffix."""

AWS_LOG_GROUP_RULES = (
    Rule("lambda", group=_prefix("/aws/lambda/")),
    Rule("apigateway", group=Regex(r"^(?:api-gateway|/aws/api-gateway|/aws/http-api|/aws/apigateway)", re.I)),
    *(Rule(engine, group=Regex(rf"(?i)(?=.*{engine})" + _RDS_GROUP), tags=("logname:{logname}",))
      for engine in ("mariadb", "mysql", "postgresql")),
    Rule("rds", group=Regex(_RDS_GROUP, re.I), tags=("logname:{logname}",)),
    Rule("stepfunction", stream=_prefix("states/"), time_fields=_STATES_TIMES),
    Rule("stepfunction", group=_prefix("/aws/vendedlogs/states"), time_fields=_STATES_TIMES),
    Rule(CLOUDTRAIL, stream=Regex(r"^\d{12}_CloudTrail_[a-z0-9-]+")),
    Rule(CLOUDTRAIL, group=_prefix("aws-cloudtrail-logs-")),
    Rule("network-firewall", group=_within("network-firewall"), time_fields=_FIREWALL_TIMES),
    Rule("route53", group=_within("route53"), time_fields=_RESOLVER_TIMES),
    Rule("vpc", group=_within("vpc"), line_format=TimeFormat.VPC_FLOW),
)  # fmt: skip
"""Log groups by name (the Datadog Forwarder's prefixes, stream tests and words, in its order)."""

# Amazon Security Lake: `aws/<source name>/<version>/region=<region>/accountId=<account>/...`, Parquet of
# OCSF rows (the preview had no version segment). The source name says what the rows are; OCSF's `time`
# is epoch milliseconds, which the Parquet reader gives each event, so no text time field is looked for.
SECURITY_LAKE_SOURCES = {
    "EKS_AUDIT": "kubernetes.audit",
    "CLOUD_TRAIL_MGMT": CLOUDTRAIL,
    "CLOUD_TRAIL": CLOUDTRAIL,
    "LAMBDA_EXECUTION": "lambda",
    "S3_DATA": "s3",
    "VPC_FLOW": "vpc",
    "ROUTE53": "route53",
    "SH_FINDINGS": "securityhub",
    "WAF": "waf",
}
_SECURITY_LAKE_TAGS = ("aws_account:{account}", "region:{region}")


def _security_lake_key(name: str) -> Regex:
    return Regex(
        rf"(?:^|/)aws/{name}/(?:\d+\.\d+/)?region=(?P<region>[a-z0-9-]+)/accountId=(?P<account>[A-Za-z0-9_-]+)/",
        needle=f"aws/{name}/",
    )


SECURITY_LAKE_RULES = tuple(
    Rule(source, key=_security_lake_key(name), tags=_SECURITY_LAKE_TAGS, time_fields=())
    for name, source in SECURITY_LAKE_SOURCES.items()
)

S3_RULES = (
    *SECURITY_LAKE_RULES,
    Rule("cloudtrail_digest",
         key=Regex(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]+/)?\d{12}/CloudTrail-Digest/", needle="/CloudTrail-Digest/"),
         skip=SkipReason.CLOUDTRAIL_DIGEST),
    Rule("cloudtrail_digest", content=Format.DIGEST, skip=SkipReason.CLOUDTRAIL_DIGEST),
    Rule(CLOUDTRAIL, content=Format.CLOUDTRAIL),
    Rule(CLOUDTRAIL, key=Regex(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]+/)?\d{12}/CloudTrail(?:-Insight)?/")),
    Rule("kubernetes.audit", content=Format.K8S_AUDIT, time_fields=AUDIT_TIME_FIELDS, cluster_from_key=True),
    *AWS_S3_RULES,
    Rule("s3"),
)  # fmt: skip

LOG_GROUP_RULES = (
    Rule(CLOUDTRAIL, content=Format.CLOUDTRAIL),
    *(
        Rule(name, group=_EKS_GROUP, stream=_prefix(prefix), tags=_EKS_TAGS,
             time_fields=AUDIT_TIME_FIELDS if name == "kubernetes.audit" else TIME_FIELDS)
        for prefix, name in (
            ("kube-apiserver-audit-", "kubernetes.audit"),
            ("kube-apiserver-", "kube-apiserver"),
            ("authenticator-", "aws-iam-authenticator"),
            ("kube-controller-manager-", "kube-controller-manager"),
            ("kube-scheduler-", "kube-scheduler"),
            ("cloud-controller-manager-", "cloud-controller-manager"),
        )
    ),
    Rule("eks", group=_EKS_GROUP, tags=_EKS_TAGS),
    *AWS_LOG_GROUP_RULES,
    Rule("cloudwatch"),
)  # fmt: skip


def for_object(obj: S3Object, settings: Settings, content: Format | None = None) -> Source | Skip | None:
    """An S3 object's source or skip; None when the first rule that could apply needs its content sniffed."""
    return _resolve(S3_RULES, Seen.of_object(obj, content), settings, obj.origin)


def for_log_batch(batch: LogBatch, settings: Settings) -> Source | Skip:
    """A CloudWatch Logs batch's source, by its log group and, for EKS, its log stream."""
    found = _resolve(LOG_GROUP_RULES, Seen.of_log_batch(batch), settings, batch.origin)
    assert found is not None, "no log group rule needs content"
    return found


def _resolve(rules: tuple[Rule, ...], seen: Seen, settings: Settings, origin: str) -> Source | Skip | None:
    for rule in rules:
        if rule.needs_content(seen):
            return None
        captured = rule.match(seen)
        if captured is None:
            continue
        if rule.skip is not None:
            return Skip(rule.skip, origin)
        name = settings.source_override or rule.name
        tags = tuple(template.format(**captured) for template in rule.tags)
        if rule.cluster_from_key:
            tags += _cluster_from_key(seen.key, settings)
        return Source(name, _service(settings) or name, seen.host, tags, rule.time_fields, rule.line_format)
    raise AssertionError("the last rule of each table matches everything")


def _cluster_from_key(key: str, settings: Settings) -> tuple[str, ...]:
    """`kube_cluster_name` from FORWARDER_K8S_CLUSTER_KEY_PATTERN's `cluster` group, when the key matches."""
    pattern = settings.k8s_cluster_key_pattern
    found = pattern.search(key) if pattern is not None else None
    return _tag("kube_cluster_name", found.group("cluster")) if found is not None else ()


def _service(settings: Settings) -> str:
    """A `service:` tag in DD_TAGS names the service, as in the Datadog Forwarder."""
    for tag in settings.tags:
        name, _, value = tag.partition(":")
        if name == "service" and value:
            return value
    return ""


# EventBridge events that are not S3 notifications: one event is one container, so a rule may
# compute the source's tags from the event itself (a GuardDuty finding's severity, type, cluster).

_CLOUDTRAIL_DETAIL = Regex(r"AWS .+ via CloudTrail")
"""CloudTrail's detail-types: API calls, console sign-ins, service events, Insights; `detail` is the record."""
_SEVERITY_BANDS = ((9.0, "Critical"), (7.0, "High"), (4.0, "Medium"), (float("-inf"), "Low"))
"""GuardDuty's bands (user guide): Low 1.0-3.9, Medium 4.0-6.9, High 7.0-8.9, Critical 9.0-10.0."""
_NOT_IN_TAG = Regex(r"[^A-Za-z0-9_./:-]")
"""What Datadog turns into `_` in a tag anyway; a comma in an event's value must never split a tag."""
_MAX_TAG_VALUE = 200
FINDING_TIMES: tuple[TimePath, ...] = (("detail", "updatedAt"), ("detail", "createdAt"), ("time",))
"""A finding's own time: when it last changed (GuardDuty re-sends it as it aggregates), else when it was created."""


class EventRule(msgspec.Struct, frozen=True):
    """One row of `EVENTBRIDGE_RULES`; every matcher given must match the whole field.

    `name` None names the source after the event's `source` field (`event_source_name`). `tags`
    computes tags from the event. `shape` and `times` tell the reader (`formats.inline`) what to send
    and where its time is.
    """

    name: str | None = None
    source: Regex | None = None
    detail_type: Regex | None = None
    shape: Shape = Shape.EVENT
    times: tuple[TimePath, ...] = ENVELOPE_TIME
    tags: Callable[[dict[str, Any]], tuple[str, ...]] | None = None

    def match(self, event: dict[str, Any]) -> bool:
        for pattern, value in ((self.source, event.get("source")), (self.detail_type, event.get("detail-type"))):
            if pattern is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
                return False
        return True


class EventSource(msgspec.Struct, frozen=True):
    """An EventBridge event's source, and how its reader takes it (`formats.inline.read_event`)."""

    source: Source
    shape: Shape
    times: tuple[TimePath, ...]


def _tag(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, str) or not value:
        return ()
    return (f"{name}:{_NOT_IN_TAG.sub('_', value[:_MAX_TAG_VALUE])}",)


def severity_band(severity: Any) -> str | None:
    """A GuardDuty severity number's level; None for anything that is not a number."""
    if isinstance(severity, bool) or not isinstance(severity, int | float):
        return None
    return next((label for floor, label in _SEVERITY_BANDS if severity >= floor), None)  # None for NaN


def _finding_tags(event: dict[str, Any]) -> tuple[str, ...]:
    """The finding's account (a delegated administrator receives its members' findings), region,
    severity and type, and its EKS cluster when the finding is about one."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return ()
    resource = detail.get("resource")
    cluster = resource.get("eksClusterDetails") if isinstance(resource, dict) else None
    return (
        *_tag("aws_account", detail.get("accountId") or event.get("account")),
        *_tag("region", detail.get("region") or event.get("region")),
        *_tag("severity", severity_band(detail.get("severity"))),
        *_tag("finding_type", detail.get("type")),
        *_tag("kube_cluster_name", cluster.get("name") if isinstance(cluster, dict) else None),
    )


EVENTBRIDGE_RULES = (
    EventRule(CLOUDTRAIL, detail_type=_CLOUDTRAIL_DETAIL, shape=Shape.RECORD),
    EventRule("guardduty", source=Regex(r"aws\.guardduty"), detail_type=Regex(r"GuardDuty Finding"),
              times=FINDING_TIMES, tags=_finding_tags),
    EventRule(),
)  # fmt: skip


def event_source_name(source: Any) -> str:
    """`aws.securityhub` → `securityhub`; a partner's (`aws.partner/...`) or a custom source
    (`com.example.app`) is kept whole, not cut at its first dot as the Datadog Forwarder cuts it
    (to `example`), where unrelated applications would share a name."""
    if not isinstance(source, str) or not source:
        return "eventbridge"
    name = source[4:] if source.startswith("aws.") and not source.startswith("aws.partner/") else source
    return _NOT_IN_TAG.sub("_", name[:_MAX_TAG_VALUE])


def for_event(item: EventBridgeEvent, settings: Settings) -> EventSource:
    """An EventBridge event's source: the first rule that matches; the last matches every event."""
    event = item.event
    rule = next(rule for rule in EVENTBRIDGE_RULES if rule.match(event))
    name = settings.source_override or rule.name or event_source_name(event.get("source"))
    host = _NOT_IN_TAG.sub("_", source[:_MAX_TAG_VALUE]) if isinstance(source := event.get("source"), str) else ""
    tags = rule.tags(event) if rule.tags is not None else ()
    time_fields = TIME_FIELDS if rule.shape is Shape.RECORD else ()
    return EventSource(Source(name, _service(settings) or name, host, tags, time_fields), rule.shape, rule.times)
