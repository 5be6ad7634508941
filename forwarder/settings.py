"""Every setting, read once from the environment into one frozen object.

Names follow the Datadog Forwarder (`DD_*`) where it has the same setting, so its users switch
without relearning; settings it lacks are `FORWARDER_*`. The API key is the one value not read here:
it is resolved lazily (Secrets Manager or SSM through Powertools Parameters, cached), so a missing
key is a clear error at the first invocation instead of a crash at import.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from forwarder import __version__, apikey
from forwarder.envvalues import (
    HEADER_NAME,
    IntakeAuth,
    IntakeFormat,
    OutputFormat,
    choice,
    cluster_key_pattern,
    flag,
    headers,
    integer,
    number,
    operations,
    parquet_max_row_group_bytes,
    processing,
    resource_tags,
    shown,
    tag_list,
)
from forwarder.errors import ConfigError

K8S_AUDIT_POLICY = "FORWARDER_K8S_AUDIT_POLICY"
K8S_AUDIT_POLICY_MAX_BYTES = 1 << 20
"""A policy in S3 larger than this is refused rather than read into memory."""


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
    parquet_max_row_group_bytes: int = 1 << 30
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
            port=integer(env, "DD_PORT", default.port, 1, 65535),
            api_key=env.get("DD_API_KEY", "").strip(),
            api_key_secret_arn=env.get("DD_API_KEY_SECRET_ARN", "").strip(),
            api_key_ssm_name=env.get("DD_API_KEY_SSM_NAME", "").strip(),
            tags=tag_list(env.get("DD_TAGS", "")),
            source_override=env.get("DD_SOURCE", "").strip(),
            use_compression=flag(env, "DD_USE_COMPRESSION", default.use_compression),
            compression_level=integer(env, "DD_COMPRESSION_LEVEL", default.compression_level, 0, 9),
            skip_ssl_validation=flag(env, "DD_SKIP_SSL_VALIDATION", default.skip_ssl_validation),
            max_workers=integer(env, "DD_MAX_WORKERS", default.max_workers, 1, 64),
            http_timeout_seconds=number(env, "FORWARDER_HTTP_TIMEOUT_SECONDS", default.http_timeout_seconds, 0.1, 900),
            max_attempts=integer(env, "FORWARDER_MAX_ATTEMPTS", default.max_attempts, 1, 100),
            deadline_margin_seconds=number(
                env, "FORWARDER_DEADLINE_MARGIN_SECONDS", default.deadline_margin_seconds, 0, 900
            ),
            batch_max_entries=integer(env, "FORWARDER_BATCH_MAX_ENTRIES", default.batch_max_entries, 1, 1000),
            batch_max_bytes=integer(env, "FORWARDER_BATCH_MAX_BYTES", default.batch_max_bytes, 1024, 5_000_000),
            entry_max_bytes=integer(env, "FORWARDER_ENTRY_MAX_BYTES", default.entry_max_bytes, 1024, 1_000_000),
            read_chunk_bytes=integer(env, "FORWARDER_READ_CHUNK_BYTES", default.read_chunk_bytes, 4096, 64 << 20),
            keep_freed_memory=flag(env, "FORWARDER_KEEP_FREED_MEMORY", default.keep_freed_memory),
            store_failed_events=flag(env, "DD_STORE_FAILED_EVENTS", default.store_failed_events),
            store_bucket=env.get("DD_S3_BUCKET_NAME", "").strip(),
            continuation_queue_url=env.get("FORWARDER_CONTINUATION_QUEUE_URL", "").strip(),
            idempotency_table=env.get("FORWARDER_IDEMPOTENCY_TABLE", "").strip(),
            idempotency_expiry_seconds=integer(
                env, "FORWARDER_IDEMPOTENCY_EXPIRY_SECONDS", default.idempotency_expiry_seconds, 60, 30 * 86400
            ),
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", "").strip() or default.function_name,
            region=env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip(),
            **processing(env),
            **resource_tags(env),
            k8s_audit_policy=env.get(K8S_AUDIT_POLICY, "").strip(),
            k8s_cluster_key_pattern=cluster_key_pattern(env),
            parquet_max_row_group_bytes=parquet_max_row_group_bytes(env),
            # the output's format and a generic intake
            output_format=choice(env, "FORWARDER_OUTPUT_FORMAT", OutputFormat, default.output_format)
            or default.output_format,
            intake_format=choice(env, "FORWARDER_INTAKE_FORMAT", IntakeFormat, default.intake_format)
            or default.intake_format,
            intake_headers=headers(env.get("FORWARDER_INTAKE_HEADERS", "")),
            intake_auth=choice(env, "FORWARDER_INTAKE_AUTH", IntakeAuth, None),
            intake_auth_header=env.get("FORWARDER_INTAKE_AUTH_HEADER", "").strip() or default.intake_auth_header,
            **operations(env),
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
            f"{item.name}={shown(self.url) if item.name == 'url' else getattr(self, item.name)!r}"
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
            raise ConfigError(f"DD_URL must be an http(s) URL or a host name, got {shown(self.url)!r}")

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
        if self.intake_auth is IntakeAuth.HEADER and not HEADER_NAME.match(self.intake_auth_header):
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
