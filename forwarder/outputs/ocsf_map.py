"""CloudTrail records as OCSF 1.1.0 API Activity (class_uid 6003), and what every mapping shares.

The mapping follows Amazon Security Lake's (source version 2.0, which writes OCSF 1.1.0); where it
leaves a field out or is ambiguous the choice made is in docs/ocsf.md. Kubernetes audit events
are mapped in `outputs.ocsf_audit`. Pure functions: a parsed
record and what is known of its container in, one OCSF object out, or `Unmappable` naming the field
a required attribute would come from.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from forwarder.times import first_time, iso_ms

OCSF_VERSION = "1.1.0"
PROFILES = ("cloud", "datetime")


class Activity(enum.IntEnum):
    """API Activity's activity_id; its caption is activity_name."""

    UNKNOWN = 0
    CREATE = 1
    READ = 2
    UPDATE = 3
    DELETE = 4
    OTHER = 99


class Status(enum.IntEnum):
    UNKNOWN = 0
    SUCCESS = 1
    FAILURE = 2


API_ACTIVITY = {"class_uid": 6003, "class_name": "API Activity", "category_uid": 6}
API_ACTIVITY_CATEGORY = "Application Activity"
INFORMATIONAL = {"severity_id": 1, "severity": "Informational"}

_CLOUDTRAIL_VERBS = (
    (Activity.CREATE, ("Create", "Run", "Generate")),
    (Activity.READ, ("Get", "List", "Describe", "Search", "Lookup")),
    (
        Activity.UPDATE,
        (
            "Update", "Put", "Modify", "Add", "Remove", "Start", "Stop", "Attach", "Detach", "Associate",
            "Disassociate", "Tag", "Untag", "Enable", "Disable", "Register", "Deregister",
        ),
    ),
    (Activity.DELETE, ("Delete", "Terminate")),
)  # fmt: skip
_VERB_PREFIX = re.compile(
    "^(?:Batch)?(" + "|".join(verb for _, verbs in _CLOUDTRAIL_VERBS for verb in verbs) + ")(?=[A-Z0-9_]|$)"
)
_ACTIVITY_OF_VERB = {verb: activity for activity, verbs in _CLOUDTRAIL_VERBS for verb in verbs}


_USER_TYPES = {"IAMUser": 1, "IdentityCenterUser": 1, "Root": 2, "AWSService": 3}
"""CloudTrail userIdentity.type → user.type_id (User, Admin, System); any other type is 99 Other."""
USER_CAPTIONS = {1: "User", 2: "Admin", 3: "System"}


class Unmappable(Exception):
    """A record of a mapped kind that lacks what a required attribute comes from."""


@dataclass(frozen=True, slots=True)
class Where:
    """What the container says of an event: the cloud account and region it belongs to, the
    product that logged it, and the event's id and time when it carries none of its own."""

    account: str
    region: str
    event_uid: str
    fallback_ms: int | None
    from_eks: bool = False


def class_fields(activity: Activity) -> dict[str, Any]:
    """activity, type and class of an API Activity event."""
    return {
        "activity_id": int(activity),
        "activity_name": activity.name.title(),
        **API_ACTIVITY,
        "category_name": API_ACTIVITY_CATEGORY,
        "type_uid": 6003 * 100 + int(activity),
        "type_name": f"API Activity: {activity.name.title()}",
    }


def timed(ms: int) -> dict[str, Any]:
    """`time` and its datetime-profile sibling `time_dt`."""
    return {"time": ms, "time_dt": datetime_text(ms)}


def datetime_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloud(account: str, region: str) -> dict[str, Any]:
    found: dict[str, Any] = {"provider": "AWS"}
    if region:
        found["region"] = region
    if account:
        found["account"] = {"uid": account, "type_id": 10, "type": "AWS Account"}
    return found


def cloudtrail_activity(name: str, read_only: Any) -> Activity:
    """By the verb the event name starts with (after any `Batch`); else Read for a read-only call."""
    found = _VERB_PREFIX.match(name)
    if found:
        return _ACTIVITY_OF_VERB[found.group(1)]
    return Activity.READ if read_only is True or read_only == "true" else Activity.OTHER


def from_cloudtrail(record: dict[str, Any], where: Where) -> dict[str, Any]:
    """A CloudTrail record (management or data event) as API Activity."""
    operation = text(record.get("eventName"))
    if not operation:
        raise Unmappable("no eventName (api.operation)")
    ms = first_time((record.get("eventTime"), record.get("@timestamp"))) or where.fallback_ms
    if ms is None:
        raise Unmappable("no eventTime (time)")
    identity = mapping(record.get("userIdentity"))
    error = text(record.get("errorCode"))
    event = {
        **class_fields(cloudtrail_activity(operation, record.get("readOnly"))),
        **INFORMATIONAL,
        **status_fields(Status.FAILURE if error else Status.SUCCESS, error, text(record.get("errorMessage"))),
        **timed(ms),
        "metadata": _cloudtrail_metadata(record, where),
        "actor": _cloudtrail_actor(identity),
        "api": _cloudtrail_api(record, operation, error),
        "src_endpoint": _cloudtrail_source(record),
        "cloud": cloud(
            text(record.get("recipientAccountId")) or text(identity.get("accountId")) or where.account,
            text(record.get("awsRegion")) or where.region,
        ),
    }
    if isinstance(record.get("userAgent"), str):
        event["http_request"] = {"user_agent": record["userAgent"]}
    resources = [_cloudtrail_resource(item) for item in items(record.get("resources")) if isinstance(item, dict)]
    if resources:
        event["resources"] = resources
    return event


