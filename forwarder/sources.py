"""Which source a container's events belong to: one ordered table of rules, the first match decides.

A rule looks at what is known of a container (an S3 key and bucket, or a log group and stream, and
for S3 the format sniffed from the content) and names the source (name, tags, time fields) or a skip
with its reason. Adding a source is a row here and a fixture test.

A CloudTrail file is recognised by its key (`AWSLogs/<account>/CloudTrail/...`) or by its content
(a `{"Records": [...]}` document), so re-prefixed or copied trail objects are labelled right too.
EKS control-plane log groups are told apart by log-stream prefix, audit first because
`kube-apiserver-audit-` also starts with `kube-apiserver-`. A CloudWatch group is a trail's when its
streams are named `<account>_CloudTrail_<region>` or the console named it `aws-cloudtrail-logs-*`:
a word in a group's name proves nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forwarder.formats import Format
from forwarder.model import LogBatch, S3Object, Skip, SkipReason, Source
from forwarder.settings import Settings
from forwarder.times import AUDIT_TIME_FIELDS, TIME_FIELDS

CLOUDTRAIL = "cloudtrail"

_EKS_GROUP = re.compile(r"^/aws/eks/(?P<cluster>[^/]+)/cluster$")
_EKS_TAGS = ("kube_cluster_name:{cluster}",)


@dataclass(frozen=True, slots=True)
class Seen:
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
        return cls(log_group=batch.log_group, log_stream=batch.log_stream)

    @property
    def host(self) -> str:
        return self.bucket or self.log_group


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: every matcher given must hold. Regex matchers' named groups fill the `tags` templates."""

    name: str
    key: re.Pattern[str] | None = None
    content: Format | None = None
    group: re.Pattern[str] | None = None
    stream: re.Pattern[str] | None = None
    skip: SkipReason | None = None
    tags: tuple[str, ...] = ()
    time_fields: tuple[str, ...] = TIME_FIELDS

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


def _prefix(text: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(text))


S3_RULES = (
    Rule("cloudtrail_digest", key=re.compile(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]+/)?\d{12}/CloudTrail-Digest/"),
         skip=SkipReason.CLOUDTRAIL_DIGEST),
    Rule("cloudtrail_digest", content=Format.DIGEST, skip=SkipReason.CLOUDTRAIL_DIGEST),
    Rule(CLOUDTRAIL, content=Format.CLOUDTRAIL),
    Rule(CLOUDTRAIL, key=re.compile(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]+/)?\d{12}/CloudTrail(?:-Insight)?/")),
    Rule("s3"),
)  # fmt: skip

LOG_GROUP_RULES = (
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
    Rule("lambda", group=_prefix("/aws/lambda/")),
    Rule(CLOUDTRAIL, stream=re.compile(r"^\d{12}_CloudTrail_[a-z0-9-]+")),
    Rule(CLOUDTRAIL, group=_prefix("aws-cloudtrail-logs-")),
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
        return Source(name, _service(settings) or name, seen.host, tags, rule.time_fields)
    raise AssertionError("the last rule of each table matches everything")


def _service(settings: Settings) -> str:
    """A `service:` tag in DD_TAGS names the service, as in the Datadog Forwarder."""
    for tag in settings.tags:
        name, _, value = tag.partition(":")
        if name == "service" and value:
            return value
    return ""
