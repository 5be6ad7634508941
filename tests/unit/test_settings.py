import pytest

from forwarder.errors import ConfigError
from forwarder.settings import Settings


def test_defaults_point_at_the_datadog_site() -> None:
    settings = Settings.from_env({})
    assert settings.intake_url == "https://http-intake.logs.datadoghq.com/api/v2/logs"
    assert settings.use_compression and not settings.skip_ssl_validation


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"DD_SITE": "datadoghq.eu"}, "https://http-intake.logs.datadoghq.eu/api/v2/logs"),
        ({"DD_URL": "http://127.0.0.1:8080/api/v2/logs"}, "http://127.0.0.1:8080/api/v2/logs"),
        ({"DD_URL": "intake.example.internal"}, "https://intake.example.internal:443/api/v2/logs"),
        ({"DD_URL": "intake.example.internal", "DD_PORT": "8443"}, "https://intake.example.internal:8443/api/v2/logs"),
    ],
)
def test_intake_url(env: dict[str, str], url: str) -> None:
    assert Settings.from_env(env).intake_url == url


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DD_USE_COMPRESSION": "maybe"}, "DD_USE_COMPRESSION"),
        ({"DD_COMPRESSION_LEVEL": "12"}, "DD_COMPRESSION_LEVEL"),
        ({"DD_PORT": "http"}, "DD_PORT"),
        ({"FORWARDER_BATCH_MAX_ENTRIES": "5000"}, "FORWARDER_BATCH_MAX_ENTRIES"),
        ({"DD_MAX_WORKERS": "2.5"}, "DD_MAX_WORKERS"),
        ({"DD_URL": "ftp://host/path"}, "DD_URL"),
    ],
)
def test_invalid_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_tags_are_split_and_trimmed() -> None:
    assert Settings.from_env({"DD_TAGS": " env:prod, team:sec ,,"}).tags == ("env:prod", "team:sec")


def test_missing_api_key_is_a_clear_error_at_use_not_at_load() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ConfigError, match="DD_API_KEY"):
        settings.resolve_api_key()


def test_plain_api_key_is_not_echoed_in_repr_errors() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"DD_API_KEY": "0123456789abcdef0123456789abcdef", "DD_PORT": "x"})
    assert "0123456789abcdef" not in str(error.value)


def test_api_key_never_in_repr() -> None:
    assert "0123456789abcdef" not in repr(Settings.from_env({"DD_API_KEY": "0123456789abcdef0123456789abcdef"}))


@pytest.mark.parametrize(
    "env",
    [
        {"DD_URL": "htps://user:PASSWORD@host/api/v2/logs"},
        {"DD_URL": "ftp://user:PASSWORD@host/api/v2/logs?token=PASSWORD"},
        {"DD_URL": "https://user:PASS/WORD@/api/v2/logs"},
        {"DD_URL": "user:PASSWORD@"},
        {"DD_URL": "https://user:PASSWORD@[::1/api/v2/logs"},
        {"DD_URL": "https://user:PASSWORD@host:port/api/v2/logs"},
        {"DD_PORT": "https://user:PASSWORD@host"},
        {"DD_USE_COMPRESSION": "https://host/?key=PASSWORD"},
    ],
    ids=["mistyped-scheme", "query", "slash-in-password", "bare-host", "bad-ipv6", "bad-port", "port", "flag"],
)
def test_a_mistyped_url_with_a_password_is_not_echoed(env: dict[str, str]) -> None:
    """A setting holding a URL with credentials (user:password@) or a token in its query is named in
    the error but its secret parts are not echoed: the error goes to the logs."""
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    for text in (str(error.value), repr(error.value), str(error.value.__cause__), str(error.value.__context__)):
        assert "PASS" not in text
    assert next(iter(env)) in str(error.value)


@pytest.mark.parametrize(
    "url", ["https://user:PASSWORD@host/api/v2/logs", "https://host/api/v2/logs?dd-api-key=PASSWORD#PASSWORD"]
)
def test_a_valid_url_with_a_password_never_shows_in_the_settings_repr(url: str) -> None:
    settings = Settings.from_env({"DD_URL": url})
    assert settings.intake_url == url
    assert "PASS" not in repr(settings)
    assert "host" in repr(settings)


# --- the Datadog Forwarder's operational settings and the failure store's prefix ---------------


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"DD_NO_SSL": "true"}, "http://http-intake.logs.datadoghq.com/api/v2/logs"),
        ({"DD_NO_SSL": "true", "DD_URL": "intake.test", "DD_PORT": "8080"}, "http://intake.test:8080/api/v2/logs"),
        ({"DD_NO_SSL": "true", "DD_URL": "https://intake.test/v2"}, "https://intake.test/v2"),
        ({"DD_USE_VPC": "true", "DD_SITE": "datadoghq.eu"}, "https://http-intake.logs.datadoghq.eu/api/v2/logs"),
    ],
    ids=["no-ssl-site", "no-ssl-host", "full-url-keeps-its-scheme", "vpc-keeps-the-host"],
)
def test_no_ssl_and_use_vpc_intake_url(env: dict[str, str], url: str) -> None:
    assert Settings.from_env(env).intake_url == url


