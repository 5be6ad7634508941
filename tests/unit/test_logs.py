"""The forwarder's own log lines: every one JSON through Powertools' handler, the service and level from
the environment, and the one warning that names the Datadog variables that have no effect here."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from forwarder import logs
from forwarder.model import Deadline
from forwarder.outputs.http import Answer, HttpTransport
from forwarder.outputs.retry import RetryPolicy
from forwarder.settings import Settings


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What the forwarder's log handler writes (stdout in Lambda), captured."""
    handler = logs.logger().registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    before = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(before)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("env", "service"),
    [({}, "security-log-forwarder"), ({"POWERTOOLS_SERVICE_NAME": "org-audit-forwarder"}, "org-audit-forwarder")],
)
def test_the_service_name_honours_powertools_service_name(env: dict[str, str], service: str) -> None:
    assert logs.service_name(env) == service


@pytest.mark.parametrize(
    ("env", "level"),
    [
        ({}, None),
        ({"DD_LOG_LEVEL": "warn"}, "WARNING"),
        ({"DD_LOG_LEVEL": "DEBUG", "POWERTOOLS_LOG_LEVEL": "ERROR"}, None),  # Powertools reads its own: it wins
        ({"DD_LOG_LEVEL": "loud"}, None),  # refused by Settings.from_env at the first invocation, not at import
    ],
)
def test_dd_log_level_applies_unless_powertools_log_level_is_set(env: dict[str, str], level: str | None) -> None:
    assert logs.level_name(env) == level


def test_a_retry_warning_is_one_json_line_with_the_attempt_the_wait_and_the_reason(written: io.StringIO) -> None:
    answers = [Answer(503, {}, "busy"), Answer(202, {}, "{}")]
    transport = HttpTransport(
        Settings(url="https://intake.invalid/api/v2/logs"),
        "https://intake.invalid/api/v2/logs",
        {},
        secret="",
        policy=RetryPolicy(max_attempts=3, backoff_base=0.25, backoff_cap=0.25),
        exchange=lambda payload, seconds: answers.pop(0),
        sleep=lambda seconds: None,
        rand=lambda: 1.0,
    )
    transport.send(b"[]", Deadline(lambda: 60_000, margin_seconds=0.0))

    (line,) = _lines(written)
    assert line["level"] == "WARNING"
    assert line["service"] == "security-log-forwarder"
    assert line["message"] == "intake delivery attempt failed, retrying"
    assert line["attempt"] == 1
    assert isinstance(line["wait_seconds"], float) and 0 < line["wait_seconds"] <= 0.25
    assert str(line["reason"]).startswith("the intake answered 503")


def test_standard_loggers_in_the_package_write_json_too(written: io.StringIO) -> None:
    logs.logger()
    logging.getLogger("forwarder.outputs.ocsf").warning("a plain logging call", extra={"detail": "kept"})

    (line,) = _lines(written)
    assert (line["message"], line["detail"], line["level"]) == ("a plain logging call", "kept", "WARNING")


def test_unsupported_dd_variables_are_named_in_one_warning(written: io.StringIO) -> None:
    env = {"DD_API_KEY": "k", "DD_FETCH_LAMBDA_TAGS": "true", "DD_ADDITIONAL_TARGET_LAMBDAS": "value-7f3a", "HOME": "/"}
    logs.warn_about_settings(Settings.from_env(env), env)

    (line,) = _lines(written)
    assert line["level"] == "WARNING"
    assert line["ignored_variables"] == ["DD_ADDITIONAL_TARGET_LAMBDAS", "DD_FETCH_LAMBDA_TAGS"]
    assert "value-7f3a" not in json.dumps(line), "values are never logged"


def test_no_warning_when_every_dd_variable_is_supported(written: io.StringIO) -> None:
    env = {"DD_API_KEY": "k", "DD_SITE": "datadoghq.eu", "DD_FORWARD_LOG": "true", "DD_KMS_API_KEY": ""}
    logs.warn_about_settings(Settings.from_env(env), env)
    assert _lines(written) == []


def test_no_ssl_is_warned_about(written: io.StringIO) -> None:
    env = {"DD_NO_SSL": "true", "DD_URL": "intake.test"}
    logs.warn_about_settings(Settings.from_env(env), env)
    (line,) = _lines(written)
    assert "unencrypted" in str(line["message"])
