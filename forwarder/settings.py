"""Every setting, read once from the environment into one frozen object.

Names follow the Datadog Forwarder (`DD_*`) where it has the same setting, so its users switch
without relearning; settings it lacks are `FORWARDER_*`. The API key is the one value not read here:
it is resolved lazily (Secrets Manager or SSM through Powertools Parameters, cached), so a missing
key is a clear error at the first invocation instead of a crash at import.
"""

from __future__ import annotations

import enum
import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from forwarder import __version__, apikey
from forwarder.errors import ConfigError

K8S_AUDIT_POLICY = "FORWARDER_K8S_AUDIT_POLICY"
K8S_AUDIT_POLICY_MAX_BYTES = 1 << 20
"""A policy in S3 larger than this is refused rather than read into memory."""
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?.*@", re.DOTALL)


def _shown(raw: str) -> str:
    """A setting's value as errors and reprs may show it: any credentials (everything up to the
    last `@`) and any query or fragment (tokens) redacted, whether or not the value parses as a URL."""
    text = _USERINFO.sub(r"\1[redacted]@", raw)
    for mark in "?#":
        head, found, _ = text.partition(mark)
        text = head + (f"{mark}[redacted]" if found else "")
    return text


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {_shown(raw)!r}")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):  # raised here, not in the handler, so float's error (quoting raw) is not chained
        raise ConfigError(f"{name} must be a number, got {_shown(raw)!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {_shown(raw)!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _number(env, name, default, low, high)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {_shown(env[name])!r}")
    return int(value)


def _tags(raw: str) -> tuple[str, ...]:
    return tuple(tag.strip() for tag in raw.split(",") if tag.strip())


def _pattern(env: Mapping[str, str], name: str) -> re.Pattern[str] | None:
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


def _replacement(env: Mapping[str, str], rule: re.Pattern[str] | None) -> str:
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


def _cluster_key_pattern(env: Mapping[str, str]) -> re.Pattern[str] | None:
    """FORWARDER_K8S_CLUSTER_KEY_PATTERN, checked now for its `cluster` group: without one it could
    never name a cluster, and every audit file would go unlabelled without a word."""
    name = "FORWARDER_K8S_CLUSTER_KEY_PATTERN"
    pattern = _pattern(env, name)
    if pattern is not None and "cluster" not in pattern.groupindex:
        raise ConfigError(f"{name} must have a named group `cluster`, as in ^k8s-audit/(?P<cluster>[^/]+)/")
    return pattern


def _processing(env: Mapping[str, str]) -> dict[str, Any]:
    """The filtering, scrubbing and multiline settings, each pattern compiled (and so checked) here."""
    rule = _pattern(env, "DD_SCRUBBING_RULE")
    return {
        "include_at_match": _pattern(env, "INCLUDE_AT_MATCH"),
        "exclude_at_match": _pattern(env, "EXCLUDE_AT_MATCH"),
        "redact_ip": _flag(env, "REDACT_IP", False),
        "redact_email": _flag(env, "REDACT_EMAIL", False),
        "scrubbing_rule": rule,
        "scrubbing_rule_replacement": _replacement(env, rule),
        "multiline_pattern": _pattern(env, "DD_MULTILINE_LOG_REGEX_PATTERN"),
    }


