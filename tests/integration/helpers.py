"""Builders for integration tests: real fixture objects in moto's S3, real trigger events, real settings."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path
from typing import Any

import orjson

from forwarder.cli import LocalContext
from forwarder.settings import Settings

FIXTURES = Path(__file__).parent.parent / "fixtures"
API_KEY = "test-api-key-not-a-secret-00000000"
ACCOUNT = "123456789012"


def settings_for(intake_url: str, **env: str) -> Settings:
    """Settings as the Lambda would read them, delivering to a local intake."""
    base = {
        "DD_URL": intake_url,
        "DD_API_KEY": API_KEY,
        "AWS_LAMBDA_FUNCTION_NAME": "forwarder-test",
        "AWS_REGION": "us-east-1",
        "FORWARDER_HTTP_TIMEOUT_SECONDS": "5",
        "FORWARDER_DEADLINE_MARGIN_SECONDS": "1",
    }
    return Settings.from_env({**base, **env})


def context(timeout_seconds: float = 60.0) -> LocalContext:
    return LocalContext(
        function_name="forwarder-test",
        timeout_seconds=timeout_seconds,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:forwarder-test",
    )


def put(s3: Any, bucket: str, key: str, body: bytes, compress: bool = True) -> None:
    existing = {entry["Name"] for entry in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if compress else body)


def sqs_event(*bodies: str | dict[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"message-{index}",
                "receiptHandle": f"handle-{index}",
                "body": body if isinstance(body, str) else orjson.dumps(body).decode(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1733313600000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:{ACCOUNT}:forwarder-queue",
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }


def eventbridge_event(bucket: str, key: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": "2024-12-04T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 1, "etag": "b1946ac92492d2347c6235b4d2611184", "sequencer": "00617F08"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "reason": "PutObject",
        },
    }


def awslogs_event(
    log_group: str, log_stream: str, messages: list[str], message_type: str = "DATA_MESSAGE"
) -> dict[str, Any]:
    payload = {
        "messageType": message_type,
        "owner": ACCOUNT,
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": ["forwarder"],
        "logEvents": [
            {
                "id": f"{36000000000000000000000000000000000000000000000000000000 + index}",
                "timestamp": 1733313600000 + index,
                "message": message,
            }
            for index, message in enumerate(messages)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(orjson.dumps(payload))).decode()}}


def without_metadata(entry: dict[str, Any]) -> dict[str, Any]:
    from forwarder.outputs.datadog import RESERVED

    return {key: value for key, value in entry.items() if key not in RESERVED}


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
