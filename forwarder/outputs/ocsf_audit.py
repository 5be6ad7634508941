"""Kubernetes audit events (audit.k8s.io v1 and v1beta1) as OCSF 1.1.0 API Activity.

As Amazon Security Lake maps EKS audit logs, with every verb mapped and the account taken from the
CloudWatch Logs envelope (docs/ocsf.md).
"""

from __future__ import annotations

from typing import Any

from forwarder.outputs.ocsf_map import (
    INFORMATIONAL,
    OCSF_VERSION,
    PROFILES,
    USER_CAPTIONS,
    Activity,
    Status,
    Unmappable,
    Where,
    class_fields,
    cloud,
    datetime_text,
    endpoint,
    items,
    mapping,
    some,
    status_fields,
    text,
    timed,
)
from forwarder.times import first_time

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


def from_audit(event: dict[str, Any], where: Where) -> dict[str, Any]:
    """A Kubernetes audit event (audit.k8s.io v1 or v1beta1) as API Activity."""
    verb = text(event.get("verb"))
    if not verb:
        raise Unmappable("no verb (api.operation)")
    stamps = (event.get("stageTimestamp"), event.get("requestReceivedTimestamp"), event.get("timestamp"))
    ms = first_time(stamps) or where.fallback_ms
    if ms is None:
        raise Unmappable("no stageTimestamp (time)")
    status = mapping(event.get("responseStatus"))
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
        "http_request": some(user_agent=text(event.get("userAgent"))),
    }
    started = first_time((event.get("requestReceivedTimestamp"),))
    if started is not None:
        found.update(start_time=started, start_time_dt=datetime_text(started))
    if text(event.get("stage")):
        found["message"] = event["stage"]
    if text(event.get("requestURI")):
        found["http_request"]["url"] = {"path": event["requestURI"]}
    if not found["http_request"]:
        del found["http_request"]
    reference = mapping(event.get("objectRef"))
    if reference:
        found["resources"] = [_audit_resource(reference)]
    return found


def _audit_metadata(event: dict[str, Any], where: Where) -> dict[str, Any]:
    if where.from_eks:
        product: dict[str, Any] = {"name": "Amazon EKS", "vendor_name": "AWS"}
        product["feature"] = {"name": "Elastic Kubernetes Service"}
    else:
        product = {"name": "Kubernetes", "vendor_name": "Kubernetes"}
    if text(event.get("apiVersion")):
        product["version"] = event["apiVersion"]
    metadata = {"version": OCSF_VERSION, "product": product, "profiles": list(PROFILES), "uid": where.event_uid}
    if text(event.get("level")):
        metadata["log_level"] = event["level"]
    return metadata


def _audit_actor(event: dict[str, Any]) -> dict[str, Any]:
    """The authenticated user (not an impersonated one: that stays in raw_data), and from EKS's
    `user.extra` the IAM session behind it."""
    account = mapping(event.get("user"))
    name = text(account.get("username"))
    user = some(name=name, uid=text(account.get("uid")))
    if name:
        type_id = 3 if name.startswith("system:") else 1
        user.update(type_id=type_id, type=USER_CAPTIONS[type_id])
    groups = [{"name": group} for group in items(account.get("groups")) if isinstance(group, str)]
    if groups:
        user["groups"] = groups
    extra = mapping(account.get("extra"))
    session = some(
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
    reference = mapping(event.get("objectRef"))
    api: dict[str, Any] = {"operation": verb}
    if text(reference.get("apiVersion")):
        api["version"] = reference["apiVersion"]
    if text(reference.get("apiGroup")):
        api["group"] = {"name": reference["apiGroup"]}
    if text(event.get("auditID")):
        api["request"] = {"uid": event["auditID"]}
    response = some(
        message=text(status.get("message")),
        error=text(status.get("reason")),
        error_message=text(status.get("status")),
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
    return status_fields(found, str(code), text(status.get("message")) if found is Status.FAILURE else "")


def _audit_source(event: dict[str, Any]) -> dict[str, Any]:
    addresses = [address for address in items(event.get("sourceIPs")) if isinstance(address, str) and address]
    if not addresses:
        raise Unmappable("no sourceIPs (src_endpoint)")
    found = endpoint(addresses[0])
    if len(addresses) > 1:
        found["intermediate_ips"] = addresses[1:]
    return found


def _audit_resource(reference: dict[str, Any]) -> dict[str, Any]:
    kind = text(reference.get("resource"))
    if kind and text(reference.get("subresource")):
        kind = f"{kind}/{reference['subresource']}"
    return some(
        type=kind,
        name=text(reference.get("name")),
        namespace=text(reference.get("namespace")),
        uid=text(reference.get("uid")),
        version=text(reference.get("resourceVersion")),
    )


def _first(value: Any) -> str:
    """The first string of a `user.extra` list (EKS writes each as a one-element list)."""
    values = items(value)
    return values[0] if values and isinstance(values[0], str) else ""
