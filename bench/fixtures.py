"""The real fixture records and the S3 shapes that carry them, shared by the bench and the tests.

They live here rather than in the test package so the bench imports nothing from `tests`.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import Any
from urllib.parse import quote_plus

import orjson

from bench import ACCOUNT, FIXTURES


def cloudtrail_documents() -> dict[str, bytes]:
    """Every real CloudTrail fixture as a `{"Records": [...]}` document, keyed by fixture name."""
    documents = {}
    for path in sorted((FIXTURES / "cloudtrail" / "stratus-red-team").glob("*.json")):
        documents[path.stem] = b'{"Records":' + path.read_bytes() + b"}"
    for name in ("plaso_aws_cloudtrail.json", "streamalert_cloudtrail_insights.json"):
        documents[name] = (FIXTURES / "cloudtrail" / name).read_bytes()
    for path in sorted((FIXTURES / "cloudtrail").glob("*.json.gz")):
        documents[path.name] = gzip.decompress(path.read_bytes())
    return documents


def records_of(document: bytes) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = orjson.loads(document)["Records"]
    return records


def k8s_audit_lines() -> list[str]:
    """Every real k8s audit event in the fixtures, one JSON line each (falco, audit2rbac)."""
    lines: list[str] = []
    for path in sorted((FIXTURES / "k8s-audit" / "falco").glob("*.json")):
        lines.extend(line for line in path.read_text().splitlines() if line.strip().startswith('{"'))
    lines.extend(line for line in (FIXTURES / "k8s-audit" / "audit2rbac_demo.log").read_text().splitlines() if line)
    return lines


def trail_key(name: str, region: str = "us-east-1") -> str:
    """A key where a trail would deliver; the file's 16-character suffix is derived from `name`."""
    suffix = hashlib.sha256(name.encode()).hexdigest()[:16]
    file_name = f"{ACCOUNT}_CloudTrail_{region}_20241204T1200Z_{suffix}.json.gz"
    return f"AWSLogs/{ACCOUNT}/CloudTrail/{region}/2024/12/04/{file_name}"


def s3_event(bucket: str, *keys: str, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """An S3 event notification as S3 sends it: keys URL-encoded."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2024-12-04T12:00:00.000Z",
                "eventName": event_name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/"), "size": 1, "sequencer": f"{index:016X}"},
                },
            }
            for index, key in enumerate(keys)
        ]
    }
