"""What processing costs and what it saves, in-process: the rules (INCLUDE/EXCLUDE_AT_MATCH, REDACT_IP,
REDACT_EMAIL, DD_SCRUBBING_RULE) on CloudTrail and EKS audit, and the Kubernetes audit policy on EKS audit.

Each setting runs the forwarder's own stages on a whole input in this process, without S3 or HTTP:
the reader (inflating and cutting a CloudTrail file; decoding each CloudWatch Logs payload), the
processors the settings turn on (`forwarder.process.processors`), the Datadog entries
(`encoder.entries`) and the request bodies (`outputs.batch`). Those are the stages processing
changes: an event a rule changes loses its run's fast path in the encoder, and an event dropped
is neither encoded nor sent. Gzip and the requests, which follow the bytes out, are left out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import ACCOUNT, API_KEY, BUCKET, FIXTURES, MB
from bench.fixtures import trail_key
from bench.inputs import Input
from bench.measure import best_of
from forwarder import formats, sources
from forwarder.formats import Block, Format
from forwarder.formats.logbatch import read_log_batch
from forwarder.metrics import Tally
from forwarder.model import Container, Entry, Invoker, LogBatch, S3Object, Source
from forwarder.outputs import Encoder, generic
from forwarder.outputs.batch import batches, json_array
from forwarder.process import Processor, apply, processors
from forwarder.read import awslogs, codecs
from forwarder.settings import Settings

POLICIES = FIXTURES / "k8s-audit" / "policies"
SCRUB_ACCESS_KEYS = {"DD_SCRUBBING_RULE": r"(AKIA|ASIA)[A-Z0-9]{16}", "DD_SCRUBBING_RULE_REPLACEMENT": "xxxxx"}
SCRUB_PRIVATE_KEYS = {"DD_SCRUBBING_RULE": r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^-]*-----END [A-Z ]*PRIVATE KEY-----"}
RULES: dict[str, dict[str, dict[str, str]]] = {
    "cloudtrail": {
        "plain": {},
        "all rules": {
            "EXCLUDE_AT_MATCH": '"eventName":"DescribeInstanceInformation"',
            "REDACT_IP": "true",
            "REDACT_EMAIL": "true",
            **SCRUB_ACCESS_KEYS,
        },
        "rules that change nothing": {
            "EXCLUDE_AT_MATCH": '"eventName":"(GenerateDataKey|Decrypt)"',
            **SCRUB_PRIVATE_KEYS,
        },
    },
    "eks-audit-mix": {
        "plain": {},
        "all rules": {
            "EXCLUDE_AT_MATCH": '"requestURI":"/(healthz|livez|readyz)',
            "REDACT_IP": "true",
            "REDACT_EMAIL": "true",
            **SCRUB_ACCESS_KEYS,
        },
        "rules that change nothing": {"EXCLUDE_AT_MATCH": '"verb":"(impersonate|escalate)"', **SCRUB_PRIVATE_KEYS},
    },
}
"""Per input, each setting's environment: `all rules` drops one noisy kind of event (the SSM agent's
polling; health checks), redacts IPs and emails and scrubs access key ids; `rules that change
nothing` search every event for what none holds (KMS calls, which this trail has none of; two rare
verbs; a private key). The scrubbing rules use no `\\b` or anchor: one that does is tried on every
string value of every event (`forwarder.process.scrub`), several times the cost."""
POLICY_SETTINGS = {
    "no policy": "",
    "seed example policy": "seed-example_audit-policy.yaml",
    "Kubernetes docs' example policy": "kubernetes-docs_audit-policy.yaml",
}
INVOKER = Invoker(f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:security-log-forwarder", ACCOUNT, "us-east-1")


@dataclass
class Processed:
    """One setting on one input: what went in and out, and its best CPU times over the repeats."""

    input: str
    setting: str
    events_in: int
    bytes_in: int
    events_out: int
    bytes_out: int
    """The request bodies' bytes, uncompressed: the entries with their metadata, as the intake counts them."""
    seconds: float
    cpu_seconds: float
    processors_cpu_seconds: float
    """The part of `cpu_seconds` spent in the processors themselves."""

    def us_per_event(self, seconds: float) -> float:
        return seconds / self.events_in * 1e6

    @property
    def mb_per_cpu_second(self) -> float:
        return self.bytes_in / MB / self.cpu_seconds


def measure_processing(cloudtrail: Input, audit: Input, repeat: int) -> tuple[list[Processed], list[Processed]]:
    """The rules' rows on both inputs, then the audit policy's rows on the EKS audit mix."""
    rules = [
        measure_setting(found, setting, env, repeat)
        for found in (cloudtrail, audit)
        for setting, env in RULES[found.kind].items()
    ]
    policies = [
        measure_setting(
            audit, setting, {"FORWARDER_K8S_AUDIT_POLICY": (POLICIES / file).read_text()} if file else {}, repeat
        )
        for setting, file in POLICY_SETTINGS.items()
    ]
    return rules, policies


