import re

import pytest

from forwarder import sources
from forwarder.formats import Format
from forwarder.model import LogBatch, LogEvent, S3Object, Skip, SkipReason, Source
from forwarder.settings import Settings
from forwarder.times import AUDIT_TIME_FIELDS as AUDIT
from forwarder.times import TimeFormat

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


@pytest.mark.parametrize(
    ("key", "ddsource", "line_format"),
    [
        ("AWSLogs/111111111111/elasticloadbalancing/us-east-1/2020/10/02/111111111111_elasticloadbalancing_us-east-1"
         "_app.alb.xxxxx_x.log.gz", "elb", TimeFormat.ELB),
        ("AWSLogs/111111111111/vpcflowlogs/us-east-1/2020/10/02/111111111111_vpcflowlogs_us-east-1_fl-x.log.gz",
         "vpc", TimeFormat.VPC_FLOW),
        ("AWSLogs/111111111111/vpcdnsquerylogs/vpc-0a/2021/05/11/vpc-0a_vpcdnsquerylogs_111111111111_x.log.gz",
         "route53", None),
        ("AWSLogs/111111111111/WAFLogs/cloudfront/acl/2022/10/11/14/10/111111111111_waflogs_cloudfront_acl.log.gz",
         "waf", None),
        ("2020/10/02/21/aws-waf-logs-testing-1-2020-10-02-21-25-30-x123x-x456x", "waf", None),
        ("AWSLogs/111111111111/network-firewall/flow/us-east-1/fw/2023/02/20/16/x.log.gz", "network-firewall", None),
        ("AWSLogs/111111111111/GuardDuty/us-east-1/2024/01/01/5b1b29c3.jsonl.gz", "guardduty", None),
        ("cdn/E2EXAMPLE1ABC.2019-12-04-21.e519cdee.gz", "cloudfront", TimeFormat.CLOUDFRONT),
        ("AWSLogs/cloudfront/111111111111/test/01.gz", "cloudfront", TimeFormat.CLOUDFRONT),
        ("access/2022-10-03-10-13-50-A211246203787B7F", "s3", TimeFormat.S3_ACCESS),
        ("app/2022-10-03-10-13-50-notes.txt", "s3", None),
    ],
)  # fmt: skip
def test_aws_logs_in_s3_are_named_as_the_datadog_forwarder_names_them(
    key: str, ddsource: str, line_format: TimeFormat | None
) -> None:
    source = sources.for_object(S3Object("bucket", key), DEFAULT, Format.LINES)
    assert isinstance(source, Source)
    assert (source.name, source.line_format) == (ddsource, line_format)


def test_a_kubernetes_audit_file_is_named_by_content_and_its_key_names_the_cluster() -> None:
    settings = Settings(k8s_cluster_key_pattern=re.compile(r"^k8s-audit/(?P<cluster>[^/]+)/"))
    named = sources.for_object(S3Object("b", "k8s-audit/prod,eu/audit.log.gz"), settings, Format.K8S_AUDIT)
    other = sources.for_object(S3Object("b", "elsewhere/audit.log.gz"), settings, Format.K8S_AUDIT)
    assert isinstance(named, Source) and isinstance(other, Source)
    assert (named.name, named.tags, named.time_fields) == ("kubernetes.audit", ("kube_cluster_name:prod_eu",), AUDIT)
    assert (other.name, other.tags) == ("kubernetes.audit", ())


@pytest.mark.parametrize(
    ("group", "stream", "ddsource", "tags"),
    [
        ("API-Gateway-Execution-Logs_a1b23c/test", "0f9a", "apigateway", ()),
        ("/aws/apigateway/abc123/prod", "s", "apigateway", ()),
        ("/aws/http-api/my-api", "s", "apigateway", ()),
        ("/aws/rds/instance/datadog/postgresql", "datadog.0", "postgresql", ("logname:postgresql",)),
        ("/aws/rds/cluster/orders-mysql/error", "orders-mysql-1", "mysql", ("logname:error",)),
        ("/aws/rds/instance/billing/audit", "billing", "rds", ("logname:audit",)),
        ("/aws/vendedlogs/states/checkout-Logs", "states/checkout/2022-11-10-15-50/7851b2d9", "stepfunction", ()),
        ("my-state-machine-logs", "states/checkout/2022-11-10-15-50/7851b2d9", "stepfunction", ()),
        ("/aws/route53/resolver/vpc-0a", "vpc-0a_rslvr", "route53", ()),
        ("abc123_my_vpc_loggroup", "eni-0a-all", "vpc", ()),
        ("/aws/network-firewall/alert", "fw", "network-firewall", ()),
    ],
)
def test_aws_log_groups_are_named_as_the_datadog_forwarder_names_them(
    group: str, stream: str, ddsource: str, tags: tuple[str, ...]
) -> None:
    source = sources.for_log_batch(batch(group, stream), DEFAULT)
    assert isinstance(source, Source)
    assert (source.name, source.tags) == (ddsource, tags)


def test_a_cloudtrail_record_names_its_log_group_whatever_it_is_called() -> None:
    record = (
        '{"eventVersion":"1.08","eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"X"}'
    )
    lookalike = '{"eventVersion":"1.08","note":"not a record"}'
    events = (LogEvent("1", 1, record),)
    trail = sources.for_log_batch(LogBatch("1", "/aws/lambda/app", "s", (), events), DEFAULT)
    app = sources.for_log_batch(LogBatch("1", "/aws/lambda/app", "s", (), (LogEvent("1", 1, lookalike),)), DEFAULT)
    assert isinstance(trail, Source) and isinstance(app, Source)
    assert (trail.name, app.name) == ("cloudtrail", "lambda")


@pytest.mark.parametrize(
    "key",
    [
        "aws/CLOUD_TRAIL_MGMT/2.0/region=us-east-1/accountId=111122223333/eventDay=20241204/x.parquet",
        "lake/aws/EKS_AUDIT/region=eu-west-1/accountId=111122223333/x.parquet",  # the preview: no version
        "aws/CLOUD_TRAIL/1.0/region=us-east-1/accountId=111122223333/x.parquet",
        "aws/CLOUD_TRAIL_MGMT/region=us-east-1/accountId=x/x.parquet",
        "AWSLogs/o-abc123def4/111111111111/CloudTrail-Digest/us-east-1/x.json.gz",
        "AWSLogs/111111111111/CloudTrail/us-east-1/2024/12/04/x.json.gz",
        "aws/cloud_trail_mgmt/2.0/region=us-east-1/accountId=111122223333/x.parquet",  # case-sensitive, as the regex
    ],
)
def test_a_rules_needle_never_refuses_a_key_its_regex_matches(key: str) -> None:
    """The substring test before a lazily compiled regex only skips keys the regex would refuse."""
    with_needle = [rule.key for rule in sources.S3_RULES if rule.key is not None and rule.key.needle]
    assert len(with_needle) == len(sources.SECURITY_LAKE_SOURCES) + 1
    for regex in with_needle:
        assert bool(regex.search(key)) == bool(re.search(regex.pattern, key))
        assert regex.needle in regex.pattern
