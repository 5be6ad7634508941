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