def measure_setting(found: Input, setting: str, env: Mapping[str, str], repeat: int) -> Processed:
    """The best of `repeat` runs of one setting on one input; every run must read every event and
    send the same."""
    settings = Settings.from_env({**_BASE_ENV, **env})
    runs = [forward(found, settings) for _ in range(repeat)]
    name = f"{found.kind} {found.size_mb:g} MB"
    sent = {(run["events_in"], run["events_out"], run["bytes_out"]) for run in runs}
    if len(sent) != 1 or runs[0]["events_in"] != found.events:
        raise SystemExit(f"{name}, {setting}: generated {found.events} events; the runs read and sent {sent}")
    best = best_of(runs)
    print(
        f"{name}, {setting}: {best['events_out']} of {found.events} events out, "
        f"{found.raw_bytes / MB / best['cpu_seconds']:.1f} MB per CPU-s",
        flush=True,
    )
    return Processed(
        name,
        setting,
        found.events,
        found.raw_bytes,
        best["events_out"],
        best["bytes_out"],
        best["seconds"],
        best["cpu_seconds"],
        best["processors_cpu_seconds"],
    )


_BASE_ENV = {
    "DD_API_KEY": API_KEY,
    "DD_URL": "http://127.0.0.1:9/api/v2/logs",  # nothing is sent; the output is built as the settings say
    "DD_TAGS": "env:bench",
    "AWS_LAMBDA_FUNCTION_NAME": "security-log-forwarder",
    "AWS_REGION": "us-east-1",
}


def forward(found: Input, settings: Settings) -> dict[str, Any]:
    """One run over the whole input: events and request bytes in and out, wall and CPU seconds."""
    output = generic.output(settings, API_KEY)
    chosen = processors(settings, Tally())
    counts = {"events_in": 0, "events_out": 0, "bytes_out": 0, "processors_cpu_seconds": 0.0}
    loaded = _Loaded.of(found)
    started, cpu_started = time.perf_counter(), time.process_time()
    for source, container, blocks in _containers(loaded, settings, output.watched):
        encoder = output.encoder(source, container, INVOKER)
        entries = _entries(blocks, source, chosen, encoder, counts)
        for batch in batches(entries, settings.batch_max_entries, settings.batch_max_bytes):
            counts["bytes_out"] += len(json_array(batch.entries))
            counts["events_out"] += len(batch.entries)
    elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    output.close()
    return {**counts, "seconds": elapsed[0], "cpu_seconds": elapsed[1]}


@dataclass
class _Loaded:
    """The input as the function receives it: a CloudTrail file's compressed bytes in 1 MB reads, or each
    CloudWatch Logs event's data (the Lambda runtime parses the event's JSON before the handler runs)."""

    reads: list[bytes]
    payloads: list[str]

    @classmethod
    def of(cls, found: Input) -> _Loaded:
        data = Path(found.path).read_bytes()
        if found.kind == "cloudtrail":
            return cls([data[at : at + MB] for at in range(0, len(data), MB)], [])
        return cls([], [orjson.loads(line)["awslogs"]["data"] for line in data.splitlines()])


def _containers(
    loaded: _Loaded, settings: Settings, watched: frozenset[str]
) -> Iterator[tuple[Source, Container, Iterator[Block]]]:
    """Each container's source and blocks, read as `forwarder.opening` reads them (the source rules, the reader)."""
    if loaded.reads:
        item = S3Object(BUCKET, trail_key("bench-processing"))
        source = sources.for_object(item, settings, Format.CLOUDTRAIL)
        assert isinstance(source, Source), source
        chunks = codecs.decompress(iter(loaded.reads), item.origin)
        yield source, item, formats.read_object(chunks, item.origin, Format.CLOUDTRAIL, watched)
    for data in loaded.payloads:
        batch = awslogs.decode_awslogs(data)
        assert isinstance(batch, LogBatch), batch
        found = sources.for_log_batch(batch, settings)
        assert isinstance(found, Source), found
        yield found, batch, read_log_batch(batch)


def _entries(
    blocks: Iterator[Block], source: Source, chosen: Sequence[Processor], encoder: Encoder, counts: dict[str, Any]
) -> Iterator[Entry]:
    """The entries of the blocks that the processors keep, as `Pipeline._entries` makes them; the
    processors' own CPU time counted apart."""
    for block in blocks:
        counts["events_in"] += len(block)
        kept: Block | None = block
        if chosen:
            started = time.process_time()
            kept, _ = apply(chosen, block, source)
            counts["processors_cpu_seconds"] += time.process_time() - started
        if kept is not None:
            yield from encoder.entries(kept)
