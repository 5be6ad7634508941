"""The Datadog Forwarder (`BENCH_DATADOG_FORWARDER`, a checkout of aws/logs_monitoring) on the same inputs,
moto and intake, for a side-by-side table; nothing of it is part of this project."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from bench import DATADOG_API_KEY
from bench.intake import counts
from bench.processes import Spawner

DATADOG_FORWARDER = os.environ.get("BENCH_DATADOG_FORWARDER", "")
DATADOG_MAX_MB = 100
"""It reads whole objects into memory (828 MB peak RSS at 100 MB): 1 GB would need about 8 GB."""


def datadog_env(spec_env: dict[str, str], intake_port: str) -> dict[str, str]:
    """The forwarder's environment without its own settings, and the Datadog Forwarder's pointed at the intake."""
    intake = f"127.0.0.1:{intake_port}"
    return {
        **{name: value for name, value in spec_env.items() if not name.startswith(("DD_", "POWERTOOLS_"))},
        "DD_API_KEY": DATADOG_API_KEY,
        "DD_URL": "127.0.0.1",
        "DD_PORT": intake_port,
        "DD_NO_SSL": "true",
        "DD_SKIP_SSL_VALIDATION": "true",
        "DD_USE_COMPRESSION": "true",
        "DD_API_URL": f"http://{intake}",
        "DD_TRACE_INTAKE_URL": f"http://{intake}",
        "DD_TAGS": "env:bench",
        "DD_LOG_LEVEL": "WARNING",
        "DD_STORE_FAILED_EVENTS": "false",
        **{f"DD_FETCH_{kind}_TAGS": "false" for kind in ("S3", "LAMBDA", "LOG_GROUP", "STEP_FUNCTIONS")},
    }


def run_datadog(spawner: Spawner, spec: dict[str, Any], intake_port: str, decode: bool = True) -> dict[str, Any]:
    """The Datadog Forwarder on the same events, moto and intake, in a fresh interpreter."""
    python = os.environ.get("BENCH_DATADOG_PYTHON") or sys.executable
    worker = {
        "env": datadog_env(spec["env"], intake_port),
        "dir": DATADOG_FORWARDER,
        "warmup": spec["warmup"],
        "events": spec["events"],
    }
    counts(intake_port, reset=True, decode=decode)
    return spawner.result([python, "-m", "bench.datadog_worker", json.dumps(worker)], "Datadog Forwarder")
