"""The forwarder's own log lines: one Powertools JSON logger, its service and level from the environment.

Every module logs through `logger()`. Modules that use the standard `logging` module under the
`forwarder` package are routed through the same handler and formatter, so every line is one JSON
object with the same keys (and the Lambda context once the handler injects it).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.filters import SuppressFilter

from forwarder.envvalues import log_level, unsupported_variables
from forwarder.errors import ConfigError
from forwarder.settings import Settings

DEFAULT_SERVICE = "security-log-forwarder"
PACKAGE = "forwarder"


def service_name(env: Mapping[str, str] | None = None) -> str:
    """POWERTOOLS_SERVICE_NAME, else the forwarder's own name."""
    env = os.environ if env is None else env
    return env.get("POWERTOOLS_SERVICE_NAME", "").strip() or DEFAULT_SERVICE


def level_name(env: Mapping[str, str] | None = None) -> str | None:
    """The level to give the logger: None when POWERTOOLS_LOG_LEVEL is set (Powertools reads it, and
    it wins, as the template sets it), else DD_LOG_LEVEL, else None (INFO). An invalid DD_LOG_LEVEL is
    ignored here and refused by `Settings.from_env` at the first invocation, never at import."""
    env = os.environ if env is None else env
    if env.get("POWERTOOLS_LOG_LEVEL", "").strip():
        return None
    try:
        return log_level(env) or None
    except ConfigError:
        return None


@functools.cache
def logger() -> Logger:
    """The container's logger; the `forwarder` package's standard loggers write through its handler."""
    log = Logger(service=service_name(), level=level_name())
    package = logging.getLogger(PACKAGE)
    if log.registered_handler not in package.handlers:
        package.addHandler(log.registered_handler)
    package.setLevel(log.log_level)
    for handler in logging.root.handlers:  # as Powertools does for its own logger: no second, plain copy
        if type(handler).__module__ != "_pytest.logging":
            handler.addFilter(SuppressFilter(PACKAGE))
    return log


def warn_about_settings(settings: Settings, env: Mapping[str, str]) -> None:
    """One warning naming the Datadog Forwarder's variables set here to no effect, and one when
    DD_NO_SSL sends events in clear text; called once per container, at the first invocation."""
    ignored = unsupported_variables(env)
    if ignored:
        logger().warning(
            "DD_* variables this forwarder does not support have no effect (README: Switching from the "
            "Datadog Forwarder)",
            extra={"ignored_variables": ignored},
        )
    if settings.no_ssl and settings.intake_url.startswith("http://"):
        logger().warning("DD_NO_SSL is true: events travel to the intake unencrypted; for a test intake only")
