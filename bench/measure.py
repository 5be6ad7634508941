"""One input's measurements: the raw limit, then each forwarder the best of N times in both intake modes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import BUCKET, CACHE, FIXTURES, MB
from bench.datadog import DATADOG_FORWARDER, DATADOG_MAX_MB, run_datadog
from bench.fixtures import s3_event, trail_key
from bench.inputs import Input
from bench.intake import counts
from bench.processes import Spawner, run_forwarder
from bench.raw import raw_limit
from bench.report import summarise_profile

WARM_UP = FIXTURES / "cloudtrail" / "plaso_aws_cloudtrail.json"


@dataclass
class Row:
    """One forwarder on one input, beside the raw limit."""

    input: str
    size_mb: float
    events: int
    raw_mbps: float
    mbps: float
    ratio: float
    quiet_mbps: float
    quiet_ratio: float
    cpu_mbps: float
    cpu_ratio: float
    imports_mb: float
    peak_mb: float
    datadog: dict[str, float] | None = None
    baseline: Row | None = None


@dataclass
class Harness:
    """What every measurement shares: the worker spawner, moto's S3 client, the forwarder's environment."""

    spawner: Spawner
    s3: Any
    env: dict[str, str]
    intake_port: str
    warm_key: str
    repeat: int
    profile: bool = False
    baseline: Path | None = None


def measure(harness: Harness, found: Input) -> Row:
    """The raw limit and every forwarder asked for on one input, each checked against what was generated."""
    name = f"{found.kind} {found.size_mb} MB"
    raw_runs = [raw_limit(found) for _ in range(harness.repeat)]
    raw = min(wall for wall, _ in raw_runs), min(cpu for _, cpu in raw_runs)
    spec = worker_spec(harness, found)
    if harness.profile and found.size_mb == 100:
        profile_to = CACHE / f"profile-{found.kind}-{found.size_mb}mb.txt"
        counts(harness.intake_port, reset=True)
        run_forwarder(harness.spawner, spec, profile_to)
        print(summarise_profile(profile_to), flush=True)
    row = measure_forwarder(harness, found, name, spec, raw)
    if harness.baseline is not None:
        baseline_spec = {**spec, "forwarder_dir": str(harness.baseline)}
        row.baseline = measure_forwarder(harness, found, f"{name} (baseline)", baseline_spec, raw)
    if DATADOG_FORWARDER and found.size_mb <= DATADOG_MAX_MB:
        row.datadog = measure_datadog(harness, found, name, spec)
    return row


def worker_spec(harness: Harness, found: Input) -> dict[str, Any]:
    """What a worker runs: an S3 event for the uploaded CloudTrail file, or the path of the EKS events."""
    spec: dict[str, Any] = {"env": harness.env, "warmup": s3_event(BUCKET, harness.warm_key)}
    if found.kind == "cloudtrail":
        key = trail_key(f"bench-{found.size_mb}")
        with open(found.path, "rb") as body:
            harness.s3.upload_fileobj(body, BUCKET, key)
        spec["events"] = [s3_event(BUCKET, key)]
    else:
        spec["events"] = found.path
    return spec


def measure_forwarder(harness: Harness, found: Input, name: str, spec: dict[str, Any], raw: tuple[float, float]) -> Row:
    """This project's forwarder (or the baseline's, as `spec` says) in both intake modes, checked, as a row."""
    port = harness.intake_port

    def once(decode: bool) -> dict[str, Any]:
        counts(port, reset=True, decode=decode)
        return run_forwarder(harness.spawner, spec)

    def check(run: dict[str, Any], decode: bool) -> None:
        if decode:
            check_received(name, found, port, run["read"], run["failed"])
        elif run["read"] != found.events or run["delivered"] != found.events:
            raise SystemExit(f"{name}: with the reading-only intake {run['delivered']} of {found.events} delivered")

    result, quiet = best_in_both_modes(once, check, harness.repeat)
    counts(port, reset=True)
    megabytes = found.raw_bytes / MB
    raw_seconds, raw_cpu_seconds = raw
    row = Row(
        input=name,
        size_mb=megabytes,
        events=found.events,
        raw_mbps=megabytes / raw_seconds,
        mbps=megabytes / result["seconds"],
        ratio=raw_seconds / result["seconds"],
        quiet_mbps=megabytes / quiet["seconds"],
        quiet_ratio=raw_seconds / quiet["seconds"],
        cpu_mbps=megabytes / result["cpu_seconds"],
        cpu_ratio=raw_cpu_seconds / result["cpu_seconds"],
        imports_mb=result["imports_mb"],
        peak_mb=result["peak_mb"],
    )
    print(
        f"{name}: forwarder {row.mbps:.1f} MB/s ({row.quiet_mbps:.1f} with the reading-only intake), raw limit "
        f"{row.raw_mbps:.1f} MB/s, peak RSS {row.peak_mb:.0f} MB (after imports {row.imports_mb:.0f} MB, warm "
        f"{result['warm_mb']:.0f} MB, VmHWM {result['vmhwm_mb']:.0f} MB); intake counted {found.events}",
        flush=True,
    )
    return row


def measure_datadog(harness: Harness, found: Input, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The Datadog Forwarder in both intake modes, checked: its best times and peak RSS."""
    port = harness.intake_port

    def check(run: dict[str, Any], decode: bool) -> None:
        if decode:
            check_received(f"{name} (Datadog Forwarder)", found, port, found.events, 0)

    datadog, quiet = best_in_both_modes(
        lambda decode: run_datadog(harness.spawner, spec, port, decode), check, harness.repeat
    )
    datadog["quiet_seconds"] = quiet["seconds"]
    counts(port, reset=True)
    megabytes = found.raw_bytes / MB
    print(
        f"{name}: Datadog Forwarder {megabytes / datadog['seconds']:.1f} MB/s, "
        f"{megabytes / datadog['cpu_seconds']:.1f} MB per CPU-s, peak RSS {datadog['peak_mb']:.0f} MB",
        flush=True,
    )
    return datadog


