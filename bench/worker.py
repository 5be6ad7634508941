"""One forwarder run in a fresh interpreter: `python -m bench.worker SPEC`, SPEC a JSON object.

A fresh process per run so its peak RSS is its own. It imports, warms up on a small object (a warm
container: boto3 and its client exist), then times `handle` on the input and prints its figures as
one JSON line. With `forwarder_dir` in SPEC, a checkout of an earlier commit, that checkout's
`forwarder` is imported instead of this one's; so this module uses only what every version has
(`forwarder.handler.handle` and `forwarder.settings.Settings`) and takes the counts from the summary
`handle` returns rather than from a `Tally`.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import ACCOUNT


@dataclass
class Context:
    """The parts of the Lambda context the forwarder reads (as `forwarder.cli.LocalContext`, which may move)."""

    function_name: str = "security-log-forwarder"
    timeout_seconds: float = 3600.0
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:security-log-forwarder"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Import the forwarder (the baseline's if SPEC names one), warm it up, then time it on the input."""
    os.environ.update(spec["env"])
    if spec.get("forwarder_dir"):
        sys.path.insert(0, spec["forwarder_dir"])  # before the current directory, this checkout
    started = time.perf_counter()
    import forwarder
    from forwarder.handler import handle
    from forwarder.settings import Settings

    import_ms = (time.perf_counter() - started) * 1000
    imports_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    settings = Settings.from_env()
    handle(spec["warmup"], Context(invoked_function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:b"), settings)
    warm_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    events = spec["events"]
    if isinstance(events, str):
        events = [orjson.loads(line) for line in Path(events).read_bytes().splitlines()]
    summaries = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for event in events:
        summaries.append(handle(event, Context(), settings))
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "forwarder": str(Path(forwarder.__file__).resolve().parent.parent),
        "vmhwm_mb": _vmhwm_kb() / 1024,
        "seconds": elapsed,
        "cpu_seconds": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "read": sum(summary["events_read"] for summary in summaries),
        "delivered": sum(summary["events_delivered"] + summary["events_truncated"] for summary in summaries),
        "failed": sum(summary["events_failed"] for summary in summaries),
        "import_ms": import_ms,
        "imports_mb": imports_kb / 1024,
        "warm_mb": warm_kb / 1024,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _vmhwm_kb() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
