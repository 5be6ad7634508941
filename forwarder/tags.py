"""Tags from the source's own AWS resource: its bucket's (DD_FETCH_S3_TAGS) or its log group's
(DD_FETCH_LOG_GROUP_TAGS), so a team's `team:`, `env:` or `data_class:` tags reach the SIEM.

Tags are kept across invocations for DD_TAGS_CACHE_TTL_SECONDS, plus up to a tenth more at random so
that containers started together do not ask again together (the Datadog Forwarder adds 1-100 s).

A look-up that fails (throttled, denied, unreachable) never blocks or fails delivery: the events go
without those tags (or with the ones kept before), the failure is counted (`tag_fetch_errors`) and
logged, and it is itself kept for `FAILURE_KEPT_SECONDS`, so a throttled API is not asked again for
every container. Between its own attempts the client backs off (botocore's standard retry mode).

Tags are formatted as the Datadog Forwarder formats them (its `sanitize_aws_tag_string`), cut to
200 characters (it cuts only those of the bucket path), and a resource's tag never relabels the
event's `aws_account` or `region`: those come from the event (`outputs.datadog.owner`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from forwarder import runtime
from forwarder.labels import owner
from forwarder.metrics import Tally
from forwarder.model import Container, Invoker, LogBatch, S3Object, Source
from forwarder.settings import Settings

logger = Logger(service="security-log-forwarder")

FAILURE_KEPT_SECONDS = 60.0
"""How long a failed look-up stands before the API is asked again."""
RESOURCES_KEPT = 10_000
"""Resources whose tags are kept; past this the cache starts over (a bound on memory)."""
MAX_TAG_CHARS = 200
LABEL_KEYS = frozenset({"aws_account", "region"})
_NOT_IN_TAG = re.compile(r"[^\w:\-./]")
_UNDERSCORES = re.compile(r"__+")
_LEADING = re.compile(r"^[_\d]+")


def tag_text(text: str, key: bool = False) -> str:
    """The Datadog Forwarder's tag formatting: lower-case, other characters as `_`, runs of `_` as one,
    no trailing `_`; a key also has its `:` as `_` and loses leading `_` and digits."""
    text = text.lower()
    if key:
        text = text.replace(":", "_")
    text = _UNDERSCORES.sub("_", _NOT_IN_TAG.sub("_", text))
    if key:
        text = _LEADING.sub("", text)
    return text.rstrip("_")


def formatted(pairs: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """`key:value` tags (`key` alone for an empty value), never one naming the event's account or region."""
    found = []
    for raw_key, raw_value in pairs:
        key, value = tag_text(str(raw_key), key=True), tag_text(str(raw_value))
        if key and key not in LABEL_KEYS:
            found.append((f"{key}:{value}" if value else key)[:MAX_TAG_CHARS])
    return tuple(found)


@dataclass(frozen=True, slots=True)
class _Kept:
    tags: tuple[str, ...]
    until: float


class TagCache:
    """Tags per resource, kept for a time; a failure is kept too, briefly, with the tags kept before."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] = random.random):
        self._clock = clock
        self._jitter = jitter
        self._kept: dict[str, _Kept] = {}

    def tags(self, resource: str, fetch: Callable[[], tuple[str, ...]], ttl: float) -> tuple[tuple[str, ...], Any]:
        """`(tags, error)`: the kept tags while fresh, else `fetch`'s; `error` is the failure, if any."""
        now = self._clock()
        kept = self._kept.get(resource)
        if kept is not None and now < kept.until:
            return kept.tags, None
        if len(self._kept) >= RESOURCES_KEPT:
            self._kept.clear()
        try:
            tags = fetch()
        except (ClientError, BotoCoreError, OSError) as exc:  # OSError: a socket below botocore
            stale = kept.tags if kept is not None else ()
            self._kept[resource] = _Kept(stale, now + min(FAILURE_KEPT_SECONDS, ttl))
            return stale, exc
        self._kept[resource] = _Kept(tags, now + ttl * (1 + self._jitter() / 10))
        return tags, None


CACHE = TagCache()
"""Lives as long as the container, so tags are fetched once per TTL, not per invocation."""


def bucket_tags(s3: Any, bucket: str) -> tuple[str, ...]:
    """`s3:GetBucketTagging`; a bucket with no tags answers NoSuchTagSet."""
    try:
        answer = s3.get_bucket_tagging(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchTagSet":
            return ()
        raise
    return formatted((tag["Key"], tag["Value"]) for tag in answer.get("TagSet", ()))


def log_group_tags(logs: Any, arn: str) -> tuple[str, ...]:
    """`logs:ListTagsForResource` on the log group's ARN."""
    return formatted(logs.list_tags_for_resource(resourceArn=arn).get("tags", {}).items())


def log_group_arn(batch: LogBatch, invoker: Invoker) -> str:
    """The log group's ARN, in its owner's account and its region (`owner`), the forwarder's partition."""
    account, region = owner(batch, invoker)
    parts = invoker.function_arn.split(":")
    partition = parts[1] if len(parts) > 1 and parts[1] else "aws"
    return f"arn:{partition}:logs:{region}:{account}:log-group:{batch.log_group}"


def tagged(source: Source, container: Container, settings: Settings, invoker: Invoker, tally: Tally) -> Source:
    """The source with its resource's tags added, when the settings ask for them; as it was when the
    look-up fails (counted in `tally` and logged)."""
    if isinstance(container, S3Object) and settings.fetch_s3_tags:
        resource = f"s3:{container.bucket}"
        bucket = container.bucket
        fetch = lambda: bucket_tags(runtime.client("s3"), bucket)  # noqa: E731
    elif isinstance(container, LogBatch) and settings.fetch_log_group_tags:
        resource = log_group_arn(container, invoker)
        fetch = lambda: log_group_tags(runtime.client("logs"), resource)  # noqa: E731
    else:
        return source
    tags, error = CACHE.tags(resource, fetch, settings.tags_cache_ttl_seconds)
    if error is not None:
        tally.tag_fetch_errors += 1
        logger.warning("resource tags not fetched", extra={"resource": resource, "reason": _reason(error)})
    return msgspec.structs.replace(source, tags=source.tags + tags) if tags else source


def _reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or error)
    return type(error).__name__
