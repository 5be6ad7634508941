"""Reading and checking the environment's values: each parser names the variable in its errors and
never echoes a secret (`shown`). `settings.Settings.from_env` builds the one settings object from
them; the groups (`processing`, `resource_tags`, `operations`) are the settings a feature adds.
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from forwarder.errors import ConfigError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?.*@", re.DOTALL)


def shown(raw: str) -> str:
    """A setting's value as errors and reprs may show it: any credentials (everything up to the
    last `@`) and any query or fragment (tokens) redacted, whether or not the value parses as a URL."""
    text = _USERINFO.sub(r"\1[redacted]@", raw)
    for mark in "?#":
        head, found, _ = text.partition(mark)
        text = head + (f"{mark}[redacted]" if found else "")
    return text


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {shown(raw)!r}")


def number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):  # raised here, not in the handler, so float's error (quoting raw) is not chained
        raise ConfigError(f"{name} must be a number, got {shown(raw)!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {shown(raw)!r}")
    return value


def integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = number(env, name, default, low, high)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {shown(env[name])!r}")
    return int(value)


def tag_list(raw: str) -> tuple[str, ...]:
    return tuple(tag.strip() for tag in raw.split(",") if tag.strip())


def pattern(env: Mapping[str, str], name: str) -> re.Pattern[str] | None:
    """A Python regular expression, or None when unset or blank. The error gives re's reason and
    position, not the pattern: a scrubbing rule may spell out the very value it is there to hide."""
    raw = env.get(name, "")
    if not raw.strip():
        return None
    try:
        return re.compile(raw)
    except re.error as exc:
        reason, position = exc.msg, exc.pos
    raise ConfigError(f"{name} is not a valid Python regular expression: {reason} at position {position}")


def replacement(env: Mapping[str, str], rule: re.Pattern[str] | None) -> str:
    """DD_SCRUBBING_RULE_REPLACEMENT, a `re.sub` template as in the Datadog Forwarder (so `\\1` works),
    checked now against the rule's groups: a bad group reference would otherwise fail every event."""
    replacement = env.get("DD_SCRUBBING_RULE_REPLACEMENT", "")
    if rule is None:
        return replacement
    try:  # the rule with an empty alternative matches "" and has the rule's groups; the newline ends a (?x) comment
        probe = re.compile(rule.pattern + "\n|", rule.flags).match("")
        if probe is not None:
            probe.expand(replacement)
    except (re.error, IndexError) as exc:
        reason = exc.msg if isinstance(exc, re.error) else str(exc)
    else:
        return replacement
    raise ConfigError(f"DD_SCRUBBING_RULE_REPLACEMENT is not a valid replacement for DD_SCRUBBING_RULE: {reason}")


def cluster_key_pattern(env: Mapping[str, str]) -> re.Pattern[str] | None:
    """FORWARDER_K8S_CLUSTER_KEY_PATTERN, checked now for its `cluster` group: without one it could
    never name a cluster, and every audit file would go unlabelled without a word."""
    name = "FORWARDER_K8S_CLUSTER_KEY_PATTERN"
    found = pattern(env, name)
    if found is not None and "cluster" not in found.groupindex:
        raise ConfigError(f"{name} must have a named group `cluster`, as in ^k8s-audit/(?P<cluster>[^/]+)/")
    return found


MEMORY_SHARE_FOR_A_ROW_GROUP = 0.4
"""pyarrow holds a decoded row group at about 1.3 times its uncompressed size: 40% leaves half the memory free."""


def parquet_max_row_group_bytes(env: Mapping[str, str]) -> int:
    """FORWARDER_PARQUET_MAX_ROW_GROUP_BYTES, by default a share of the function's memory (Lambda's
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE, in MB) or, outside Lambda, of the machine's."""
    memory_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "").strip()
    memory = int(memory_mb) << 20 if memory_mb.isdigit() else os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    default = int(memory * MEMORY_SHARE_FOR_A_ROW_GROUP)
    return integer(env, "FORWARDER_PARQUET_MAX_ROW_GROUP_BYTES", default, 1 << 20, 1 << 40)


def processing(env: Mapping[str, str]) -> dict[str, Any]:
    """The filtering, scrubbing and multiline settings, each pattern compiled (and so checked) here."""
    rule = pattern(env, "DD_SCRUBBING_RULE")
    return {
        "include_at_match": pattern(env, "INCLUDE_AT_MATCH"),
        "exclude_at_match": pattern(env, "EXCLUDE_AT_MATCH"),
        "redact_ip": flag(env, "REDACT_IP", False),
        "redact_email": flag(env, "REDACT_EMAIL", False),
        "scrubbing_rule": rule,
        "scrubbing_rule_replacement": replacement(env, rule),
        "multiline_pattern": pattern(env, "DD_MULTILINE_LOG_REGEX_PATTERN"),
    }


def resource_tags(env: Mapping[str, str]) -> dict[str, Any]:
    """Tags from the source's own AWS resource (forwarder.tags): the Datadog Forwarder's names and default TTL."""
    return {
        "fetch_s3_tags": flag(env, "DD_FETCH_S3_TAGS", False),
        "fetch_log_group_tags": flag(env, "DD_FETCH_LOG_GROUP_TAGS", False),
        "tags_cache_ttl_seconds": integer(env, "DD_TAGS_CACHE_TTL_SECONDS", 300, 1, 7 * 86400),
    }


