"""The failure store: batches the intake would not take, kept in S3 for replay.

Each stored object is one batch: gzip JSON with the reason, the intake's answer and the entries
exactly as they were to be sent, so a replay re-sends them unchanged. Keys sort by time:
`<prefix><YYYY>/<MM>/<DD>/<HHMMSS>-<uuid>.json.gz`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from isal import igzip

from forwarder.errors import DeliveryError, InputError, StoreError
from forwarder.read.codecs import ISAL_ERROR

FORMAT = "security-log-forwarder/failed-events/v1"


class FailureStore:
    """Failed batches under one prefix of one bucket."""

    def __init__(self, s3_client: Any, bucket: str, prefix: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._prefix = prefix

    def keep(self, entries: list[bytes], failure: DeliveryError, key: str | None = None) -> str:
        """Write `entries` with why they failed (under `key`, or a new key); the key written."""
        now = time.gmtime()
        key = key or f"{self._prefix}{time.strftime('%Y/%m/%d/%H%M%S', now)}-{uuid.uuid4().hex}.json.gz"
        head = orjson.dumps(
            {
                "format": FORMAT,
                "stored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
                "reason": failure.reason,
                "status": failure.status,
                "answer": failure.answer,
            }
        )
        body = head[:-1] + b',"entries":[' + b",".join(entries) + b"]}"
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=igzip.compress(body, 1))
        except Exception as exc:  # botocore raises many unrelated classes; all mean "not stored"
            raise StoreError(f"could not store {len(entries)} events in s3://{self._bucket}/{key}: {exc}") from exc
        return key

    def stored(self) -> Iterator[str]:
        """Keys of stored batches, oldest first."""
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]
        except Exception as exc:
            raise StoreError(f"could not list s3://{self._bucket}/{self._prefix}: {exc}") from exc

    def load(self, key: str) -> list[bytes]:
        """The entries of one stored batch, each as the JSON bytes to send."""
        origin = f"s3://{self._bucket}/{key}"
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise StoreError(f"could not read {origin}: {exc}") from exc
        try:
            entries = orjson.loads(igzip.decompress(body))["entries"]
        except (OSError, EOFError, ISAL_ERROR, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(origin, "stored batch", f"not a stored batch: {type(exc).__name__}: {exc}") from exc
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise InputError(origin, "stored batch", "not a stored batch: entries is not a list of objects")
        return [orjson.dumps(entry) for entry in entries]

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        except Exception as exc:
            raise StoreError(f"could not delete s3://{self._bucket}/{key}: {exc}") from exc
