"""Which source a container's events belong to: the labels detection rules key on.

A CloudTrail file is recognised by its key (`AWSLogs/<account>/CloudTrail/...`) or by its content
(a `{"Records": [...]}` document), so re-prefixed or copied trail objects are labelled right too.
EKS control-plane log groups are told apart by log-stream prefix, audit first because
`kube-apiserver-audit-` also starts with `kube-apiserver-`.
"""

from __future__ import annotations

import re

from forwarder.model import LogBatch, S3Object, Source
from forwarder.settings import Settings

CLOUDTRAIL = "cloudtrail"

_CLOUDTRAIL_KEY = re.compile(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]+/)?\d{12}/CloudTrail(?:-Insight)?/")
_DIGEST_KEY = re.compile(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]+/)?\d{12}/CloudTrail-Digest/")
_CLOUDTRAIL_STREAM = re.compile(r"^\d{12}_CloudTrail_[a-z0-9-]+")
# What the console names a trail's log group. Any other group is recognised by its streams, which a
# trail always names `<account>_CloudTrail_<region>`: a word in a group's name proves nothing.
_CLOUDTRAIL_GROUP_PREFIX = "aws-cloudtrail-logs-"
_EKS_GROUP = re.compile(r"^/aws/eks/(?P<cluster>[^/]+)/cluster$")
_EKS_STREAM_SOURCES = (
    ("kube-apiserver-audit-", "kubernetes.audit"),
    ("kube-apiserver-", "kube-apiserver"),
    ("authenticator-", "aws-iam-authenticator"),
    ("kube-controller-manager-", "kube-controller-manager"),
    ("kube-scheduler-", "kube-scheduler"),
    ("cloud-controller-manager-", "cloud-controller-manager"),
)


def is_digest_key(key: str) -> bool:
    """CloudTrail digest files sit beside the logs but hold hashes, not events."""
    return _DIGEST_KEY.search(key) is not None


def is_cloudtrail_key(key: str) -> bool:
    return _CLOUDTRAIL_KEY.search(key) is not None


def for_object(obj: S3Object, cloudtrail_content: bool, settings: Settings) -> Source:
    """Label an S3 object's events: `cloudtrail` by content or key, else `s3`."""
    detected = CLOUDTRAIL if cloudtrail_content or is_cloudtrail_key(obj.key) else "s3"
    return _source(detected, host=obj.bucket, settings=settings)


def for_log_batch(batch: LogBatch, settings: Settings) -> Source:
    """Label a CloudWatch Logs batch by its log group, and for EKS by its log stream."""
    group, stream = batch.log_group, batch.log_stream
    eks = _EKS_GROUP.match(group)
    if eks:
        detected = next((src for prefix, src in _EKS_STREAM_SOURCES if stream.startswith(prefix)), "eks")
        tags = (f"kube_cluster_name:{eks['cluster']}",)
        return _source(detected, host=group, settings=settings, tags=tags)
    if group.startswith("/aws/lambda/"):
        return _source("lambda", host=group, settings=settings)
    if _CLOUDTRAIL_STREAM.match(stream) or group.startswith(_CLOUDTRAIL_GROUP_PREFIX):
        return _source(CLOUDTRAIL, host=group, settings=settings)
    return _source("cloudwatch", host=group, settings=settings)


def _source(detected: str, host: str, settings: Settings, tags: tuple[str, ...] = ()) -> Source:
    ddsource = settings.source_override or detected
    return Source(ddsource=ddsource, service=_service(settings) or ddsource, host=host, tags=tags)


def _service(settings: Settings) -> str:
    """A `service:` tag in DD_TAGS names the service, as in the Datadog Forwarder."""
    for tag in settings.tags:
        name, _, value = tag.partition(":")
        if name == "service" and value:
            return value
    return ""