def _cloudtrail_metadata(record: dict[str, Any], where: Where) -> dict[str, Any]:
    product: dict[str, Any] = {"name": "CloudTrail", "vendor_name": "AWS"}
    if isinstance(record.get("eventVersion"), str):
        product["version"] = record["eventVersion"]
    product["feature"] = {"name": text(record.get("eventCategory")) or "Management"}
    metadata = {"version": OCSF_VERSION, "product": product, "profiles": list(PROFILES), "uid": where.event_uid}
    if isinstance(record.get("eventType"), str):
        metadata["event_code"] = record["eventType"]
    return metadata


def _cloudtrail_actor(identity: dict[str, Any]) -> dict[str, Any]:
    """actor.user from userIdentity, actor.session from its sessionContext; Unmappable when nothing
    names who acted (OCSF asks for at least one of user, session, invoked_by)."""
    user = some(
        uid=text(identity.get("arn")),
        uid_alt=text(identity.get("principalId")),
        name=text(identity.get("userName")) or text(identity.get("invokedBy")),
        credential_uid=text(identity.get("accessKeyId")),
    )
    kind = text(identity.get("type"))
    if kind:
        type_id = _USER_TYPES.get(kind, 99)
        user.update(type_id=type_id, type=USER_CAPTIONS.get(type_id, kind))
    if text(identity.get("accountId")):
        user["account"] = {"uid": identity["accountId"], "type_id": 10, "type": "AWS Account"}
    actor: dict[str, Any] = {}
    if user.keys() & {"uid", "name", "account"}:
        actor["user"] = user
    context = mapping(identity.get("sessionContext"))
    attributes = mapping(context.get("attributes"))
    session = some(issuer=text(mapping(context.get("sessionIssuer")).get("arn")))
    created = iso_ms(attributes["creationDate"]) if isinstance(attributes.get("creationDate"), str) else None
    if created is not None:
        session.update(created_time=created, created_time_dt=datetime_text(created))
    if attributes.get("mfaAuthenticated") in ("true", "false"):
        session["is_mfa"] = attributes["mfaAuthenticated"] == "true"
    if session:
        actor["session"] = session
    if text(identity.get("invokedBy")):
        actor["invoked_by"] = identity["invokedBy"]
    provider = text(mapping(context.get("webIdFederationData")).get("federatedProvider"))
    provider = provider or text(identity.get("identityProvider"))
    if provider:
        actor["idp"] = {"name": provider}
    if not actor.keys() & {"user", "session", "invoked_by"}:
        raise Unmappable("userIdentity names no one (actor)")
    return actor


def _cloudtrail_api(record: dict[str, Any], operation: str, error: str) -> dict[str, Any]:
    api: dict[str, Any] = {"operation": operation}
    if text(record.get("eventSource")):
        api["service"] = {"name": record["eventSource"]}
    if text(record.get("apiVersion")):
        api["version"] = record["apiVersion"]
    if text(record.get("requestID")):
        api["request"] = {"uid": record["requestID"]}
        if record.get("requestParameters") is not None:
            api["request"]["data"] = record["requestParameters"]
    response = some(error=error, message=text(record.get("errorMessage")))
    if record.get("responseElements") is not None:
        response["data"] = record["responseElements"]
    if response:
        api["response"] = response
    return api


def _cloudtrail_source(record: dict[str, Any]) -> dict[str, Any]:
    """sourceIPAddress as `ip` when it is one, else as `name` and `domain` (an AWS service such as
    `ec2.amazonaws.com`, or `AWS Internal`); the VPC endpoint as `uid`."""
    source = text(record.get("sourceIPAddress"))
    found = endpoint(source)
    if text(record.get("vpcEndpointId")):
        found["uid"] = record["vpcEndpointId"]
    if not found:
        raise Unmappable("no sourceIPAddress (src_endpoint)")
    return found


def _cloudtrail_resource(item: dict[str, Any]) -> dict[str, Any]:
    resource = some(uid=text(item.get("ARN")), type=text(item.get("type")))
    if text(item.get("accountId")):
        resource["owner"] = {"account": {"uid": item["accountId"], "type_id": 10, "type": "AWS Account"}}
    return resource


def status_fields(status: Status, code: str, detail: str) -> dict[str, Any]:
    found: dict[str, Any] = {"status_id": int(status), "status": status.name.title()}
    found.update(some(status_code=code, status_detail=detail))
    return found


def endpoint(address: str) -> dict[str, Any]:
    if not address:
        return {}
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {"name": address, "domain": address} if "." in address and " " not in address else {"name": address}
    return {"ip": address}


def some(**values: str) -> dict[str, Any]:
    """The named values that are not empty."""
    return {name: value for name, value in values.items() if value}


def text(value: Any) -> str:
    """A field's value if it is a string, else "": a record may hold any type anywhere."""
    return value if isinstance(value, str) else ""


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
