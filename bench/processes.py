"""The bench's other processes: moto's S3 server, the counting intake, and the spawner of worker runs."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import API_KEY, CACHE, ROOT

IMPORT_RUNS = 7
SPAWNER = """
import json, subprocess, sys
for line in sys.stdin:
    done = subprocess.run(json.loads(line), capture_output=True, check=False)
    print(json.dumps([done.returncode, done.stdout.decode(), done.stderr.decode()]), flush=True)
"""
MOTO = (
    "import logging,sys,time;logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
    "from moto.server import ThreadedMotoServer\n"
    "s=ThreadedMotoServer(ip_address='127.0.0.1',port=0,verbose=False);s.start()\n"
    "open(sys.argv[1],'w').write(str(s.get_host_and_port()[1]))\n"
    "while True: time.sleep(3600)\n"
)


class Spawner:
    """A small interpreter, started before the bench grows, that starts the forwarder's processes.

    Linux keeps a process's peak RSS across fork and exec (`ru_maxrss` of the child starts at its
    parent's), so a worker forked from the bench, which holds inputs and boto3, would report the
    bench's peak instead of its own.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT
        )

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(argv).encode() + b"\n")
        self.process.stdin.flush()
        code, out, err = json.loads(self.process.stdout.readline())
        return int(code), str(out), str(err)

    def result(self, argv: list[str], what: str) -> dict[str, Any]:
        """Run a worker and return the JSON object it printed last; exit if it failed."""
        code, out, err = self.run(argv)
        if code != 0:
            sys.stderr.write(err[-4000:])
            raise SystemExit(f"{what} run failed with exit status {code}")
        found: dict[str, Any] = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        return found

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)


def start_services() -> tuple[subprocess.Popen[bytes], str, subprocess.Popen[bytes], str]:
    """moto's S3 server and the counting intake, each in its own process on 127.0.0.1: both, the S3 endpoint
    and the intake's port."""
    CACHE.mkdir(exist_ok=True)
    moto_port_file = CACHE / "moto.port"
    intake_port_file = CACHE / "intake.port"
    for file in (moto_port_file, intake_port_file):
        file.unlink(missing_ok=True)
    moto = subprocess.Popen([sys.executable, "-c", MOTO, str(moto_port_file)])
    intake = subprocess.Popen([sys.executable, "-m", "bench.intake", str(intake_port_file)], cwd=ROOT)
    for _ in range(300):
        if moto_port_file.exists() and moto_port_file.read_text() and intake_port_file.exists():
            break
        time.sleep(0.1)
    else:
        raise SystemExit("moto or the intake did not start")
    time.sleep(0.2)
    return moto, f"http://127.0.0.1:{moto_port_file.read_text()}", intake, intake_port_file.read_text().strip()


def worker_env(endpoint: str, intake_port: str) -> dict[str, str]:
    """The forwarder's environment: moto for S3, the counting intake for delivery."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "security-log-forwarder-bench",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "DD_URL": f"http://127.0.0.1:{intake_port}/api/v2/logs",
        "DD_API_KEY": API_KEY,
        "DD_TAGS": "env:bench",
    }


def run_forwarder(spawner: Spawner, spec: dict[str, Any], profile_to: Path | None = None) -> dict[str, Any]:
    """`bench.worker` on `spec` in a fresh interpreter, sampled by py-spy into `profile_to` if given."""
    argv = [sys.executable, "-m", "bench.worker", json.dumps(spec)]
    if profile_to is not None:  # sampled from outside: GIL holders, all threads
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        options = ["--gil", "--threads", "--rate", "250", "--format", "raw", "--output", str(profile_to)]
        argv = [py_spy, "record", *options, "--", *argv]
    found = spawner.result(argv, "forwarder")
    expected = Path(spec.get("forwarder_dir") or ROOT).resolve()
    if Path(found["forwarder"]) != expected:
        raise SystemExit(f"the worker imported the forwarder from {found['forwarder']}, not {expected}")
    return found


def import_time_ms(forwarder_dir: Path = ROOT) -> float:
    """Median wall time of `import forwarder.handler` in a fresh interpreter (imports only), from `forwarder_dir`."""
    code = "import time;t=time.perf_counter();import forwarder.handler;print((time.perf_counter()-t)*1000)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, cwd=forwarder_dir).stdout)
        for _ in range(IMPORT_RUNS)
    ]
    return statistics.median(runs)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{model}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, {platform.system()}"
