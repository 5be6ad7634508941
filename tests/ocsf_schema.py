"""Checks an OCSF object against the pinned OCSF 1.1.0 schema (tests/fixtures/ocsf, SOURCES.md).

API Activity goes through the schema.ocsf.io JSON Schema export (required attributes, types, enums)
and then the rules that export leaves out: the "at least one of" constraints, `type_uid`, and the
datetime profile's `time_dt`. A Base Event (what the OCSF output passes through) is checked against
the required attributes of the OCSF source file `base_event.json` and its includes.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft7Validator

OCSF = Path(__file__).parent / "fixtures" / "ocsf"
PINNED = orjson.loads((OCSF / "version-1.1.0.json").read_bytes())["version"]
AT_LEAST_ONE = {
    "actor": ("process", "user", "invoked_by", "session"),
    "user": ("account", "name", "uid"),
    "src_endpoint": ("ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name"),
    "url": ("url_string", "path"),
}
"""From the `constraints` of objects/actor.json, user.json, network_endpoint.json and url.json at 1.1.0."""
BASE_REQUIRED = ("activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid")
"""base_event.json's required attributes with those of includes/classification.json and occurrence.json."""


@functools.cache
def validator() -> Draft7Validator:
    schema = orjson.loads((OCSF / "api_activity_6003-cloud,datetime-1.1.0.schema.json").read_bytes())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def problems(event: dict[str, Any]) -> list[str]:
    """Everything wrong with `event` as OCSF 1.1.0; empty when it is valid."""
    if event.get("class_uid") == 0:
        return _base_problems(event)
    found = [f"{'/'.join(map(str, error.path))}: {error.message}" for error in validator().iter_errors(event)]
    found.extend(_rule_problems(event))
    return found


def _rule_problems(event: dict[str, Any]) -> list[str]:
    found: list[str] = []
    actor = event.get("actor", {})
    checked = {
        "actor": actor,
        "user": actor.get("user"),
        "src_endpoint": event.get("src_endpoint"),
        "url": event.get("http_request", {}).get("url"),
    }
    for resource in event.get("resources", []):
        if "owner" in resource:
            checked.setdefault("user", resource["owner"])
            found += _at_least_one("user", resource["owner"])
    for name, value in checked.items():
        if value is not None:
            found += _at_least_one(name, value)
    if event["type_uid"] != event["class_uid"] * 100 + event["activity_id"]:
        found.append(f"type_uid {event['type_uid']} is not class_uid * 100 + activity_id")
    found += _common_problems(event)
    return found


def _at_least_one(name: str, value: dict[str, Any]) -> list[str]:
    if any(value.get(key) not in (None, "", [], {}) for key in AT_LEAST_ONE[name]):
        return []
    return [f"{name} has none of {AT_LEAST_ONE[name]}"]


def _common_problems(event: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if event["metadata"].get("version") != PINNED:
        found.append(f"metadata.version is not {PINNED}")
    if not event["metadata"].get("product", {}).get("vendor_name"):
        found.append("metadata.product.vendor_name is missing")
    when = datetime.fromtimestamp(event["time"] / 1000, UTC)
    if not 2000 <= when.year <= 2100:
        found.append(f"time {event['time']} is not epoch milliseconds")
    if datetime.fromisoformat(event["time_dt"]) != when:
        found.append("time_dt is not time")
    if not isinstance(event.get("raw_data"), str) and event.get("unmapped", {}).get("forwarder.truncated") != "true":
        found.append("the original is not kept as raw_data (nor the entry marked truncated)")
    return found


def _base_problems(event: dict[str, Any]) -> list[str]:
    found = [f"{name} is missing" for name in BASE_REQUIRED if name not in event]
    if found:
        return found
    if (event["category_uid"], event["class_uid"], event["type_uid"]) != (0, 0, event["activity_id"]):
        found.append("a Base Event is category 0, class 0, type_uid = activity_id")
    return found + _common_problems(event)
