"""Importing the handler makes no network call and creates no AWS client: cold starts stay cheap."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_importing_the_handler_opens_no_connection_and_builds_no_client() -> None:
    probe = textwrap.dedent(
        """
        import socket, sys

        def refuse(*args, **kwargs):
            raise AssertionError(f"network call at import: {args!r}")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import forwarder.handler
        from forwarder import runtime

        assert runtime.client.cache_info().currsize == 0, "an AWS client was built at import"
        assert not runtime.OUTPUT.built, "an output was built at import"
        lazy = "aws_lambda_powertools.utilities.idempotency"
        assert lazy not in sys.modules, "idempotency (DynamoDB) is loaded only when a table is set"
        print("ok")
        """
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
