"""The failure store: batches the intake would not take, kept in S3 for replay.

Each stored object is one batch: gzip JSON with the reason, the intake's answer and the entries
exactly as they were to be sent, so a replay re-sends them unchanged: their bytes are sliced back
out of the document, never parsed and written again (which would turn `123456789012345678901234567890`
into `1.2345678901234568e+29`). Only valid entries are stored. Keys sort by time:
`<prefix><YYYY>/<MM>/<DD>/<HHMMSS>-<uuid>.json.gz`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from isal import igzip

from forwarder.errors import DeliveryError, InputError, StoreError
from forwarder.read.codecs import ISAL_ERROR

FORMAT = "security-log-forwarder/failed-events/v1"
_ENTRIES = re.compile(rb'[{,][ \t\r\n]*"entries"[ \t\r\n]*:[ \t\r\n]*\[')
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],]', re.DOTALL)
_OPEN = frozenset(b"{[")
_CLOSE = frozenset(b"}]")
_COMMA = ord(",")
_WS = b" \t\r\n"


class FailureStore:
    """Failed batches under one prefix of one bucket."""

    def __init__(self, s3_client: Any, bucket: str, prefix: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._prefix = prefix

    def keep(self, entries: list[bytes], failure: DeliveryError, key: str | None = None) -> str:
        """Write `entries` with why they failed (under `key`, or a new key); the key written.

        An entry that is not one JSON object is a bug upstream: stored, it would fail every replay
        of its batch, so nothing is stored and the events count as failed.
        """
        for index, entry in enumerate(entries):
            try:
                valid = isinstance(orjson.loads(entry), dict)
            except orjson.JSONDecodeError:
                valid = False
            if not valid:
                raise StoreError(f"not storing {len(entries)} events: entry {index} is not a JSON object (a bug)")
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
        """The entries of one stored batch, each as the JSON bytes to send, exactly as stored."""
        origin = f"s3://{self._bucket}/{key}"
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise StoreError(f"could not read {origin}: {exc}") from exc
        try:
            document = igzip.decompress(body)
            entries = orjson.loads(document)["entries"]
        except (OSError, EOFError, ISAL_ERROR, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(origin, "stored batch", f"not a stored batch: {type(exc).__name__}: {exc}") from exc
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise InputError(origin, "stored batch", "not a stored batch: entries is not a list of objects")
        exact = _entry_bytes(document)
        if len(exact) != len(entries):
            raise InputError(origin, "stored batch", "not a stored batch: its entries could not be cut out")
        return exact

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        except Exception as exc:
            raise StoreError(f"could not delete s3://{self._bucket}/{key}: {exc}") from exc


def _entry_bytes(document: bytes) -> list[bytes]:
    """The elements of a stored batch's "entries" array, each exactly as stored.

    `document` is valid JSON (orjson read it), so counting brackets outside strings finds each element's
    end. The first `"entries"` name outside a string is the document's own: the members before it
    (the reason, the answer) are strings, whose quotes are escaped.
    """
    found = _ENTRIES.search(document)
    if found is None:
        return []
    elements: list[bytes] = []
    start = found.end()
    depth = 0
    for token in _TOKEN.finditer(document, start):
        byte = document[token.start()]
        if byte in _OPEN:
            depth += 1
        elif byte in _CLOSE:
            if depth == 0:
                last = document[start : token.start()].strip(_WS)
                if last:
                    elements.append(last)
                break
            depth -= 1
        elif byte == _COMMA and depth == 0:
            elements.append(document[start : token.start()].strip(_WS))
            start = token.end()
    return elements
