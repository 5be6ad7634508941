"""One Datadog Forwarder run in a fresh interpreter: `python -m bench.datadog_worker SPEC`.

It runs under `BENCH_DATADOG_PYTHON`, which may have nothing of this project's dependencies: the
standard library only.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any


class Context:
    function_name = "datadog-forwarder-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:datadog-forwarder-bench"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/datadog-forwarder-bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 3600000


def run(spec: dict[str, Any]) -> dict[str, float]:
    """Import `lambda_function` from SPEC's directory, warm it up, then time it on the input."""
    os.environ.update(spec["env"])
    sys.path.insert(0, spec["dir"])
    import lambda_function

    lambda_function.lambda_handler(spec["warmup"], Context())
    events = spec["events"]
    if isinstance(events, str):
        with open(events, "rb") as lines:
            events = [json.loads(line) for line in lines.read().splitlines()]
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for event in events:
        lambda_function.lambda_handler(event, Context())
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_mb": after.ru_maxrss / 1024}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
