"""The raw limit: what any Python forwarder that parses every event must pay, with no network."""

from __future__ import annotations

import base64
import time

import orjson
from isal import igzip, isal_zlib

from bench.inputs import Input

BATCH_BYTES = 5_000_000


def raw_limit(found: Input) -> tuple[float, float]:
    """Wall and CPU seconds of the raw limit for an input of either kind."""
    return raw_limit_cloudtrail(found) if found.kind == "cloudtrail" else raw_limit_eks(found)


def raw_limit_cloudtrail(found: Input) -> tuple[float, float]:
    """Wall and CPU seconds for isal gunzip + orjson parse and serialise per record + isal gzip 1 of 5 MB bodies.

    Records are cut at `},{"eventVersion"`, exact for the generated files (a JSON string cannot hold
    an unescaped quote), with a find that costs next to nothing: the time is the parse, the
    serialisation and the two gzips.
    """
    separator = b'},{"eventVersion"'
    loads, dumps, compress = orjson.loads, orjson.dumps, igzip.compress
    started, cpu_started = time.perf_counter(), time.process_time()
    inflater = isal_zlib.decompressobj(wbits=31)
    body: list[bytes] = []
    body_bytes = 0
    events = 0
    tail = b""
    opened = False
    with open(found.path, "rb") as compressed:
        while block := compressed.read(1 << 20):
            data = tail + inflater.decompress(block)
            if not opened:
                data, opened = data[len(b'{"Records":[') :], True
            at = 0
            while (end := data.find(separator, at)) >= 0:
                entry = dumps(loads(data[at : end + 1]))
                body.append(entry)
                body_bytes += len(entry) + 1
                events += 1
                if body_bytes >= BATCH_BYTES:
                    compress(b"[" + b",".join(body) + b"]", 1)
                    body, body_bytes = [], 0
                at = end + 2
            tail = data[at:]
    body.append(dumps(loads(tail[: tail.rindex(b"]")])))
    compress(b"[" + b",".join(body) + b"]", 1)
    elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    if events + 1 != found.events:
        raise SystemExit(f"raw limit: cut {events + 1} records, generated {found.events}")
    return elapsed


def raw_limit_eks(found: Input) -> tuple[float, float]:
    """Wall and CPU seconds for base64 + isal gunzip + orjson parse of each payload, then per event parse and
    serialise (message and metadata) and isal gzip 1 of 5 MB bodies."""
    started, cpu_started = time.perf_counter(), time.process_time()
    body: list[bytes] = []
    body_bytes = 0
    events = 0
    with open(found.path, "rb") as lines:
        for line in lines:
            payload = orjson.loads(isal_zlib.decompress(base64.b64decode(orjson.loads(line)["awslogs"]["data"]), 47))
            for event in payload["logEvents"]:
                message = event["message"]
                orjson.loads(message)
                entry = orjson.dumps({"ddsource": "kubernetes.audit", "message": message})
                body.append(entry)
                body_bytes += len(entry) + 1
                events += 1
                if body_bytes >= BATCH_BYTES:
                    igzip.compress(b"[" + b",".join(body) + b"]", 1)
                    body, body_bytes = [], 0
    igzip.compress(b"[" + b",".join(body) + b"]", 1)
    elapsed = time.perf_counter() - started, time.process_time() - cpu_started
    if events != found.events:
        raise SystemExit(f"raw limit: {events} EKS events, generated {found.events}")
    return elapsed
