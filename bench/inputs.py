"""The generated inputs: CloudTrail log files and EKS audit subscription events, cached under `.bench/`."""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from isal import igzip

from bench import ACCOUNT, CACHE, FIXTURES, MB
from bench.auditmix import mix_events
from bench.fixtures import cloudtrail_documents, k8s_audit_lines, records_of

GENERATOR_VERSION = 4
"""Bump when generated inputs change, so cached files are rebuilt."""
AWSLOGS_BATCH_BYTES = 1_000_000
HOSTILE_EVERY = 40
HOSTILE = (
    'say "hi" },{"eventVersion":"1.08","eventID":"not-a-record"} and back\\slashes \\\\ \\"',
    '}]},{"Records":[{"eventVersion":"1.09"}]}',
    "unicode é ü ß 日本語 🚀 \u2028\u2029 \x00\x1f tab\tnewline\n",
    '\\u0041 is a literal backslash-u, {"braces": [1, {"deep": "},{"}]} ',
    '"eventVersion" "eventVersion":"1.08"},{"eventVersion":"1.08"',
)
CLOUDTRAIL_ORDER = [
    "eventVersion",
    "userIdentity",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "requestID",
    "eventID",
    "readOnly",
    "resources",
    "eventType",
    "apiVersion",
    "managementEvent",
    "recipientAccountId",
    "sharedEventID",
    "vpcEndpointId",
    "eventCategory",
    "tlsDetails",
    "sessionCredentialFromConsole",
]
TLS_DETAILS = {
    "tlsVersion": "TLSv1.3",
    "cipherSuite": "TLS_AES_128_GCM_SHA256",
    "clientProvidedHostHeader": "ec2.us-east-1.amazonaws.com",
}


@dataclass
class Input:
    """A generated input file and what it holds."""

    kind: str
    size_mb: float
    path: str
    events: int
    raw_bytes: int
    wire_bytes: int


def cloudtrail_templates() -> list[dict[str, Any]]:
    """Every real CloudTrail record in the fixtures, keys in the order CloudTrail writes them."""
    records: list[dict[str, Any]] = []
    for document in cloudtrail_documents().values():
        records.extend(records_of(document))
    ndjson = FIXTURES / "cloudtrail" / "otrf_ec2_proxy_s3_exfiltration_2020-09-14011940.ndjson"
    records.extend(orjson.loads(line) for line in ndjson.read_bytes().splitlines() if line.strip())
    lookups = FIXTURES / "cloudtrail" / "plaso_lookup-events_aws_cloudtrail.jsonl"
    for line in lookups.read_bytes().splitlines():
        if line.strip():
            records.append(orjson.loads(orjson.loads(line)["CloudTrailEvent"]))
    templates = []
    for record in records:
        record.setdefault("eventVersion", "1.08")
        record.setdefault("tlsDetails", TLS_DETAILS)
        record.setdefault("managementEvent", True)
        record.setdefault("recipientAccountId", ACCOUNT)
        record.setdefault("eventCategory", "Management")
        ordered = {key: record[key] for key in CLOUDTRAIL_ORDER if key in record}
        ordered.update((key, value) for key, value in record.items() if key not in ordered)
        templates.append(ordered)
    return templates


