"""The bench's command line:
`python -m bench [--sizes 10,100] [--repeat N] [--profile] [--baseline DIR] [--processing-mb N] [--no-doc]`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from isal import isal_zlib

import bench
from bench import BUCKET, PROCESSING_MB
from bench.fixtures import trail_key
from bench.inputs import Input, cloudtrail_input, eks_audit_input, eks_audit_mix_input
from bench.measure import WARM_UP, Harness, Row, measure
from bench.processes import Spawner, import_time_ms, machine, start_services, worker_env
from bench.report import render, write_table

if TYPE_CHECKING:
    from bench.processing import Processed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(bench.__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "10,100,1000"))
    parser.add_argument("--profile", action="store_true", help="also profile the forwarder on 100 MB")
    parser.add_argument(
        "--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")), help="runs of each, the best kept"
    )
    parser.add_argument(
        "--baseline",
        default=os.environ.get("BENCH_BASELINE") or None,
        help="a checkout of an earlier commit of this project whose forwarder also runs, for a before/after",
    )
    parser.add_argument(
        "--processing-mb",
        type=int,
        default=int(os.environ.get("BENCH_PROCESSING_MB", str(PROCESSING_MB))),
        help="the size of the inputs of the processing tables, in-process; 0 for none",
    )
    parser.add_argument("--no-doc", action="store_true", help="print the table only; leave docs/ alone")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline is not None and not (baseline / "forwarder" / "handler.py").is_file():
        parser.error(f"--baseline {baseline}: no forwarder/handler.py there")
    return run(sizes, args.profile, not args.no_doc, max(1, args.repeat), baseline, max(0, args.processing_mb))


def run(
    sizes: list[int],
    profile: bool,
    write_doc: bool,
    repeat: int,
    baseline: Path | None = None,
    processing_mb: int = PROCESSING_MB,
) -> int:
    """Generate the inputs, start moto and the intake, measure every input, then the processing settings
    in-process (current code only), then print and write the tables."""
    spawner = Spawner()  # first, while this process is small
    import boto3

    from forwarder import memory

    memory.keep_freed_memory()  # the raw limit runs with the allocator setting the forwarder uses

    print(f"machine: {machine()}", flush=True)
    inputs = prepare_inputs(sizes)
    moto, endpoint, intake, intake_port = start_services()
    rows: list[Row] = []
    try:
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b"
        )
        s3.create_bucket(Bucket=BUCKET)
        warm_key = trail_key("warmup")
        s3.put_object(Bucket=BUCKET, Key=warm_key, Body=isal_zlib.compress(WARM_UP.read_bytes(), wbits=31))  # .json.gz
        env = worker_env(endpoint, intake_port)
        harness = Harness(spawner, s3, env, intake_port, warm_key, repeat, profile, baseline)
        rows.extend(measure(harness, found) for found in inputs)
        imports = import_time_ms()
        baseline_imports = import_time_ms(baseline) if baseline is not None else 0.0
    finally:
        spawner.close()
        for process in (moto, intake):
            process.terminate()
            process.wait(10)
    processing: tuple[list[Processed], list[Processed]] | None = None
    if processing_mb:
        from bench.processing import measure_processing  # the forwarder's modules: after the spawner started

        audit_mix = eks_audit_mix_input(processing_mb)
        processing = measure_processing(cloudtrail_input(processing_mb), audit_mix, repeat)
    labelled = (describe(baseline), baseline_imports) if baseline is not None else None
    table = render(rows, imports, labelled, processing)
    print()
    print(table)
    if write_doc:
        write_table(table, sizes, repeat, machine())
    return 0


def prepare_inputs(sizes: list[int]) -> list[Input]:
    """The generated inputs of every size, from the cache when there: EKS audit ones up to 100 MB."""
    inputs: list[Input] = []
    for size in sizes:
        started = time.perf_counter()
        inputs.append(cloudtrail_input(size))
        if size <= 100:
            inputs.append(eks_audit_input(size))
        print(f"input {size} MB ready in {time.perf_counter() - started:.1f} s", flush=True)
    return inputs


def describe(checkout: Path) -> str:
    """The baseline as the table names it: its path, and its commit when it is a git checkout."""
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = done.stdout.strip()
    return f"`{checkout}` at {commit}" if done.returncode == 0 and commit else f"`{checkout}`"


if __name__ == "__main__":
    sys.exit(main())
