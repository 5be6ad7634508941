"""CloudTrail records and Kubernetes audit events as OCSF 1.1.0 API Activity (class_uid 6003).

The mapping follows Amazon Security Lake's (source version 2.0, which writes OCSF 1.1.0); where it
leaves a field out or is ambiguous the choice made is in docs/ocsf.md. Pure functions: a parsed
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

KUBERNETES_VERBS = {
    "create": Activity.CREATE,
    "get": Activity.READ,
    "list": Activity.READ,
    "watch": Activity.READ,
    "update": Activity.UPDATE,
    "patch": Activity.UPDATE,
    "delete": Activity.DELETE,
    "deletecollection": Activity.DELETE,
}
"""Every resource verb the API server audits; any other (proxy, impersonate, bind, escalate, use,
the HTTP methods of non-resource requests) is Other."""

_USER_TYPES = {"IAMUser": 1, "IdentityCenterUser": 1, "Root": 2, "AWSService": 3}
"""CloudTrail userIdentity.type → user.type_id (User, Admin, System); any other type is 99 Other."""
_USER_CAPTIONS = {1: "User", 2: "Admin", 3: "System"}


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
    operation = _text(record.get("eventName"))
    if not operation:
        raise Unmappable("no eventName (api.operation)")
    ms = first_time((record.get("eventTime"), record.get("@timestamp"))) or where.fallback_ms
    if ms is None:
        raise Unmappable("no eventTime (time)")
    identity = _dict(record.get("userIdentity"))
    error = _text(record.get("errorCode"))
    event = {
        **class_fields(cloudtrail_activity(operation, record.get("readOnly"))),
        **INFORMATIONAL,
        **_status(Status.FAILURE if error else Status.SUCCESS, error, _text(record.get("errorMessage"))),
        **timed(ms),
        "metadata": _cloudtrail_metadata(record, where),
        "actor": _cloudtrail_actor(identity),
        "api": _cloudtrail_api(record, operation, error),
        "src_endpoint": _cloudtrail_source(record),
        "cloud": cloud(
            _text(record.get("recipientAccountId")) or _text(identity.get("accountId")) or where.account,
            _text(record.get("awsRegion")) or where.region,
        ),
    }
    if isinstance(record.get("userAgent"), str):
        event["http_request"] = {"user_agent": record["userAgent"]}
    resources = [_cloudtrail_resource(item) for item in _list(record.get("resources")) if isinstance(item, dict)]
    if resources:
        event["resources"] = resources
    return event


def _cloudtrail_metadata(record: dict[str, Any], where: Where) -> dict[str, Any]:
    product: dict[str, Any] = {"name": "CloudTrail", "vendor_name": "AWS"}
    if isinstance(record.get("eventVersion"), str):
        product["version"] = record["eventVersion"]
    product["feature"] = {"name": _text(record.get("eventCategory")) or "Management"}
    metadata = {"version": OCSF_VERSION, "product": product, "profiles": list(PROFILES), "uid": where.event_uid}
    if isinstance(record.get("eventType"), str):
        metadata["event_code"] = record["eventType"]
    return metadata


def _cloudtrail_actor(identity: dict[str, Any]) -> dict[str, Any]:
    """actor.user from userIdentity, actor.session from its sessionContext; Unmappable when nothing
    names who acted (OCSF asks for at least one of user, session, invoked_by)."""
    user = _some(
        uid=_text(identity.get("arn")),
        uid_alt=_text(identity.get("principalId")),
        name=_text(identity.get("userName")) or _text(identity.get("invokedBy")),
        credential_uid=_text(identity.get("accessKeyId")),
    )
    kind = _text(identity.get("type"))
    if kind:
        type_id = _USER_TYPES.get(kind, 99)
        user.update(type_id=type_id, type=_USER_CAPTIONS.get(type_id, kind))
    if _text(identity.get("accountId")):
        user["account"] = {"uid": identity["accountId"], "type_id": 10, "type": "AWS Account"}
    actor: dict[str, Any] = {}
    if user.keys() & {"uid", "name", "account"}:
        actor["user"] = user
    context = _dict(identity.get("sessionContext"))
    attributes = _dict(context.get("attributes"))
    session = _some(issuer=_text(_dict(context.get("sessionIssuer")).get("arn")))
    created = iso_ms(attributes["creationDate"]) if isinstance(attributes.get("creationDate"), str) else None
    if created is not None:
        session.update(created_time=created, created_time_dt=datetime_text(created))
    if attributes.get("mfaAuthenticated") in ("true", "false"):
        session["is_mfa"] = attributes["mfaAuthenticated"] == "true"
    if session:
        actor["session"] = session
    if _text(identity.get("invokedBy")):
        actor["invoked_by"] = identity["invokedBy"]
    provider = _text(_dict(context.get("webIdFederationData")).get("federatedProvider"))
    provider = provider or _text(identity.get("identityProvider"))
    if provider:
        actor["idp"] = {"name": provider}
    if not actor.keys() & {"user", "session", "invoked_by"}:
        raise Unmappable("userIdentity names no one (actor)")
    return actor


def _cloudtrail_api(record: dict[str, Any], operation: str, error: str) -> dict[str, Any]:
    api: dict[str, Any] = {"operation": operation}
    if _text(record.get("eventSource")):
        api["service"] = {"name": record["eventSource"]}
    if _text(record.get("apiVersion")):
        api["version"] = record["apiVersion"]
    if _text(record.get("requestID")):
        api["request"] = {"uid": record["requestID"]}
        if record.get("requestParameters") is not None:
            api["request"]["data"] = record["requestParameters"]
    response = _some(error=error, message=_text(record.get("errorMessage")))
    if record.get("responseElements") is not None:
        response["data"] = record["responseElements"]
    if response:
        api["response"] = response
    return api


def _cloudtrail_source(record: dict[str, Any]) -> dict[str, Any]:
    """sourceIPAddress as `ip` when it is one, else as `name` and `domain` (an AWS service such as
    `ec2.amazonaws.com`, or `AWS Internal`); the VPC endpoint as `uid`."""
    source = _text(record.get("sourceIPAddress"))
    endpoint = _endpoint(source)
    if _text(record.get("vpcEndpointId")):
        endpoint["uid"] = record["vpcEndpointId"]
    if not endpoint:
        raise Unmappable("no sourceIPAddress (src_endpoint)")
    return endpoint


def _cloudtrail_resource(item: dict[str, Any]) -> dict[str, Any]:
    resource = _some(uid=_text(item.get("ARN")), type=_text(item.get("type")))
    if _text(item.get("accountId")):
        resource["owner"] = {"account": {"uid": item["accountId"], "type_id": 10, "type": "AWS Account"}}
    return resource


def from_audit(event: dict[str, Any], where: Where) -> dict[str, Any]:
    """A Kubernetes audit event (audit.k8s.io v1 or v1beta1) as API Activity."""
    verb = _text(event.get("verb"))
    if not verb:
        raise Unmappable("no verb (api.operation)")
    stamps = (event.get("stageTimestamp"), event.get("requestReceivedTimestamp"), event.get("timestamp"))
    ms = first_time(stamps) or where.fallback_ms
    if ms is None:
        raise Unmappable("no stageTimestamp (time)")
    status = _dict(event.get("responseStatus"))
    code = status.get("code") if type(status.get("code")) is int else None
    found = {
        **class_fields(KUBERNETES_VERBS.get(verb, Activity.OTHER)),
        **INFORMATIONAL,
        **_audit_status(code, status),
        **timed(ms),
        "metadata": _audit_metadata(event, where),
        "actor": _audit_actor(event),
        "api": _audit_api(event, verb, code, status),
        "src_endpoint": _audit_source(event),
        "cloud": cloud(where.account, where.region),
        "http_request": _some(user_agent=_text(event.get("userAgent"))),
    }
    started = first_time((event.get("requestReceivedTimestamp"),))
    if started is not None:
        found.update(start_time=started, start_time_dt=datetime_text(started))
    if _text(event.get("stage")):
        found["message"] = event["stage"]
    if _text(event.get("requestURI")):
        found["http_request"]["url"] = {"path": event["requestURI"]}
    if not found["http_request"]:
        del found["http_request"]
    reference = _dict(event.get("objectRef"))
    if reference:
        found["resources"] = [_audit_resource(reference)]
    return found


def _audit_metadata(event: dict[str, Any], where: Where) -> dict[str, Any]:
    if where.from_eks:
        product: dict[str, Any] = {"name": "Amazon EKS", "vendor_name": "AWS"}
        product["feature"] = {"name": "Elastic Kubernetes Service"}
    else:
        product = {"name": "Kubernetes", "vendor_name": "Kubernetes"}
    if _text(event.get("apiVersion")):
        product["version"] = event["apiVersion"]
    metadata = {"version": OCSF_VERSION, "product": product, "profiles": list(PROFILES), "uid": where.event_uid}
    if _text(event.get("level")):
        metadata["log_level"] = event["level"]
    return metadata


def _audit_actor(event: dict[str, Any]) -> dict[str, Any]:
    """The authenticated user (not an impersonated one: that stays in raw_data), and from EKS's
    `user.extra` the IAM session behind it."""
    account = _dict(event.get("user"))
    name = _text(account.get("username"))
    user = _some(name=name, uid=_text(account.get("uid")))
    if name:
        type_id = 3 if name.startswith("system:") else 1
        user.update(type_id=type_id, type=_USER_CAPTIONS[type_id])
    groups = [{"name": group} for group in _list(account.get("groups")) if isinstance(group, str)]
    if groups:
        user["groups"] = groups
    extra = _dict(account.get("extra"))
    session = _some(
        uid=_first(extra.get("sessionName")),
        credential_uid=_first(extra.get("accessKeyId")),
        issuer=_first(extra.get("canonicalArn")),
    )
    actor: dict[str, Any] = {}
    if user.keys() & {"name", "uid"}:
        actor["user"] = user
    if session:
        actor["session"] = session
    if not actor:
        raise Unmappable("no user.username (actor)")
    return actor


def _audit_api(event: dict[str, Any], verb: str, code: int | None, status: dict[str, Any]) -> dict[str, Any]:
    reference = _dict(event.get("objectRef"))
    api: dict[str, Any] = {"operation": verb}
    if _text(reference.get("apiVersion")):
        api["version"] = reference["apiVersion"]
    if _text(reference.get("apiGroup")):
        api["group"] = {"name": reference["apiGroup"]}
    if _text(event.get("auditID")):
        api["request"] = {"uid": event["auditID"]}
    response = _some(
        message=_text(status.get("message")),
        error=_text(status.get("reason")),
        error_message=_text(status.get("status")),
    )
    if code is not None:
        response["code"] = code
    if response:
        api["response"] = response
    return api


def _audit_status(code: int | None, status: dict[str, Any]) -> dict[str, Any]:
    """Success below 400, Failure from 400; Unknown before a response (the RequestReceived stage)."""
    if code is None:
        return {"status_id": int(Status.UNKNOWN), "status": "Unknown"}
    found = Status.FAILURE if code >= 400 else Status.SUCCESS
    return _status(found, str(code), _text(status.get("message")) if found is Status.FAILURE else "")


def _audit_source(event: dict[str, Any]) -> dict[str, Any]:
    addresses = [address for address in _list(event.get("sourceIPs")) if isinstance(address, str) and address]
    if not addresses:
        raise Unmappable("no sourceIPs (src_endpoint)")
    endpoint = _endpoint(addresses[0])
    if len(addresses) > 1:
        endpoint["intermediate_ips"] = addresses[1:]
    return endpoint


def _audit_resource(reference: dict[str, Any]) -> dict[str, Any]:
    kind = _text(reference.get("resource"))
    if kind and _text(reference.get("subresource")):
        kind = f"{kind}/{reference['subresource']}"
    return _some(
        type=kind,
        name=_text(reference.get("name")),
        namespace=_text(reference.get("namespace")),
        uid=_text(reference.get("uid")),
        version=_text(reference.get("resourceVersion")),
    )


def _status(status: Status, code: str, detail: str) -> dict[str, Any]:
    found: dict[str, Any] = {"status_id": int(status), "status": status.name.title()}
    found.update(_some(status_code=code, status_detail=detail))
    return found


def _endpoint(address: str) -> dict[str, Any]:
    if not address:
        return {}
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {"name": address, "domain": address} if "." in address and " " not in address else {"name": address}
    return {"ip": address}


def _some(**values: str) -> dict[str, Any]:
    """The named values that are not empty."""
    return {name: value for name, value in values.items() if value}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _first(value: Any) -> str:
    """The first string of a `user.extra` list (EKS writes each as a one-element list)."""
    items = _list(value)
    return items[0] if items and isinstance(items[0], str) else ""
