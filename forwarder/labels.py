"""Where an event's labels come from: the account and region that own it, and the host a CloudTrail
record's identity names. One forwarder in a log-archive account serves a whole organisation, so these
come from the event and its container, the forwarder's own account and region only as a last resort.
"""

from __future__ import annotations

import re
from typing import Any

from forwarder.model import Container, EventBridgeEvent, Invoker, LogBatch, S3Object

ACCOUNT = re.compile(r"\d{12}")
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_LOGS_KEY = re.compile(
    r"(?:^|/)AWSLogs/(?:o-[a-z0-9]{10,32}/)?(?P<account>\d{12})/[^/]+/(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2}(?=/))?"
)
"""The standard key of AWS logs in S3, an organisation trail's (`AWSLogs/<o-org>/<account>/...`) too."""
_TRAIL_STREAM = re.compile(r"\d{12}_CloudTrail_(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2})(?:_|$)")
"""A trail's CloudWatch Logs stream, `<account>_CloudTrail_<region>`: the region of its records."""
_INSTANCE_SESSION = re.compile(
    r"arn:aws[a-z-]*:sts::.*?:assumed-role/(?P<role>.*?)/(?P<host>i-(?:[0-9a-f]{8}|[0-9a-f]{17}))"
)
"""The Datadog Forwarder's HOST_IDENTITY_REGEXP (any partition here): an EC2 instance-profile session."""


def owner(container: Container, invoker: Invoker) -> tuple[str, str]:
    """The account and region that own a container's events: the S3 key's `AWSLogs/<account>/<service>/<region>/`,
    CloudWatch Logs' `owner` (and a trail stream's region), an EventBridge event's own; the forwarder's
    where the container does not say. A value that is not an account id or a region name is not used."""
    account: Any = ""
    region: Any = ""
    if isinstance(container, S3Object):
        found = _LOGS_KEY.search(container.key)
        if found is not None:
            account, region = found["account"], found["region"]
    elif isinstance(container, LogBatch):
        account = container.owner
        stream = _TRAIL_STREAM.match(container.log_stream)
        region = stream["region"] if stream is not None else ""
    elif isinstance(container, EventBridgeEvent):
        account, region = container.event.get("account"), container.event.get("region")
    return valid(account, ACCOUNT) or invoker.account, valid(region, REGION) or invoker.region


def valid(value: Any, pattern: re.Pattern[str]) -> str:
    """`value` when it is a string `pattern` matches whole, else "": what comes from an event is checked."""
    return value if isinstance(value, str) and pattern.fullmatch(value) else ""


def instance_host(arn: str | None) -> str | None:
    """The EC2 instance id an instance-profile session's ARN ends with; None for any other ARN."""
    found = _INSTANCE_SESSION.fullmatch(arn) if arn else None
    return found["host"] if found is not None else None