def cloudtrail_records(count_bytes: float, seed: float) -> Iterator[bytes]:
    """Serialised records, deterministic for a seed, until about `count_bytes` have been yielded."""
    rng = random.Random(seed)
    templates = cloudtrail_templates()
    start = 1733313600  # 2024-12-04T12:00:00Z
    produced = 0
    index = 0
    while produced < count_bytes:
        record = dict(rng.choice(templates))
        record["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + index // 50))
        record["eventID"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        record["requestID"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        record["sourceIPAddress"] = f"203.0.{rng.randrange(256)}.{rng.randrange(256)}"
        if index % HOSTILE_EVERY == HOSTILE_EVERY - 1:
            hostile = HOSTILE[(index // HOSTILE_EVERY) % len(HOSTILE)]
            record["requestParameters"] = {"comment": hostile, "nested": {"list": [hostile, {"k": "},{"}]}}
        body = orjson.dumps(record)
        produced += len(body) + 1
        index += 1
        yield body


def _cached(path: Path) -> Input | None:
    meta = path.with_suffix(".meta.json")
    if meta.exists() and path.exists():
        return Input(**json.loads(meta.read_text()))
    path.parent.mkdir(exist_ok=True)
    return None


def _keep(partial: Path, found: Input) -> Input:
    """Move a finished file into place and record what it holds beside it."""
    path = Path(found.path)
    partial.rename(path)
    path.with_suffix(".meta.json").write_text(json.dumps(asdict(found)))
    return found


def cloudtrail_input(size_mb: float, directory: Path = CACHE) -> Input:
    """The CloudTrail file of `size_mb` uncompressed MB, generated (streaming) unless cached."""
    path = directory / f"cloudtrail-{size_mb}mb-v{GENERATOR_VERSION}.json.gz"
    if (cached := _cached(path)) is not None:
        return cached
    partial = path.with_suffix(".partial")
    events = 0
    raw = 0
    with igzip.open(partial, "wb", compresslevel=2) as out:
        pending: list[bytes] = [b'{"Records":[']
        pending_bytes = 0
        for body in cloudtrail_records(size_mb * MB, seed=size_mb):
            if events:
                pending.append(b",")
            pending.append(body)
            pending_bytes += len(body) + 1
            events += 1
            if pending_bytes >= 1 << 20:
                block = b"".join(pending)
                raw += len(block)
                out.write(block)
                pending, pending_bytes = [], 0
        block = b"".join([*pending, b"]}"])
        raw += len(block)
        out.write(block)
    return _keep(partial, Input("cloudtrail", size_mb, str(path), events, raw, partial.stat().st_size))


def eks_audit_input(size_mb: float, directory: Path = CACHE) -> Input:
    """CloudWatch Logs subscription events of EKS audit lines, `size_mb` MB of messages in all: the
    fixtures' events (falco's, audit2rbac's) in equal shares, for throughput."""
    rng = random.Random(size_mb)
    templates = [orjson.loads(line) for line in k8s_audit_lines()]
    return _eks_input("eks-audit", size_mb, directory, rng, lambda: dict(rng.choice(templates)))


def eks_audit_mix_input(size_mb: float, directory: Path = CACHE) -> Input:
    """The same, of a busy cluster's mix of events (`bench.auditmix.MIX`), for the processing figures."""
    rng = random.Random(size_mb)
    return _eks_input("eks-audit-mix", size_mb, directory, rng, mix_events(rng))


def _eks_input(
    kind: str, size_mb: float, directory: Path, rng: random.Random, next_event: Callable[[], dict[str, Any]]
) -> Input:
    path = directory / f"{kind}-{size_mb}mb-v{GENERATOR_VERSION}.ndjson"
    if (cached := _cached(path)) is not None:
        return cached
    events = raw = wire = 0
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        for data, message_bytes, count in _audit_payloads(size_mb, rng, next_event):
            out.write(b'{"awslogs":{"data":"' + data + b'"}}\n')
            events += count
            raw += message_bytes
            wire += len(data)
    return _keep(partial, Input(kind, size_mb, str(path), events, raw, wire))


def _audit_payloads(
    size_mb: float, rng: random.Random, next_event: Callable[[], dict[str, Any]]
) -> Iterator[tuple[bytes, int, int]]:
    """Each subscription payload's base64 data, its messages' bytes and their count; deterministic for a size."""
    events = raw = 0
    stamp = 1733313600000
    while raw < size_mb * MB:
        log_events = []
        batch_bytes = 0
        while batch_bytes < AWSLOGS_BATCH_BYTES and raw + batch_bytes < size_mb * MB:
            audit = next_event()
            stamp += rng.randrange(20)
            moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp // 1000)) + f".{stamp % 1000:03d}000Z"
            audit["auditID"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            audit["requestReceivedTimestamp"] = moment
            audit["stageTimestamp"] = moment
            message = orjson.dumps(audit).decode()
            log_events.append({"id": str(36 * 10**55 + events), "timestamp": stamp, "message": message})
            batch_bytes += len(message)
            events += 1
        payload = {
            "messageType": "DATA_MESSAGE",
            "owner": ACCOUNT,
            "logGroup": "/aws/eks/bench-cluster/cluster",
            "logStream": "kube-apiserver-audit-0123456789abcdef",
            "subscriptionFilters": ["forwarder"],
            "logEvents": log_events,
        }
        yield base64.b64encode(igzip.compress(orjson.dumps(payload), 2)), batch_bytes, len(log_events)
        raw += batch_bytes
