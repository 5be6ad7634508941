import pytest

from forwarder import sources
from forwarder.formats import Format
from forwarder.model import LogBatch, S3Object, Skip, SkipReason, Source
from forwarder.settings import Settings

DEFAULT = Settings()


def batch(group: str, stream: str) -> LogBatch:
    return LogBatch(owner="123456789012", log_group=group, log_stream=stream, subscription_filters=(), log_events=())


@pytest.mark.parametrize(
    ("group", "stream", "ddsource", "tags"),
    [
        ("/aws/eks/prod/cluster", "kube-apiserver-audit-0a1b2c", "kubernetes.audit", ("kube_cluster_name:prod",)),
        ("/aws/eks/prod/cluster", "kube-apiserver-0a1b2c", "kube-apiserver", ("kube_cluster_name:prod",)),
        ("/aws/eks/prod/cluster", "authenticator-0a1b2c", "aws-iam-authenticator", ("kube_cluster_name:prod",)),
        ("/aws/eks/prod/cluster", "kube-controller-manager-0a", "kube-controller-manager", ("kube_cluster_name:prod",)),
        ("/aws/eks/prod/cluster", "kube-scheduler-0a", "kube-scheduler", ("kube_cluster_name:prod",)),
        (
            "/aws/eks/prod/cluster",
            "cloud-controller-manager-0a",
            "cloud-controller-manager",
            ("kube_cluster_name:prod",),
        ),
        ("/aws/lambda/my-function", "2024/12/04/[$LATEST]abc", "lambda", ()),
        ("aws-cloudtrail-logs-123456789123-c81b5193", "123456789123_CloudTrail_us-east-1", "cloudtrail", ()),
        ("my-trail-group", "123456789123_CloudTrail_us-east-1", "cloudtrail", ()),
        ("testLogGroup", "testLogStream", "cloudwatch", ()),
        ("cloudtrail-alerts-service", "2024/12/04/[$LATEST]abc", "cloudwatch", ()),
        ("aws-cloudtrail-logs-123456789123-c81b5193", "any-stream", "cloudtrail", ()),
        ("/aws/eks/prod/cluster", "some-new-component-0a", "eks", ("kube_cluster_name:prod",)),
    ],
)
def test_log_group_sources(group: str, stream: str, ddsource: str, tags: tuple[str, ...]) -> None:
    source = sources.for_log_batch(batch(group, stream), DEFAULT)
    assert isinstance(source, Source)
    assert (source.name, source.service, source.host, source.tags) == (ddsource, ddsource, group, tags)


def test_audit_stream_is_not_mistaken_for_apiserver() -> None:
    source = sources.for_log_batch(batch("/aws/eks/c/cluster", "kube-apiserver-audit-x"), DEFAULT)
    assert isinstance(source, Source) and source.name == "kubernetes.audit"


@pytest.mark.parametrize(
    ("key", "content", "ddsource"),
    [
        ("AWSLogs/111111111111/CloudTrail/eu-west-2/2022/02/21/x.json.gz", False, "cloudtrail"),
        ("AWSLogs/o-abc123def4/111111111111/CloudTrail/eu-west-2/2022/02/21/x.json.gz", False, "cloudtrail"),
        ("prefix/AWSLogs/111111111111/CloudTrail-Insight/eu-west-2/2022/02/21/x.json.gz", False, "cloudtrail"),
        ("copied/trail-file.json.gz", True, "cloudtrail"),
        ("app/log.txt", False, "s3"),
    ],
)
def test_object_sources(key: str, content: bool, ddsource: str) -> None:
    source = sources.for_object(S3Object("bucket", key), DEFAULT, Format.CLOUDTRAIL if content else Format.LINES)
    assert isinstance(source, Source)
    assert (source.name, source.host) == (ddsource, "bucket")


@pytest.mark.parametrize(
    ("key", "digest"),
    [
        ("AWSLogs/111111111111/CloudTrail-Digest/us-east-1/2024/01/01/x.json.gz", True),
        ("AWSLogs/o-abc123def4/111111111111/CloudTrail-Digest/us-east-1/x.json.gz", True),
        ("AWSLogs/111111111111/CloudTrail/us-east-1/2024/01/01/x.json.gz", False),
    ],
)
def test_digest_keys_are_skipped_before_anything_is_read(key: str, digest: bool) -> None:
    decided = sources.for_object(S3Object("bucket", key), DEFAULT)
    assert (decided == Skip(SkipReason.CLOUDTRAIL_DIGEST, f"s3://bucket/{key}")) is digest
    assert (decided is None) is not digest, "any other object needs its content sniffed first"


def test_dd_source_overrides_and_service_tag_names_service() -> None:
    settings = Settings(source_override="custom", tags=("env:prod", "service:siem"))
    source = sources.for_object(S3Object("b", "AWSLogs/111111111111/CloudTrail/r/x"), settings, Format.CLOUDTRAIL)
    assert isinstance(source, Source)
    assert (source.name, source.service) == ("custom", "siem")