class OutputFormat(enum.StrEnum):
    """FORWARDER_OUTPUT_FORMAT: what each event becomes."""

    DATADOG = "datadog"
    OCSF = "ocsf"


class IntakeFormat(enum.StrEnum):
    """FORWARDER_INTAKE_FORMAT: how entries travel to the intake."""

    DATADOG = "datadog"
    JSON = "json"
    NDJSON = "ndjson"
    SPLUNK_HEC = "splunk-hec"


class IntakeAuth(enum.StrEnum):
    """FORWARDER_INTAKE_AUTH: how a generic intake's secret (the DD_API_KEY settings) is sent."""

    NONE = "none"
    BEARER = "bearer"
    BASIC = "basic"
    SPLUNK = "splunk"
    HEADER = "header"


HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADERS_OWNED = frozenset({"content-type", "content-encoding", "content-length", "host", "user-agent", "dd-api-key"})


_Choice = TypeVar("_Choice", bound=enum.StrEnum)


def choice(env: Mapping[str, str], name: str, kind: type[_Choice], default: _Choice | None) -> _Choice | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ConfigError(f"{name} must be one of {allowed}, got {shown(raw)!r}") from None


def headers(raw: str) -> tuple[tuple[str, str], ...]:
    """FORWARDER_INTAKE_HEADERS: `Name: value` pairs, one per line or separated by `;`. Errors name the
    header, never its value, which may be a token."""
    found: list[tuple[str, str]] = []
    for part in re.split(r"[;\n]", raw):
        if not part.strip():
            continue
        name, colon, value = part.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not HEADER_NAME.match(name):
            raise ConfigError("FORWARDER_INTAKE_HEADERS must be `Name: value` pairs separated by `;` or new lines")
        if name.lower() in _HEADERS_OWNED:
            raise ConfigError(f"FORWARDER_INTAKE_HEADERS: the forwarder sets {name} itself")
        if not value.isascii() or not value.isprintable():
            raise ConfigError(f"FORWARDER_INTAKE_HEADERS: the value of {name} has characters not allowed in a header")
        found.append((name, value))
    return tuple(found)


_LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "WARNING": "WARNING", "ERROR": "ERROR"}
SUPPORTED_DD_VARIABLES = frozenset(
    {
        *("DD_API_KEY", "DD_API_KEY_SECRET_ARN", "DD_API_KEY_SSM_NAME", "DD_KMS_API_KEY", "DD_SITE", "DD_URL"),
        *("DD_PORT", "DD_NO_SSL", "DD_SKIP_SSL_VALIDATION", "DD_USE_COMPRESSION", "DD_COMPRESSION_LEVEL"),
        *("DD_MAX_WORKERS", "DD_FORWARD_LOG", "DD_TAGS", "DD_SOURCE", "DD_LOG_LEVEL", "DD_USE_VPC"),
        *("DD_MULTILINE_LOG_REGEX_PATTERN", "DD_SCRUBBING_RULE", "DD_SCRUBBING_RULE_REPLACEMENT"),
        *("DD_S3_BUCKET_NAME", "DD_STORE_FAILED_EVENTS"),
        *("DD_FETCH_S3_TAGS", "DD_FETCH_LOG_GROUP_TAGS", "DD_TAGS_CACHE_TTL_SECONDS"),
    }
)
"""The `DD_*` variables read here; any other in the environment is named in one warning (`forwarder.logs`)."""


def log_level(env: Mapping[str, str]) -> str:
    """DD_LOG_LEVEL as a `logging` level name (WARN is WARNING); "" when unset."""
    raw = env.get("DD_LOG_LEVEL", "").strip().upper()
    if raw and raw not in _LOG_LEVELS:
        raise ConfigError(f"DD_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {shown(raw)!r}")
    return _LOG_LEVELS.get(raw, "")


def unsupported_variables(env: Mapping[str, str]) -> list[str]:
    """The `DD_*` variables set that this forwarder does not read (README lists each with why)."""
    return sorted(name for name in env if name.startswith("DD_") and name not in SUPPORTED_DD_VARIABLES)


def store_prefix(env: Mapping[str, str]) -> str:
    raw = env.get("FORWARDER_STORE_PREFIX", "").strip().strip("/")
    if raw and (not raw.isprintable() or ".." in raw.split("/")):
        raise ConfigError(f"FORWARDER_STORE_PREFIX must be an S3 key prefix, got {shown(raw)!r}")
    return f"{raw}/" if raw else ""


def operations(env: Mapping[str, str]) -> dict[str, Any]:
    """The Datadog Forwarder's operational settings and the failure store's prefix."""
    return {
        "kms_api_key": env.get("DD_KMS_API_KEY", "").strip(),
        "log_level": log_level(env),
        "no_ssl": flag(env, "DD_NO_SSL", False),
        "use_vpc": flag(env, "DD_USE_VPC", False),
        "forward_log": flag(env, "DD_FORWARD_LOG", True),
        "store_prefix_setting": store_prefix(env),
    }
