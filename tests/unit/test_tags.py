"""Tags from the bucket's or log group's own AWS tags: fetched from moto, cached, never failing delivery."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from forwarder import tags
from forwarder.errors import ConfigError
from forwarder.metrics import Tally
from forwarder.model import Invoker, LogBatch, S3Object, Source
from forwarder.settings import Settings
from forwarder.tags import TagCache, bucket_tags, formatted, log_group_arn, log_group_tags, tag_text

INVOKER = Invoker.from_arn("arn:aws:lambda:us-east-1:123456789012:function:forwarder")
SOURCE = Source("cloudtrail", "cloudtrail", "trail-bucket", ("env:prod",))


def throttled(*_: Any, **__: Any) -> tuple[str, ...]:
    raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetBucketTagging")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("Team", "Security Ops")], ("team:security_ops",)),
        ([("aws:cloudformation:stack-name", "Prod-Stack")], ("aws_cloudformation_stack-name:prod-stack",)),
        ([("2fa:key", "007")], ("fa_key:007",)),  # a key loses leading digits, a value keeps them
        ([("owner", "")], ("owner",)),
        ([("cost,center", "a,b")], ("cost_center:a_b",)),  # a comma never splits a tag
        ([("aws_account", "1"), ("Region", "x")], ()),  # never relabels the event's account or region
        ([("k", "v" * 300)], ("k:" + "v" * 198,)),
    ],
)
def test_tags_are_formatted_as_the_datadog_forwarder_formats_them(pairs: list, expected: tuple) -> None:
    assert formatted(pairs) == expected


def test_a_key_keeps_no_trailing_or_repeated_underscores() -> None:
    assert tag_text("__9Cost  Center!!", key=True) == "cost_center"


def test_bucket_tags_come_from_get_bucket_tagging(s3: Any) -> None:
    s3.create_bucket(Bucket="tagged-bucket")
    s3.put_bucket_tagging(Bucket="tagged-bucket", Tagging={"TagSet": [{"Key": "Team", "Value": "SecOps"}]})
    s3.create_bucket(Bucket="bare-bucket")
    assert bucket_tags(s3, "tagged-bucket") == ("team:secops",)
    assert bucket_tags(s3, "bare-bucket") == ()  # NoSuchTagSet: none
    with pytest.raises(ClientError):
        bucket_tags(s3, "no-such-bucket")


def test_log_group_tags_come_from_list_tags_for_resource(moto_endpoint: str) -> None:
    logs = boto3.client("logs", endpoint_url=moto_endpoint)
    logs.create_log_group(logGroupName="/aws/eks/prod/cluster", tags={"Env": "Prod"})
    batch = LogBatch("123456789012", "/aws/eks/prod/cluster", "kube-apiserver-audit-1", (), ())
    arn = log_group_arn(batch, INVOKER)
    assert arn == "arn:aws:logs:us-east-1:123456789012:log-group:/aws/eks/prod/cluster"
    assert log_group_tags(logs, arn) == ("env:prod",)


def test_tags_are_kept_for_their_ttl_then_fetched_again() -> None:
    clock, calls = Clock(), []
    cache = TagCache(clock, jitter=lambda: 1.0)

    def fetch() -> tuple[str, ...]:
        calls.append(clock.now)
        return (f"n:{len(calls)}",)

    assert cache.tags("r", fetch, 300) == (("n:1",), None)
    clock.now += 329  # the TTL and its jitter, up to a tenth more
    assert cache.tags("r", fetch, 300) == (("n:1",), None)
    clock.now += 2
    assert cache.tags("r", fetch, 300) == (("n:2",), None)
    assert len(calls) == 2


def test_a_failure_is_kept_briefly_with_the_tags_kept_before() -> None:
    clock = Clock()
    cache = TagCache(clock, jitter=lambda: 0.0)
    assert cache.tags("r", lambda: ("team:a",), 10) == (("team:a",), None)
    clock.now += 11
    kept, error = cache.tags("r", throttled, 300)
    assert kept == ("team:a",) and isinstance(error, ClientError)
    clock.now += tags.FAILURE_KEPT_SECONDS - 1
    assert cache.tags("r", throttled, 300) == (("team:a",), None)  # not asked again yet
    clock.now += 2
    assert cache.tags("r", lambda: ("team:b",), 300) == (("team:b",), None)


def test_a_failed_lookup_is_counted_and_logged_and_the_source_goes_untagged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tags, "CACHE", TagCache())
    monkeypatch.setattr(tags, "bucket_tags", throttled)
    tally = Tally()
    settings = Settings(fetch_s3_tags=True)
    source = tags.tagged(SOURCE, S3Object("trail-bucket", "k"), settings, INVOKER, tally)
    assert source == SOURCE and tally.tag_fetch_errors == 1
    assert tally.summary()["tag_fetch_errors"] == 1
    assert tags.tagged(SOURCE, S3Object("trail-bucket", "k"), settings, INVOKER, tally) == SOURCE
    assert tally.tag_fetch_errors == 1  # the failure is kept: not asked, not counted again


def test_fetched_tags_are_added_to_the_sources_only_when_asked(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tags, "CACHE", TagCache())
    s3.create_bucket(Bucket="team-bucket")
    s3.put_bucket_tagging(Bucket="team-bucket", Tagging={"TagSet": [{"Key": "team", "Value": "blue"}]})
    container, tally = S3Object("team-bucket", "k"), Tally()
    assert tags.tagged(SOURCE, container, Settings(), INVOKER, tally) == SOURCE
    found = tags.tagged(SOURCE, container, Settings(fetch_s3_tags=True), INVOKER, tally)
    assert found.tags == ("env:prod", "team:blue") and tally.tag_fetch_errors == 0


def test_the_settings_read_the_datadog_forwarder_names() -> None:
    settings = Settings.from_env(
        {"DD_FETCH_S3_TAGS": "true", "DD_FETCH_LOG_GROUP_TAGS": "true", "DD_TAGS_CACHE_TTL_SECONDS": "60"}
    )
    assert (settings.fetch_s3_tags, settings.fetch_log_group_tags, settings.tags_cache_ttl_seconds) == (True, True, 60)
    assert Settings.from_env({}).tags_cache_ttl_seconds == 300
    with pytest.raises(ConfigError, match="DD_TAGS_CACHE_TTL_SECONDS"):
        Settings.from_env({"DD_TAGS_CACHE_TTL_SECONDS": "soon"})