def best_in_both_modes(
    run_once: Callable[[bool], dict[str, Any]], check: Callable[[dict[str, Any], bool], None], repeat: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The best of `repeat` runs against the decoding intake, then of `repeat` against the reading-only
    one, each run checked as it ends; the first's CPU time is the least over both (the same work: the
    decoding intake only adds contention)."""
    best = []
    for decode in (True, False):
        runs = []
        for _ in range(repeat):
            runs.append(run_once(decode))
            check(runs[-1], decode)
        best.append(best_of(runs))
    decoding, reading_only = best
    decoding["cpu_seconds"] = min(decoding["cpu_seconds"], reading_only["cpu_seconds"])
    return decoding, reading_only


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest wall and CPU times of repeated runs (others on the box only ever slow a run down),
    and the largest memory figures."""
    best = dict(runs[0])
    for measured in ("seconds", "cpu_seconds", "processors_cpu_seconds"):
        if measured in best:
            best[measured] = min(run[measured] for run in runs)
    for measured in ("peak_mb", "imports_mb", "warm_mb", "vmhwm_mb"):
        if measured in best:
            best[measured] = max(run[measured] for run in runs)
    return best


def check_received(name: str, found: Input, intake_port: str, read: int, failed: int) -> int:
    """The entries the decoding intake received since its reset, less the warm-up's; exit unless all came."""
    received_counts = counts(intake_port)
    warm_events = len(orjson.loads(WARM_UP.read_bytes())["Records"])
    received = received_counts["entries"] - warm_events
    if read != found.events or received != found.events or failed or received_counts["rejected"]:
        raise SystemExit(
            f"{name}: generated {found.events} events, the forwarder read {read} and failed "
            f"{failed}, the intake received {received} and rejected {received_counts['rejected']} requests"
        )
    return received
