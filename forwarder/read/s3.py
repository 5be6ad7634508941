"""S3 bodies: streamed in chunks, or from a checkpoint with a ranged GET pinned to the version read first.

A `Tracker` passed along collects what a continuation's checkpoint needs: the codec, the ETag S3
answered with, and where decompression can start afresh (each gzip member's or zstd frame's
compressed and decompressed offsets). A continuation reads from such a boundary with a ranged GET
pinned to that ETag, and `codecs.discard` drops the decompressed bytes between it and the next event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import urllib3.exceptions
from botocore.exceptions import BotoCoreError, ClientError

from forwarder.errors import InputError
from forwarder.model import Checkpoint, S3Object

_TRANSPORT_ERRORS = (BotoCoreError, ClientError, urllib3.exceptions.HTTPError, OSError)
PLAIN = "plain"
"""The codec name of an uncompressed object, whose every byte is a place to start reading."""


class Tracker:
    """What the read stage learns about one object that a continuation's checkpoint needs.

    `codec` is "gzip", "zstd", "zlib" or "plain"; `etag` the ETag S3 answered with (or the one the
    checkpoint pinned). `boundaries` holds `(compressed offset, decompressed offset)` pairs, both
    from the object's start, where decompression can begin afresh: the start of the read and of
    every later gzip member or zstd frame. Decompression runs ahead of the events handled, so the
    consumer drops pairs it has gone past (`forget_before`), which keeps the queue short.
    """

    def __init__(self, start: Checkpoint | None = None) -> None:
        self.codec = start.codec if start is not None else None
        self.etag = start.etag if start is not None else None
        self.offset = start.offset if start is not None else 0
        """The compressed byte the read starts at."""
        self.skip_bytes = start.skip_bytes if start is not None else 0
        """Decompressed bytes to drop after it (`discard`)."""
        self.decompressed = start.decompressed - start.skip_bytes if start is not None else 0
        """The decompressed offset of the byte the read starts at."""
        self.boundaries: deque[tuple[int, int]] = deque()

    def locate(self, decompressed: int) -> tuple[int, int]:
        """`(offset, skip_bytes)`: the compressed byte to read from to reach `decompressed`, and how
        many decompressed bytes to drop after it."""
        if self.codec == PLAIN:
            return decompressed, 0
        self.forget_before(decompressed)
        compressed, at = self.boundaries[0] if self.boundaries else (self.offset, self.decompressed)
        return compressed, decompressed - at

    def forget_before(self, decompressed: int) -> None:
        """Drop the boundaries a checkpoint at or after `decompressed` no longer needs."""
        boundaries = self.boundaries
        while len(boundaries) > 1 and boundaries[1][1] <= decompressed:
            boundaries.popleft()


def open_object(s3_client: Any, obj: S3Object, chunk_bytes: int, tracker: Tracker | None = None) -> Iterator[bytes]:
    """Yield the object's body in chunks of about `chunk_bytes`; the body is closed on every path.

    A continuation reads from its checkpoint's offset (a ranged GET), pinned to the version read
    first: its VersionId, else IfMatch with the ETag. Transport failures become `InputError` naming
    how many bytes had arrived; a replaced object is an `InputError` saying so.
    """
    start = obj.checkpoint
    offset = start.offset if start is not None else 0
    request = {"Bucket": obj.bucket, "Key": obj.key}
    pin = _pinned_etag(obj)
    if obj.version_id:
        request["VersionId"] = obj.version_id
    elif pin:
        request["IfMatch"] = pin
    if offset:
        request["Range"] = f"bytes={offset}-"
    try:
        response = s3_client.get_object(**request)
    except _TRANSPORT_ERRORS as exc:
        if _status(exc) == 412:
            raise InputError(
                obj.origin,
                f"byte {offset}",
                f"the object was replaced since an earlier invocation read it (its ETag is no longer {pin}); "
                "the rest of the old object cannot be read, and the new one has its own notification",
            ) from exc
        raise InputError(obj.origin, f"byte {offset}", describe_error(exc)) from exc
    body = response["Body"]
    if tracker is not None and tracker.etag is None:
        tracker.etag = response.get("ETag")
    received = offset
    try:
        chunks = body.iter_chunks(chunk_bytes)
        while True:
            try:
                chunk = next(chunks, None)
            except _TRANSPORT_ERRORS as exc:
                raise InputError(obj.origin, f"byte {received}", describe_error(exc)) from exc
            if chunk is None:
                return
            received += len(chunk)
            yield chunk
    finally:
        body.close()


def _pinned_etag(obj: S3Object) -> str | None:
    """The ETag a continuation must still find: the one read first, else the notification's."""
    if obj.resume_at == 0 and obj.checkpoint is None:
        return None  # a first read takes the object as it is now; a later write has its own notification
    etag = obj.checkpoint.etag if obj.checkpoint is not None and obj.checkpoint.etag else obj.etag
    if not etag:
        return None
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = response.get("Error", {}).get("Code")
    return 412 if code in ("PreconditionFailed", "412") else status if isinstance(status, int) else None


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