def test_tls_verification_stays_on_with_no_ssl() -> None:
    assert not Settings.from_env({"DD_NO_SSL": "true"}).skip_ssl_validation


@pytest.mark.parametrize(("raw", "level"), [("", ""), ("warn", "WARNING"), ("DEBUG", "DEBUG"), (" error ", "ERROR")])
def test_dd_log_level(raw: str, level: str) -> None:
    assert Settings.from_env({"DD_LOG_LEVEL": raw}).log_level == level


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DD_LOG_LEVEL": "loud"}, "DD_LOG_LEVEL"),
        ({"DD_NO_SSL": "maybe"}, "DD_NO_SSL"),
        ({"DD_USE_VPC": "2"}, "DD_USE_VPC"),
        ({"DD_FORWARD_LOG": "nope"}, "DD_FORWARD_LOG"),
        ({"FORWARDER_STORE_PREFIX": "a/../b"}, "FORWARDER_STORE_PREFIX"),
    ],
)
def test_invalid_operational_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_forward_log_defaults_to_true() -> None:
    assert Settings.from_env({}).forward_log
    assert not Settings.from_env({"DD_FORWARD_LOG": "false"}).forward_log


@pytest.mark.parametrize(
    ("env", "prefix"),
    [
        ({"AWS_LAMBDA_FUNCTION_NAME": "fn"}, "failed-events/fn/"),
        ({"AWS_LAMBDA_FUNCTION_NAME": "fn", "FORWARDER_STORE_PREFIX": "failed-events/stack/"}, "failed-events/stack/"),
        ({"FORWARDER_STORE_PREFIX": "/failed-events/stack"}, "failed-events/stack/"),
    ],
)
def test_store_prefix(env: dict[str, str], prefix: str) -> None:
    assert Settings.from_env(env).store_prefix == prefix


def test_unsupported_dd_variables_are_the_ones_not_read() -> None:
    from forwarder.envvalues import unsupported_variables

    env = {"DD_API_KEY": "k", "DD_FETCH_LAMBDA_TAGS": "true", "DD_TRACE_ENABLED": "false", "OTHER": "x"}
    assert unsupported_variables(env) == ["DD_FETCH_LAMBDA_TAGS", "DD_TRACE_ENABLED"]


def test_kms_api_key_counts_as_a_key_and_stays_out_of_the_repr() -> None:
    settings = Settings.from_env({"DD_KMS_API_KEY": "Y2lwaGVydGV4dA=="})
    assert settings.has_api_key
    assert "Y2lwaGVydGV4dA" not in repr(settings)


def test_a_kms_api_key_that_is_not_base64_names_the_variable_not_the_value() -> None:
    with pytest.raises(ConfigError, match="DD_KMS_API_KEY is not base64") as raised:
        Settings.from_env({"DD_KMS_API_KEY": "not base64 at all!"}).resolve_api_key()
    assert "at all" not in str(raised.value)


@pytest.mark.parametrize(
    ("reference", "region"),
    [
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:dd-key-AbCdEf", "eu-west-1"),
        ("arn:aws:ssm:ap-southeast-2:123456789012:parameter/datadog/key", "ap-southeast-2"),
        ("/datadog/key", None),
        ("dd-key", None),
    ],
)
def test_the_region_of_a_secret_or_parameter_is_its_arns(reference: str, region: str | None) -> None:
    from forwarder.apikey import region_of

    assert region_of(reference) == region


def test_the_readmes_unsupported_variables_are_the_ones_warned_about() -> None:
    import re
    from pathlib import Path

    from forwarder.envvalues import unsupported_variables

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Switching from the Datadog Forwarder", 1)[1].split("\n#", 1)[0]
    listed = {
        name
        for row in section.splitlines()
        if row.startswith("| `")
        for name in re.findall(r"`(DD_\w+)`", row.split(" | ")[0])
    }
    assert len(listed) >= 12  # the Datadog Forwarder variables with no effect here, less the tag fetches now read
    assert unsupported_variables(dict.fromkeys(listed, "x")) == sorted(listed)


def test_parquet_row_group_limit_follows_the_functions_memory() -> None:
    in_lambda = Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"})
    given = Settings.from_env(
        {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "FORWARDER_PARQUET_MAX_ROW_GROUP_BYTES": "5000000"}
    )

    assert in_lambda.parquet_max_row_group_bytes == int(0.4 * (1024 << 20))
    assert given.parquet_max_row_group_bytes == 5_000_000
    assert Settings.from_env({}).parquet_max_row_group_bytes > 0
    with pytest.raises(ConfigError, match="FORWARDER_PARQUET_MAX_ROW_GROUP_BYTES"):
        Settings.from_env({"FORWARDER_PARQUET_MAX_ROW_GROUP_BYTES": "lots"})
