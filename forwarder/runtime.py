"""What lives as long as the container: AWS clients, the output and its connections, the object guard.

Created on first use, never at import, and reused across invocations.
"""

from __future__ import annotations

import functools
from typing import Any

from forwarder.outputs import Output, generic
from forwarder.reliability.idempotency import ObjectGuard
from forwarder.settings import Settings


@functools.cache
def client(service: str) -> Any:
    """One client per service and container; boto3's default chain finds credentials and AWS_ENDPOINT_URL.

    Timeouts are short so that no S3 read, store write or hand-off blocks past the time the
    pipeline keeps for them before the deadline.
    """
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10)
    return boto3.client(service, config=config)


@functools.cache
def object_guard(table: str, expiry_seconds: int) -> ObjectGuard:
    return ObjectGuard(table, expiry_seconds)


def guard(settings: Settings) -> ObjectGuard | None:
    """The guard that forwards each object once, when FORWARDER_IDEMPOTENCY_TABLE names its table."""
    if not settings.idempotency_table:
        return None
    return object_guard(settings.idempotency_table, settings.idempotency_expiry_seconds)


class OutputSlot:
    """One output per container, kept alive across invocations: the one the settings choose
    (`outputs.generic.output`: Datadog or OCSF entries, to the Datadog intake or a generic one).

    A new API key (rotation) or new settings replace it, and the old one's connections are closed.
    """

    def __init__(self) -> None:
        self._made_for: tuple[Settings, str] | None = None
        self._output: Output | None = None

    def get(self, settings: Settings) -> Output:
        """The output for `settings`; resolving the key here makes a missing key one clear error (a
        generic intake without auth needs none)."""
        api_key = settings.resolve_intake_secret()
        if self._output is None or self._made_for != (settings, api_key):
            if self._output is not None:
                self._output.close()
            self._output = generic.output(settings, api_key)
            self._made_for = (settings, api_key)
        return self._output

    @property
    def built(self) -> bool:
        return self._output is not None


OUTPUT = OutputSlot()