def _resource_tags(env: Mapping[str, str]) -> dict[str, Any]:
    """Tags from the source's own AWS resource (forwarder.tags): the Datadog Forwarder's names and default TTL."""
    return {
        "fetch_s3_tags": _flag(env, "DD_FETCH_S3_TAGS", False),
        "fetch_log_group_tags": _flag(env, "DD_FETCH_LOG_GROUP_TAGS", False),
        "tags_cache_ttl_seconds": _integer(env, "DD_TAGS_CACHE_TTL_SECONDS", 300, 1, 7 * 86400),
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


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADERS_OWNED = frozenset({"content-type", "content-encoding", "content-length", "host", "user-agent", "dd-api-key"})


_Choice = TypeVar("_Choice", bound=enum.StrEnum)


def _choice(env: Mapping[str, str], name: str, kind: type[_Choice], default: _Choice | None) -> _Choice | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ConfigError(f"{name} must be one of {allowed}, got {_shown(raw)!r}") from None


def _headers(raw: str) -> tuple[tuple[str, str], ...]:
    """FORWARDER_INTAKE_HEADERS: `Name: value` pairs, one per line or separated by `;`. Errors name the
    header, never its value, which may be a token."""
    found: list[tuple[str, str]] = []
    for part in re.split(r"[;\n]", raw):
        if not part.strip():
            continue
        name, colon, value = part.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not _HEADER_NAME.match(name):
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
        raise ConfigError(f"DD_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {_shown(raw)!r}")
    return _LOG_LEVELS.get(raw, "")


def unsupported_variables(env: Mapping[str, str]) -> list[str]:
    """The `DD_*` variables set that this forwarder does not read (README lists each with why)."""
    return sorted(name for name in env if name.startswith("DD_") and name not in SUPPORTED_DD_VARIABLES)


def _store_prefix(env: Mapping[str, str]) -> str:
    raw = env.get("FORWARDER_STORE_PREFIX", "").strip().strip("/")
    if raw and (not raw.isprintable() or ".." in raw.split("/")):
        raise ConfigError(f"FORWARDER_STORE_PREFIX must be an S3 key prefix, got {_shown(raw)!r}")
    return f"{raw}/" if raw else ""


def _operations(env: Mapping[str, str]) -> dict[str, Any]:
    """The Datadog Forwarder's operational settings and the failure store's prefix."""
    return {
        "kms_api_key": env.get("DD_KMS_API_KEY", "").strip(),
        "log_level": log_level(env),
        "no_ssl": _flag(env, "DD_NO_SSL", False),
        "use_vpc": _flag(env, "DD_USE_VPC", False),
        "forward_log": _flag(env, "DD_FORWARD_LOG", True),
        "store_prefix_setting": _store_prefix(env),
    }


@dataclass(frozen=True, slots=True)
class Settings:
    """The forwarder's configuration; see the README's table for each variable."""

    site: str = "datadoghq.com"
    url: str = ""
    port: int = 443
    api_key: str = field(default="", repr=False)
    api_key_secret_arn: str = ""
    api_key_ssm_name: str = ""
    tags: tuple[str, ...] = ()
    source_override: str = ""
    use_compression: bool = True
    compression_level: int = 6
    skip_ssl_validation: bool = False
    max_workers: int = 4
    http_timeout_seconds: float = 10.0
    max_attempts: int = 6
    deadline_margin_seconds: float = 5.0
    batch_max_entries: int = 1000
    batch_max_bytes: int = 5_000_000
    entry_max_bytes: int = 1_000_000
    read_chunk_bytes: int = 1 << 20
    keep_freed_memory: bool = True
    store_failed_events: bool = False
    store_bucket: str = ""
    continuation_queue_url: str = ""
    idempotency_table: str = ""
    idempotency_expiry_seconds: int = 86400
    function_name: str = "security-log-forwarder"
    region: str = ""
    # Filtering and scrubbing (forwarder.process) and multiline text (forwarder.formats.multiline):
    # the Datadog Forwarder's names and meaning; README "Filtering and scrubbing".
    include_at_match: re.Pattern[str] | None = None
    exclude_at_match: re.Pattern[str] | None = None
    redact_ip: bool = False
    redact_email: bool = False
    scrubbing_rule: re.Pattern[str] | None = None
    scrubbing_rule_replacement: str = ""
    multiline_pattern: re.Pattern[str] | None = None
    # Tags from the bucket's or log group's own AWS tags (forwarder.tags); README "Labels and tags".
    fetch_s3_tags: bool = False
    fetch_log_group_tags: bool = False
    tags_cache_ttl_seconds: int = 300
    k8s_audit_policy: str = ""
    """FORWARDER_K8S_AUDIT_POLICY: a Kubernetes audit Policy (YAML or JSON), `ssm:<name>` or `s3://bucket/key`."""

    # Kubernetes audit files in S3 (forwarder.sources): the cluster a key names.
    k8s_cluster_key_pattern: re.Pattern[str] | None = None
    """FORWARDER_K8S_CLUSTER_KEY_PATTERN: a regex searched in the key, its group `cluster` the cluster's name."""

    # The output's format and a generic intake (docs/ocsf.md, README "Other intakes").
    output_format: OutputFormat = OutputFormat.DATADOG
    intake_format: IntakeFormat = IntakeFormat.DATADOG
    intake_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    intake_auth: IntakeAuth | None = None
    intake_auth_header: str = "Authorization"

    # The Datadog Forwarder's operational settings (README "Switching from the Datadog Forwarder").
    kms_api_key: str = field(default="", repr=False)
    """DD_KMS_API_KEY: the API key as base64 KMS ciphertext, decrypted once per container."""
    log_level: str = ""
    """DD_LOG_LEVEL, as a `logging` level name; POWERTOOLS_LOG_LEVEL wins when set (`forwarder.logs`)."""
    no_ssl: bool = False
    """DD_NO_SSL: http:// to a host-only DD_URL or the site's intake; for a test intake only."""
    use_vpc: bool = False
    """DD_USE_VPC: accepted; PrivateLink's private DNS serves the usual intake host in the VPC."""
    forward_log: bool = True
    """DD_FORWARD_LOG: false reads and counts every event but sends none (each ends `filtered`)."""
    store_prefix_setting: str = ""
    """FORWARDER_STORE_PREFIX, normalised to end with `/`; empty means failed-events/<function name>/."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; errors name the variable, never a secret's value."""
        env = os.environ if env is None else env
        default = cls()
        settings = cls(
            site=env.get("DD_SITE", "").strip() or default.site,
            url=env.get("DD_URL", "").strip(),
            port=_integer(env, "DD_PORT", default.port, 1, 65535),
            api_key=env.get("DD_API_KEY", "").strip(),
            api_key_secret_arn=env.get("DD_API_KEY_SECRET_ARN", "").strip(),
            api_key_ssm_name=env.get("DD_API_KEY_SSM_NAME", "").strip(),
            tags=_tags(env.get("DD_TAGS", "")),
            source_override=env.get("DD_SOURCE", "").strip(),
            use_compression=_flag(env, "DD_USE_COMPRESSION", default.use_compression),
            compression_level=_integer(env, "DD_COMPRESSION_LEVEL", default.compression_level, 0, 9),
            skip_ssl_validation=_flag(env, "DD_SKIP_SSL_VALIDATION", default.skip_ssl_validation),
            max_workers=_integer(env, "DD_MAX_WORKERS", default.max_workers, 1, 64),
            http_timeout_seconds=_number(env, "FORWARDER_HTTP_TIMEOUT_SECONDS", default.http_timeout_seconds, 0.1, 900),
            max_attempts=_integer(env, "FORWARDER_MAX_ATTEMPTS", default.max_attempts, 1, 100),
            deadline_margin_seconds=_number(
                env, "FORWARDER_DEADLINE_MARGIN_SECONDS", default.deadline_margin_seconds, 0, 900
            ),
            batch_max_entries=_integer(env, "FORWARDER_BATCH_MAX_ENTRIES", default.batch_max_entries, 1, 1000),
            batch_max_bytes=_integer(env, "FORWARDER_BATCH_MAX_BYTES", default.batch_max_bytes, 1024, 5_000_000),
            entry_max_bytes=_integer(env, "FORWARDER_ENTRY_MAX_BYTES", default.entry_max_bytes, 1024, 1_000_000),
            read_chunk_bytes=_integer(env, "FORWARDER_READ_CHUNK_BYTES", default.read_chunk_bytes, 4096, 64 << 20),
            keep_freed_memory=_flag(env, "FORWARDER_KEEP_FREED_MEMORY", default.keep_freed_memory),
            store_failed_events=_flag(env, "DD_STORE_FAILED_EVENTS", default.store_failed_events),
            store_bucket=env.get("DD_S3_BUCKET_NAME", "").strip(),
            continuation_queue_url=env.get("FORWARDER_CONTINUATION_QUEUE_URL", "").strip(),
            idempotency_table=env.get("FORWARDER_IDEMPOTENCY_TABLE", "").strip(),
            idempotency_expiry_seconds=_integer(
                env, "FORWARDER_IDEMPOTENCY_EXPIRY_SECONDS", default.idempotency_expiry_seconds, 60, 30 * 86400
            ),
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", "").strip() or default.function_name,
            region=env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip(),
            **_processing(env),
            **_resource_tags(env),
            k8s_audit_policy=env.get(K8S_AUDIT_POLICY, "").strip(),
            k8s_cluster_key_pattern=_cluster_key_pattern(env),
            # the output's format and a generic intake
            output_format=_choice(env, "FORWARDER_OUTPUT_FORMAT", OutputFormat, default.output_format)
            or default.output_format,
            intake_format=_choice(env, "FORWARDER_INTAKE_FORMAT", IntakeFormat, default.intake_format)
            or default.intake_format,
            intake_headers=_headers(env.get("FORWARDER_INTAKE_HEADERS", "")),
            intake_auth=_choice(env, "FORWARDER_INTAKE_AUTH", IntakeAuth, None),
            intake_auth_header=env.get("FORWARDER_INTAKE_AUTH_HEADER", "").strip() or default.intake_auth_header,
            **_operations(env),
        )
        settings._check_generic_intake()
        settings._check_intake_url()
        settings._check_k8s_audit_policy()
        if settings.store_failed_events and not settings.store_bucket:
            raise ConfigError("DD_STORE_FAILED_EVENTS is true but DD_S3_BUCKET_NAME names no bucket")
        if settings.entry_max_bytes + 2 > settings.batch_max_bytes:
            raise ConfigError("FORWARDER_ENTRY_MAX_BYTES must be smaller than FORWARDER_BATCH_MAX_BYTES")
        return settings

    @property
    def intake_url(self) -> str:
        """DD_URL as a full URL, or a bare host (DD_PORT), or the site's v2 logs intake; https unless
        DD_NO_SSL. DD_USE_VPC keeps the host: PrivateLink's private DNS answers for it in the VPC."""
        if "://" in self.url or self.intake_format is not IntakeFormat.DATADOG:
            return self.url
        scheme = "http" if self.no_ssl else "https"
        if self.url:
            return f"{scheme}://{self.url}:{self.port}/api/v2/logs"
        return f"{scheme}://http-intake.logs.{self.site}/api/v2/logs"

    @property
    def version(self) -> str:
        return __version__

    @property
    def store_prefix(self) -> str:
        """Where failed events are kept in DD_S3_BUCKET_NAME: FORWARDER_STORE_PREFIX (the template sets
        it from the stack's name, so a replaced function still finds them), else one per function."""
        return self.store_prefix_setting or f"failed-events/{self.function_name}/"

    def __repr__(self) -> str:
        """The dataclass's repr, less the API key, with DD_URL's credentials and query redacted."""
        shown_fields = (
            f"{item.name}={_shown(self.url) if item.name == 'url' else getattr(self, item.name)!r}"
            for item in fields(self)
            if item.repr
        )
        return f"Settings({', '.join(shown_fields)})"

    def _check_intake_url(self) -> None:
        """DD_URL must give an http(s) URL with a host and, if any, a valid port. The error shows
        it redacted, and is raised outside the ValueError's handler so as not to chain that error,
        which can quote the URL."""
        try:
            parts = urlsplit(self.intake_url)
            valid = parts.scheme in {"http", "https"} and bool(parts.hostname) and parts.port != 0
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(f"DD_URL must be an http(s) URL or a host name, got {_shown(self.url)!r}")

    # FORWARDER_K8S_AUDIT_POLICY: checked here when inline; fetched (SSM, S3) once per container.

    @property
    def k8s_audit_policy_origin(self) -> str:
        """Where the audit policy comes from, as its errors name it."""
        reference = self.k8s_audit_policy
        if reference.startswith(("ssm:", "s3://")):
            return f"{K8S_AUDIT_POLICY} ({reference})"
        return K8S_AUDIT_POLICY

    def _check_k8s_audit_policy(self) -> None:
        """An inline policy is compiled now, so a wrong one is an error at start; a stored one is
        compiled when first fetched, before any event is read. DD_SOURCE renaming the source would
        keep the policy from ever applying, so the two together are refused."""
        reference = self.k8s_audit_policy
        if not reference:
            return
        if self.source_override and self.source_override != "kubernetes.audit":
            raise ConfigError(
                f"{K8S_AUDIT_POLICY} applies to the kubernetes.audit source, which DD_SOURCE renames "
                f"to {self.source_override!r}: the policy would never apply"
            )
        if reference.startswith("ssm:"):
            if not reference.removeprefix("ssm:").strip():
                raise ConfigError(f"{K8S_AUDIT_POLICY}: ssm: names no parameter")
        elif reference.startswith("s3://"):
            _s3_location(reference)
        else:
            from forwarder.process.k8s_policy_document import compiled

            compiled(reference, K8S_AUDIT_POLICY)

    def resolve_k8s_audit_policy(self) -> str:
        """The policy document: inline, or fetched from SSM or S3 once per container."""
        reference = self.k8s_audit_policy
        if reference.startswith("ssm:"):
            return _policy_from_ssm(reference.removeprefix("ssm:").strip())
        if reference.startswith("s3://"):
            return _policy_from_s3(*_s3_location(reference))
        return reference

    def _check_generic_intake(self) -> None:
        """A generic intake has no default URL: DD_URL must name it in full."""
        if self.intake_format is IntakeFormat.DATADOG:
            return
        if "://" not in self.url:
            raise ConfigError(
                f"FORWARDER_INTAKE_FORMAT={self.intake_format.value} needs DD_URL to be a full http(s) URL"
            )
        if self.intake_auth is IntakeAuth.HEADER and not _HEADER_NAME.match(self.intake_auth_header):
            raise ConfigError("FORWARDER_INTAKE_AUTH_HEADER must be an HTTP header name")

    @property
    def has_api_key(self) -> bool:
        """Whether any of DD_API_KEY, DD_KMS_API_KEY, DD_API_KEY_SECRET_ARN or DD_API_KEY_SSM_NAME is set."""
        return bool(self.api_key or self.kms_api_key or self.api_key_secret_arn or self.api_key_ssm_name)

    @property
    def intake_auth_kind(self) -> IntakeAuth:
        """How a generic intake's secret is sent: FORWARDER_INTAKE_AUTH, else Splunk's scheme for
        Splunk HEC, bearer when a secret is set, and none without one."""
        if self.intake_auth is not None:
            return self.intake_auth
        if not self.has_api_key:
            return IntakeAuth.NONE
        return IntakeAuth.SPLUNK if self.intake_format is IntakeFormat.SPLUNK_HEC else IntakeAuth.BEARER

    def resolve_intake_secret(self) -> str:
        """The secret the intake needs: the API key, or "" for a generic intake that asks for none."""
        if self.intake_format is not IntakeFormat.DATADOG and self.intake_auth_kind is IntakeAuth.NONE:
            return ""
        return self.resolve_api_key()

    def resolve_api_key(self) -> str:
        """The API key: DD_KMS_API_KEY decrypted (it beats DD_API_KEY, as in the Datadog Forwarder),
        else DD_API_KEY, else Secrets Manager, else SSM (cached; see `forwarder.apikey`)."""
        if self.kms_api_key:
            return apikey.from_kms(self.kms_api_key, self.function_name)
        if self.api_key:
            return self.api_key
        if self.api_key_secret_arn:
            return apikey.from_secret(self.api_key_secret_arn)
        if self.api_key_ssm_name:
            return apikey.from_ssm(self.api_key_ssm_name)
        raise ConfigError("no API key: set DD_API_KEY, DD_KMS_API_KEY, DD_API_KEY_SECRET_ARN or DD_API_KEY_SSM_NAME")


def _s3_location(reference: str) -> tuple[str, str]:
    bucket, _, key = reference.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ConfigError(f"{K8S_AUDIT_POLICY} must be s3://bucket/key to read the policy from S3, got {reference!r}")
    return bucket, key


@functools.cache
def _policy_from_ssm(name: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_parameter(name, decrypt=True)
    except Exception as exc:  # Powertools wraps every boto3 failure; an error fails the invocation, never filters less
        raise ConfigError(f"{K8S_AUDIT_POLICY}: could not read parameter {name}: {type(exc).__name__}") from exc
    return str(value)


@functools.cache
def _policy_from_s3(bucket: str, key: str) -> str:
    from forwarder import runtime

    try:
        answer = runtime.client("s3").get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{K8S_AUDIT_POLICY_MAX_BYTES}")
        body = answer["Body"].read(K8S_AUDIT_POLICY_MAX_BYTES + 1)
    except Exception as exc:  # a failure fails the invocation (AWS retries it); events never pass unfiltered
        raise ConfigError(f"{K8S_AUDIT_POLICY}: could not read s3://{bucket}/{key}: {type(exc).__name__}") from exc
    if len(body) > K8S_AUDIT_POLICY_MAX_BYTES:
        raise ConfigError(f"{K8S_AUDIT_POLICY}: s3://{bucket}/{key} is larger than {K8S_AUDIT_POLICY_MAX_BYTES} bytes")
    return body.decode("utf-8", "replace")


@functools.cache
def load_settings() -> Settings:
    """The settings of this container, read on first use; unsupported `DD_*` variables are named then."""
    from forwarder import logs

    settings = Settings.from_env()
    logs.warn_about_settings(settings, os.environ)
    return settings
